"""What is wrong now, and how often it is said.

Conditions: each error the daemon shows (`rollcap status`, STATUS=, capture.json's
last_error) is a Condition, set by name when it starts and cleared by name when
it ends, so one ending never hides or clears another. What is shown is the
message of the condition set last among those still active.

RepeatLimiter: repeated identical errors in the journal: log the first, then
one summary a minute. A full spool filesystem makes every tick fail the same
way; one line a minute with a count says as much as two lines a second.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Condition(Enum):
    # the supervisor's: the spool and a reload
    PAUSED = "capture paused by the spool budget"
    COUNTERS_UNSAVED = "generation and pids not saved"
    HANDOFF_FAILED = "a hand-off failed"
    RELOAD_REJECTED = "the last reload was rejected"
    # an interface's
    NO_INTERFACE = "the interface does not exist"
    TCPDUMP_EXITED = "tcpdump exited"
    SWITCH_FAILED = "a new tcpdump did not start"


class Conditions:
    """The active conditions, each with its message, in the order they were set."""

    def __init__(self) -> None:
        self._active: dict[Condition, str] = {}

    def set(self, c: Condition, message: str) -> None:
        self._active.pop(c, None)  # set again: now the latest
        self._active[c] = message

    def clear(self, *cs: Condition) -> None:
        for c in cs:
            self._active.pop(c, None)

    def __contains__(self, c: Condition) -> bool:
        return c in self._active

    def latest(self) -> str:
        """The message of the condition set last ("" when none is active)."""
        return next(reversed(self._active.values()), "")


SUMMARY_EVERY = 60.0


@dataclass
class _Entry:
    message: str
    first: float
    last_logged: float
    suppressed: int = 0
    total: int = 1


class RepeatLimiter:
    def __init__(
        self,
        logger: logging.Logger,
        every: float = SUMMARY_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._every = every
        self._clock = clock
        self._active: dict[str, _Entry] = {}

    def error(self, key: str, message: str, extra: dict[str, Any] | None = None) -> bool:
        """Log message at ERROR unless key repeats within the interval; True if logged.

        key names the failure (what failed and the error, e.g. "handoff:[Errno 28] ...");
        message is what is logged, the latest one for a summary.
        """
        now = self._clock()
        e = self._active.get(key)
        if e is None:
            self._active[key] = _Entry(message, now, now)
            self._log.error("%s", message, extra=extra)
            return True
        e.total += 1
        e.message = message
        if now - e.last_logged < self._every:
            e.suppressed += 1
            return False
        self._log.error(
            "%s (%d more times in the last %.0f s)",
            message,
            e.suppressed + 1,
            now - e.last_logged,
            extra=extra,
        )
        e.suppressed = 0
        e.last_logged = now
        return True

    def clear(self, prefix: str, what: str) -> None:
        """The condition behind the keys starting with prefix ended: say so once."""
        for key in [k for k in self._active if k.startswith(prefix)]:
            e = self._active.pop(key)
            self._log.info(
                "%s works again after %d failures in %.0f s",
                what,
                e.total,
                self._clock() - e.first,
            )

    def active(self) -> int:
        return len(self._active)

    def latest(self) -> str:
        """The message of the most recent failure still active ("" when none)."""
        return max(self._active.values(), key=lambda e: e.first).message if self._active else ""
