"""Jittered exponential backoff, capped ("full jitter" on the upper half)."""

from __future__ import annotations

import random

BASE_SECONDS = 1.0


class Backoff:
    def __init__(self, cap: float, base: float = BASE_SECONDS) -> None:
        self.cap = float(cap)
        self.base = base
        self.failures = 0

    def delay(self, attempt: int) -> float:
        """Delay after the attempt-th consecutive failure (1-based): between half
        and all of min(cap, base * 2**(attempt-1)), so retries spread out."""
        ceiling = min(self.cap, self.base * 2 ** min(max(attempt - 1, 0), 30))
        return random.uniform(ceiling / 2, ceiling)

    def next_delay(self) -> float:
        self.failures += 1
        return self.delay(self.failures)

    def reset(self) -> None:
        self.failures = 0
