"""What this host's ring holds for a window (`rollcap list --local`): the
finished files of ready/ whose span overlaps it, each as held by the ring or
kept (and by which keep): its own state, never a gap in the bucket's
coverage. Read straight from the spool (root and group rollcap may)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rollcap.keep import pins
from rollcap.retrieve.coverage import MIN_GAP, Gap, holes
from rollcap.spool.fs import Dir
from rollcap.spool.readyname import ReadyName
from rollcap.timestamps import NS


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


@dataclass(frozen=True)
class HeldSpan:
    """Consecutive ring files of one interface: a part of the window this host
    holds locally and has not shipped (`rollcap list` shows it as such, not as a gap)."""

    host: str
    iface: str
    start: float  # epoch seconds, clipped to the window
    end: float
    files: int
    kept: int  # of them held by a keep (shipping), the rest by the ring alone


def spans(files: Sequence[LocalFile], host: str, since: float, until: float) -> list[HeldSpan]:
    """files (held()) merged per interface where no more than MIN_GAP lies between them."""
    out: list[HeldSpan] = []
    for iface in sorted({f.iface for f in files}):
        cur: HeldSpan | None = None
        for f in sorted((f for f in files if f.iface == iface), key=lambda f: f.start_ns):
            a, b = max(f.start_ns / NS, since), min(f.end_ns / NS, until)
            if cur is not None and a - cur.end < MIN_GAP:
                cur = HeldSpan(host, iface, cur.start, max(cur.end, b), cur.files + 1,
                               cur.kept + bool(f.keep_id))  # fmt: skip
                continue
            if cur is not None:
                out.append(cur)
            cur = HeldSpan(host, iface, a, b, 1, int(bool(f.keep_id)))
        if cur is not None:
            out.append(cur)
    return out


def uncovered(gaps: Sequence[Gap], held_spans: Sequence[HeldSpan]) -> list[Gap]:
    """The parts of gaps that no held span covers: still gaps (at least MIN_GAP long)."""
    out: list[Gap] = []
    for g in gaps:
        mine = [(s.start, s.end) for s in held_spans if (s.host, s.iface) == (g.host, g.iface)]
        out += [Gap(g.host, g.iface, a, b) for a, b in holes(mine, g.start, g.end)] if mine else [g]
    return out
