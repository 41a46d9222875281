"""Keeping the spool within its budget: measure, decide (rollcap.capture.budget,
pure), then drop the oldest ready/ files and trim quarantine/. Whether capture
pauses or resumes is returned to the supervisor, which owns tcpdump; reserve()
is what the live files may still grow by, the decision's other input."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from typing import Literal

from rollcap.capture import budget
from rollcap.capture.interface import InterfaceCapture
from rollcap.config.schema import SpoolConfig
from rollcap.journal import fields
from rollcap.quarantine import enforce_cap
from rollcap.spool import Spool
from rollcap.spool.fs import Dir
from rollcap.spool.layout import CaptureDirs
from rollcap.spool.workname import list_work

log = logging.getLogger("rollcap.capture")

Transition = Literal["pause", "resume"] | None


def reserve(captures: Iterable[InterfaceCapture], work: Dir, rotate_bytes: int, on_full: str,
            switching: Collection[int] = ()) -> int:  # fmt: skip
    """What the live files may still grow by, each counted at its full size:
    checked after each hand-off and every tick, the spool then stays within
    budget plus one file as long as no check comes later than one file
    (drop-oldest; pause-capture's fences do not depend on it). switching: the
    generations of a switch's overlap, where an old and a new tcpdump both
    write (the new one's head repeats the old one's tail until the hand-off
    strips it)."""

    def size(name: str) -> int:
        st = work.lstat(name)
        return st.st_size if st else 0

    total = 0
    live_gens = set(switching)
    for ic in captures:
        live = ic.live_size(lambda w: size(w.format()))
        if live is None and on_full == "pause-capture":
            live = 0  # paused: resuming starts a whole new file
        total += budget.live_reserve(rotate_bytes, live)
        if ic.proc is not None:
            live_gens.discard(ic.proc.generation)
    for gen in live_gens:  # the new tcpdumps of a switch in progress
        files = [w for w, _n in list_work(work) if w.generation == gen]
        total += budget.live_reserve(rotate_bytes, size(files[-1].format()) if files else 0)
    return total


class BudgetKeeper:
    def __init__(self, spool: Spool, dirs: CaptureDirs, counts: dict[str, int]) -> None:
        self.spool = spool
        self.dirs = dirs
        self.counts = counts
        self.paused = False
        self.pause_reason = ""
        self.usage: budget.Usage | None = None
        self._unfixable_logged = False

    def enforce(self, sp: SpoolConfig, reserve: int) -> Transition:
        """reserve: what the live file may still grow by (budget.live_reserve)."""
        self._cap_quarantine(sp.quarantine_megabytes * 1_000_000)
        u = budget.measure(self.spool, sp.max_megabytes, sp.min_free_percent)
        d = budget.decide(u, sp.on_full, reserve, self.paused)
        if d.drop_bytes:
            u = self._drop_oldest(u, d.drop_bytes)
        self.usage = u
        if not u.over_budget:
            self._unfixable_logged = False
        elif sp.on_full == "drop-oldest" and not self._unfixable_logged:
            self._unfixable_logged = True
            log.warning(
                "spool still over budget with nothing left in ready/ to drop",
                extra=fields(**u.as_dict()),
            )
        if d.pause and not self.paused:
            self.paused, self.pause_reason = True, d.reason
            log.warning(
                "spool %s (%d of %d bytes, %.1f%% free); pausing capture%s",
                d.reason,
                u.used_bytes,
                u.max_bytes,
                u.free_percent,
                "; nothing is deleted for it" if d.reason == "low free space" else "",
                extra=fields(reason=d.reason, **u.as_dict()),
            )
            return "pause"
        if not d.pause and self.paused:
            self.paused, self.pause_reason = False, ""
            log.info("spool has room again; resuming capture", extra=fields(**u.as_dict()))
            return "resume"
        return None

    def pause_message(self) -> str:
        u = self.usage
        if u is None:
            return f"capture paused: {self.pause_reason}"
        return (
            f"capture paused: {self.pause_reason} ({u.used_bytes} of {u.max_bytes} bytes, "
            f"{u.free_percent:.1f}% free, minimum {u.min_free_percent}%)"
        )

    def _drop_oldest(self, u: budget.Usage, want: int) -> budget.Usage:
        """Delete the oldest ready/ files until want bytes (the spool's own overage)
        are gone: never more."""
        ready = self.dirs.ready
        dropped = 0
        for name in budget.oldest_ready(ready):
            if dropped >= want:
                break
            st = ready.lstat(name)
            if st is None:
                continue  # offload finished it meanwhile
            try:
                ready.unlink(name)
            except FileNotFoundError:
                continue
            dropped += st.st_size
            self.counts["dropped_files"] += 1
            self.counts["dropped_bytes"] += st.st_size
            log.warning(
                "spool over budget: dropped %s (%d bytes)",
                name,
                st.st_size,
                extra=fields(file=name, bytes=st.st_size),
            )
        used = max(0, u.used_bytes - dropped)
        free = budget.free_percent(self.spool.root)
        return budget.Usage(used, u.max_bytes, free, u.min_free_percent)

    def _cap_quarantine(self, max_bytes: int) -> None:
        for r in enforce_cap(self.dirs.quarantine, max_bytes):
            self.counts["quarantine_removed"] += 1
            log.warning(
                "quarantine over its cap (spool.quarantine_megabytes): removed %s (%d bytes)",
                r.name,
                r.bytes,
                extra=fields(file=r.name, bytes=r.bytes),
            )
