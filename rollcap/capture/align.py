"""capture.rotate_align: files cut at UTC multiples of rotate_seconds.

tcpdump -G counts from its own file open (and only rotates on a packet), so
aligned files are cut by the supervisor: tcpdump runs without -G, and at each
boundary B a new tcpdump, its file named for B, is started LEAD seconds early
(make-before-break); the old one is stopped at B (after at least the switch's
overlap). The old file then ends, and the new one begins, within a few tenths
of a second of B. Pure: times in, times out.
"""

from __future__ import annotations

import math

from rollcap.capture.switching import OVERLAP

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
