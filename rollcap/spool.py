"""The spool's layout, shared by capture (writer) and offload (reader).

work/        tcpdump writes here; nothing in it is finished
ready/       finished, repaired files, atomically renamed in from work/
quarantine/  files offload refused (not pcap, symlinks, ...), with a reason
tmp/         offload's compression temp files; stale ones are removed at start
state/       capture.json / offload.json for `rollcap status`, seq counter
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Spool:
    root: Path

    @classmethod
    def at(cls, directory: str | os.PathLike[str]) -> Spool:
        return cls(Path(directory))

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def ready(self) -> Path:
        return self.root / "ready"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def all_dirs(self) -> list[Path]:
        return [self.work, self.ready, self.quarantine, self.tmp, self.state]
