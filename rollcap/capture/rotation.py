"""When the live file is cut without tcpdump: the quiet-link deadline and aligned
rotation.

The quiet-link deadline (QuietClock): when the live file must be cut although tcpdump -G
has not rotated (it rotates only when a packet arrives).

Aged on the monotonic clock: the deadline must not move when the wall clock
steps (the time in tcpdump's file name follows the wall clock).

capture.rotate_align: files cut at UTC multiples of rotate_seconds.

tcpdump -G counts from its own file open (and only rotates on a packet), so
aligned files are cut by the supervisor: tcpdump runs without -G, and at each
boundary B a new tcpdump, its file named for B, is started LEAD seconds early
(make-before-break); the old one is stopped at B (after at least the switch's
overlap). The old file then ends, and the new one begins, within a few tenths
of a second of B. Pure: times in, times out.
"""

from __future__ import annotations

import math
import time

from rollcap.capture.switching import OVERLAP
from rollcap.capture.tcpdump import Tcpdump
from rollcap.spool.workname import WorkName

QUIET_GRACE = 1.5  # > tcpdump's 1 s block timeout: a late packet still rotates by itself
QUIET_RETRY = 10.0  # after a failed switch: not a spawn per tick


class QuietClock:
    def __init__(self) -> None:
        # (generation, -G period in the name, monotonic time we first saw it open)
        self._period: tuple[int, str, float] | None = None
        self._retry_at = 0.0

    def seconds_left(self, t: Tcpdump, files: list[WorkName], rotate_seconds: int) -> float:
        """Until the live file (the newest of files, tcpdump t's) is due; <= 0: due."""
        deadline = self._opened_mono(t, files) + rotate_seconds + QUIET_GRACE
        return deadline - time.monotonic()

    def may_retry(self) -> bool:
        return time.monotonic() >= self._retry_at

    def failed(self) -> None:
        self._retry_at = time.monotonic() + QUIET_RETRY

    def _opened_mono(self, t: Tcpdump, files: list[WorkName]) -> float:
        """Monotonic time the live -G period began: tcpdump's start for the first
        period of a generation, else when we first saw it (we look every tick and
        on each new file). -C continuations keep the period's name and deadline."""
        name = files[-1].opened.strftime("%Y%m%dT%H%M%S")
        p = self._period
        if p is not None and p[0] == t.generation and p[1] == name:
            return p[2]
        now = time.monotonic()
        first_of_gen = p is None or p[0] != t.generation
        if first_of_gen and t.listening_mono is not None:
            now = min(t.listening_mono, now)
        self._period = (t.generation, name, now)
        return now


LISTEN_LEAD = 0.5  # a new tcpdump usually listens within this (0.1-0.3 s measured)
LEAD = OVERLAP + LISTEN_LEAD  # start the new tcpdump this long before the boundary
MIN_FIRST = 1.0  # a first file shorter than this runs on to the following boundary


def boundary_after(opened: float, rotate_seconds: int) -> float:
    """The boundary at which a file opened at `opened` ends: the next multiple of
    rotate_seconds at least LEAD + MIN_FIRST later (a file opened on a boundary:
    one period later)."""
    return float((math.floor((opened + LEAD + MIN_FIRST) / rotate_seconds) + 1) * rotate_seconds)


def switch_due(opened: float, rotate_seconds: int, now: float) -> float:
    """Seconds until the switch for the live file (opened at `opened`) must start."""
    return boundary_after(opened, rotate_seconds) - LEAD - now


def name_time(opened: float, rotate_seconds: int, now: float) -> float:
    """The time the next file is named for when the live file (opened at `opened`)
    is cut now: its boundary when the switch is on schedule (up to a period late:
    a loop held up by other switches), else now (a rotate, a reload, a clock step)."""
    b = boundary_after(opened, rotate_seconds)
    if b - LEAD - MIN_FIRST <= now < b + rotate_seconds / 2:
        return b
    return float(math.floor(now))
