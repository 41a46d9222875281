"""What this host's ring holds for a window (`rollcap list --local`): the
finished files of ready/ whose span overlaps it, each as held by the ring or
kept (and by which keep): its own state, never a gap in the bucket's
coverage. Read straight from the spool (root and group rollcap may)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rollcap.keep import pins
from rollcap.spool.fs import Dir
from rollcap.spool.readyname import ReadyName


@dataclass(frozen=True)
class LocalFile:
    name: str
    iface: str
    start_ns: int
    end_ns: int
    size: int
    keep_id: str  # "" while the ring alone holds it

    @property
    def state(self) -> str:
        return f"kept ({self.keep_id})" if self.keep_id else "ring"


def held(spool_root: Path, since_ns: int, until_ns: int, iface: str | None = None,
         hosts: Sequence[str] | None = None) -> list[LocalFile]:  # fmt: skip
    """The ring's files overlapping [since_ns, until_ns), oldest first.
    PermissionError when this user may not read ready/."""
    with Dir(spool_root / "ready") as ready:
        files = pins.held_files(ready)
    keeps = []
    d = pins.open_pins(spool_root)
    if d is not None:
        with d:
            keeps = pins.PinReader().read(d)
    by = pins.covered(files, keeps)
    out = []
    for f in files:
        n = ReadyName.parse(f.name)
        if not f.overlaps(since_ns, until_ns) or n is None:
            continue
        if (iface and f.iface != iface) or (hosts and n.host not in hosts):
            continue
        k = by.get(f.name)
        out.append(LocalFile(f.name, f.iface, f.start_ns, f.end_ns, f.size, k.id if k else ""))
    return out
