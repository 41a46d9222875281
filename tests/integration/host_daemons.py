"""Hosts' daemons as an operator runs them: per host, `rollcap capture` on an
interface and `rollcap offload` of its spool, both from the one config the
test writes (its hostname, its destination). Several hosts start and drain
together, as a fleet does (and in the time of one)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.integration.capture_daemon import CaptureDaemon
from tests.integration.test_offload import Offload, state


class HostDaemons:
    def __init__(self, tmp: Path, iface: str | list[str], env: dict[str, str],
                 **capture: Any) -> None:  # fmt: skip
        self.capture = CaptureDaemon(tmp, iface, **capture)
        self.env = env
        self.offload: Offload | None = None

    def drain(self, timeout: float = 60) -> int:
        """Stop the capture, wait until the offload has stored every file the
        capture handed off, stop the offload: how many files it stored."""
        return drain([self], timeout)[0]

    def kill(self) -> None:
        """Never leave a daemon (or its tcpdump) behind after a failed test."""
        self.capture.kill()
        off = self.offload
        if off is not None and off.proc is not None and off.proc.poll() is None:
            off.proc.kill()
            off.proc.wait(10)


def start(hosts: list[HostDaemons]) -> None:
    """Every host capturing, then every offload up."""
    for h in hosts:
        h.capture.start()
    for h in hosts:
        h.capture.wait_capturing()
        h.offload = Offload(h.capture.config, h.env).start()
    for h in hosts:
        off = h.offload
        assert off is not None
        off.wait_for("started", lambda off=off: "offload started" in off.text())


def drain(hosts: list[HostDaemons], timeout: float = 60) -> list[int]:
    """HostDaemons.drain for every host, the waits overlapping."""
    time.sleep(1.5)  # tcpdump's last kernel block
    handed = []
    for h in hosts:
        assert h.capture.stop() == 0
        handed.append(int(h.capture.state()["handed_off_files"]))
    for h, n in zip(hosts, handed, strict=True):
        assert h.offload is not None
        h.offload.wait_for("all handed-off files stored",
                           lambda h=h, n=n: state(h.capture.spool).get("uploaded_files") == n,
                           timeout=timeout)  # fmt: skip
        assert h.offload.stop() == 0
    return handed


@contextmanager
def started(hosts: list[HostDaemons]) -> Iterator[list[HostDaemons]]:
    """The hosts' daemons, started together; killed on the way out."""
    try:
        start(hosts)
        yield hosts
    finally:
        for h in hosts:
            h.kill()


@contextmanager
def running(tmp: Path, iface: str | list[str], env: dict[str, str],
            **capture: Any) -> Iterator[HostDaemons]:  # fmt: skip
    """One host's daemons, started (capturing, offload up); killed on the way out."""
    with started([HostDaemons(tmp, iface, env, **capture)]) as [h]:
        yield h
