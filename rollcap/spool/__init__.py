"""The spool's layout, shared by capture (writer) and offload (reader).

Who may write where (the packaged owners; rollcap/spool/layout.py and
debian/rollcap.tmpfiles make them):

work/        2700 capture user   tcpdump writes here; nothing in it is finished.
                                 The capture user alone; offload cannot even see it.
capture/     2750 capture user   capture's own state: counters, capture.json, the
                                 lock. Readable by the group for `rollcap status`.
ready/       2770 capture user   finished, repaired files (0640, group GROUP),
                                 renamed in from work/; offload reads and deletes
quarantine/  2770 capture user   files either side refused, with a reason
tmp/         2750 offload user   empty: what older offloads left (compression
                                 temp files) is removed at start
state/       2750 offload user   offload.json, offload.lock
keep/        2770 root           pins of `rollcap keep` (rollcap/keep/pins.py): written by
                                 root and GROUP, read by capture through an ACL

This package is the contract between the two daemons: Spool (the paths, here),
layout (creating the tree with its owners and modes), fs (every file operation
through directory fds), state (the JSON state files), workname and readyname
(the names of the files in work/ and ready/).
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
        """offload's state (and, before 0.2, capture's too)."""
        return self.root / "state"

    @property
    def capture_state(self) -> Path:
        return self.root / "capture"

    def state_file(self, daemon: str) -> Path:
        """Where daemon ("capture" or "offload") publishes its state for `rollcap status`."""
        d = self.capture_state if daemon == "capture" else self.state
        return d / f"{daemon}.json"

    def all_dirs(self) -> list[Path]:
        return [self.work, self.ready, self.quarantine, self.tmp, self.state, self.capture_state]
