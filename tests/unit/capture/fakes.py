"""A supervisor on a spool under tmp_path, and what it reads of a tcpdump, for the
capture tests that drive Supervisor without starting tcpdump."""

from __future__ import annotations

import errno
import os
import pwd
from pathlib import Path

from rollcap.capture import service
from rollcap.capture.counters import Counters
from rollcap.capture.interface import InterfaceCapture
from rollcap.config.load import validate_data


class FakeTcpdump:
    """What the supervisor reads of a running tcpdump."""

    def __init__(self, generation: int, listening_mono: float | None) -> None:
        self.generation = generation
        self.listening_mono = listening_mono
        self.pid = 4242

        class _Ev:
            def is_set(self) -> bool:
                return listening_mono is not None

        self.listening = _Ev()
        self.output_closed_at: float | None = None
        self.counters = Counters()  # its last counters line

    def alive(self) -> bool:
        return True

    def request_counters(self) -> None:
        pass


def supervisor(tmp_path: Path, **sections: dict[str, object]) -> service.Supervisor:
    # tcpdump's files are this test's (capture.user: the test's own user)
    me = pwd.getpwuid(os.geteuid()).pw_name
    data: dict[str, object] = {
        "spool": {"directory": str(tmp_path / "spool")},
        "capture": {"user": me, "hostname": "h"},
    }
    for k, v in sections.items():
        data[k] = {**data.get(k, {}), **v}  # type: ignore[dict-item]
    cfg = validate_data(data)
    filters = dict.fromkeys(cfg.capture.interfaces, "")
    return service.Supervisor(str(tmp_path / "rollcap.toml"), cfg, filters)


def the_capture(sup: service.Supervisor) -> InterfaceCapture:
    """The one interface's capture (the default interface, "any")."""
    (ic,) = sup.captures.values()
    return ic


def enospc(*_a: object, **_kw: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")
