"""Fixtures of the capture integration tests: a spool base tcpdump's user can
reach, and a factory of `rollcap capture` daemons killed after the test."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.capture_daemon import CaptureDaemon

Factory = Callable[..., CaptureDaemon]


@pytest.fixture
def base() -> Iterator[Path]:
    # Not pytest's tmp_path: its parents are 0700 and tcpdump's user must pass
    # through them to reach work/ (as it passes through /var/spool in production).
    b = Path(tempfile.mkdtemp(prefix="rollcap-capture-test-"))
    b.chmod(0o711)
    try:
        yield b
    finally:
        shutil.rmtree(b, ignore_errors=True)


@pytest.fixture
def daemon(base: Path) -> Iterator[Factory]:
    """make(iface, notify=False, start=True, **capture): a daemon under base."""
    started: list[CaptureDaemon] = []

    def make(
        iface: str | list[str], notify: bool = False, start: bool = True, **capture: Any
    ) -> CaptureDaemon:
        d = CaptureDaemon(base / f"d{len(started)}", iface, **capture)
        started.append(d)
        if notify:
            d.listen_notify()
        return d.start() if start else d

    try:
        yield make
    finally:
        for d in started:
            d.kill()
