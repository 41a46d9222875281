"""When offload pauses compressing to give capture the right of way (pure).

Two signals, read by the service (rollcap.offload.capturesignals):
- capture's kernel drops grew: pause for hold seconds after the last growth;
- the host's dirty pages near the kernel's throttle point (rollcap.dirtypages),
  where writers, tcpdump too, are made to sleep: pause at dirty_high, resume
  at half of it (hysteresis: no flapping at the edge). Only while a capture
  runs on this host (the service passes no level otherwise): without one, a
  pause protects nothing.

A pause never lasts longer than MAX_PAUSE at a time: then offload compresses
for at least MIN_RUN before it may pause again. A link that drops all day, or
a host whose dirty level never falls, must not stop the offload for good:
the spool would fill and capture would lose everything. What the pause
delays stays in ready/, in its order; nothing is dropped by it.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_PAUSE = 120.0
MIN_RUN = 30.0

DROPS = "capture-drops"
DIRTY = "dirty-pages"
REASONS = (DROPS, DIRTY)


@dataclass(frozen=True)
class Signals:
    now: float  # monotonic seconds
    capture_drops: int | None  # capture's kernel drops total; None: not known now
    dirty_ratio: float | None  # rollcap.dirtypages.DirtyLevel.ratio; None: not known


class Yielding:
    def __init__(self, hold: float, dirty_high: float) -> None:
        self.hold = hold  # 0: capture's drops never pause
        self.dirty_high = dirty_high  # 0: the dirty level never pauses
        self.reason = ""  # "" compressing, else one of REASONS
        self.paused_since: float | None = None
        self.paused_seconds = dict.fromkeys(REASONS, 0.0)  # totals
        self._drops: int | None = None  # the last total seen
        self._drop_at: float | None = None  # when it last grew
        self._dirty = False  # above dirty_high, not yet below half of it
        self._run_until = 0.0  # after a capped pause: compress until then
        self._last: float | None = None

    def update(self, s: Signals) -> tuple[str, str]:
        """The reason to pause now ("" none), and the previous one."""
        self._account(s.now)
        if s.capture_drops is not None:
            if self._drops is not None and s.capture_drops > self._drops:
                self._drop_at = s.now
            # the first reading is a base (older drops are not fresh); a smaller
            # total is a restarted capture, whose count starts again at 0
            self._drops = s.capture_drops
        if s.dirty_ratio is None or not self.dirty_high:
            self._dirty = False
        elif s.dirty_ratio >= self.dirty_high:
            self._dirty = True
        elif s.dirty_ratio <= self.dirty_high / 2:
            self._dirty = False
        want = ""
        if self.hold and self._drop_at is not None and s.now - self._drop_at < self.hold:
            want = DROPS
        elif self._dirty:
            want = DIRTY
        if want and s.now < self._run_until:
            want = ""  # the run after a capped pause
        if want and self.paused_since is not None and s.now - self.paused_since >= MAX_PAUSE:
            want = ""
            self._run_until = s.now + MIN_RUN
        before = self.reason
        self.reason = want
        if want and not before:
            self.paused_since = s.now
        elif not want:
            self.paused_since = None
        return want, before

    def capped(self, now: float) -> bool:
        """Compressing only because the last pause reached MAX_PAUSE."""
        return now < self._run_until

    def _account(self, now: float) -> None:
        if self._last is not None and self.reason and now > self._last:
            self.paused_seconds[self.reason] += now - self._last
        self._last = now
