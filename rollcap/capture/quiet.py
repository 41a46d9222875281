"""The quiet-link deadline: when the live file must be cut although tcpdump -G
has not rotated (it rotates only when a packet arrives).

Aged on the monotonic clock: the deadline must not move when the wall clock
steps (the time in tcpdump's file name follows the wall clock)."""

from __future__ import annotations

import time

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
