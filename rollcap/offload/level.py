"""The compression level, following the backlog.

While few files wait, the configured level (zstd 3 by default) stores the
fewest bytes. When more than `compression_fast_backlog` files wait, compressing
costs more than the bytes it saves: the codec's fastest level (zstd 1, about
2.2x faster than 3 here) drains the backlog, and once it is down to half that
many the configured level returns. The hysteresis keeps a backlog hovering at
the threshold from flapping between levels.
"""

from __future__ import annotations

from dataclasses import dataclass

from rollcap.offload.compress import DEFAULT_LEVELS

FAST_LEVELS = {"zstd": 1, "gzip": 1, "none": 0}


@dataclass
class AdaptiveLevel:
    codec: str
    configured: int  # 0: the codec's default
    fast_backlog: int  # 0: never adapt
    fast: bool = False

    @property
    def normal_level(self) -> int:
        return self.configured or DEFAULT_LEVELS[self.codec]

    @property
    def level(self) -> int:
        if self.fast:
            return min(FAST_LEVELS[self.codec], self.normal_level)
        return self.normal_level

    def update(self, backlog_files: int) -> tuple[int, int] | None:
        """Follow a new backlog size; (old, new) level when it changed."""
        if not self.fast_backlog or self.codec == "none":
            return None
        old = self.level
        if not self.fast and backlog_files > self.fast_backlog:
            self.fast = True
        elif self.fast and backlog_files <= self.fast_backlog // 2:
            self.fast = False
        new = self.level
        return (old, new) if new != old else None
