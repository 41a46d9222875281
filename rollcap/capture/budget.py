"""The spool budget: total bytes under the spool and free space on its filesystem."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from rollcap.naming import ReadyName
from rollcap.spool import Spool


@dataclass(frozen=True)
class Usage:
    used_bytes: int
    max_bytes: int
    free_percent: float
    min_free_percent: float

    @property
    def over(self) -> bool:
        return self.used_bytes > self.max_bytes or self.free_percent < self.min_free_percent

    def comfortable(self, fraction: float = 0.9) -> bool:
        """Room to resume a paused capture: below 90% of the budget and enough free space."""
        return (
            self.used_bytes < fraction * self.max_bytes
            and self.free_percent >= self.min_free_percent
        )

    def as_dict(self) -> dict[str, float | int]:
        return {
            "used_bytes": self.used_bytes,
            "max_bytes": self.max_bytes,
            "free_percent": round(self.free_percent, 2),
            "percent_of_budget": round(100 * self.used_bytes / self.max_bytes, 1),
        }


def _tree_bytes(d: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(d):
        for name in files:
            with contextlib.suppress(FileNotFoundError):  # offload deleted it meanwhile
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def spool_bytes(spool: Spool) -> int:
    return sum(_tree_bytes(d) for d in (spool.work, spool.ready, spool.tmp, spool.quarantine))


def free_percent(path: Path) -> float:
    st = os.statvfs(path)
    return 100.0 * st.f_bavail / st.f_blocks if st.f_blocks else 100.0


def measure(spool: Spool, max_megabytes: int, min_free_percent: float) -> Usage:
    return Usage(
        spool_bytes(spool), max_megabytes * 1_000_000, free_percent(spool.root), min_free_percent
    )


def live_reserve(rotate_bytes: int, live_size: int | None) -> int:
    """Bytes the live file may still grow by before tcpdump -C starts the next one.

    Reserving them when deciding what to drop keeps the spool within budget plus
    one file however late the next hand-off is processed.
    """
    if live_size is None:
        return 0
    return max(0, rotate_bytes - live_size)


def oldest_ready(spool: Spool) -> list[Path]:
    """Finished files in ready/, in hand-off order (by seq: after the wall clock
    stepped back, a newer file has an earlier start time in its name)."""
    try:
        found = [(r.seq, p) for p in spool.ready.iterdir() if (r := ReadyName.parse(p.name))]
    except FileNotFoundError:
        return []
    return [p for _seq, p in sorted(found)]
