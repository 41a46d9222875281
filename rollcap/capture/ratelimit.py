"""Repeated identical errors: log the first, then one summary a minute.

A full spool filesystem makes every tick fail the same way; one line a minute
with a count says as much as two lines a second.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
