"""The spool budget: what the spool itself uses, the filesystem's free space, and
a pure policy turning them into a decision (drop how much, pause or not).

The spool's own overage is the only thing drop-oldest ever deletes: bytes over
spool.max_megabytes. Free space below spool.min_free_percent is not the spool's
to fix by deleting captures (something else may have filled the disk): capture
pauses and says so, and resumes once there is room again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rollcap.spool import Spool
from rollcap.spool.fs import Dir, tree_bytes
from rollcap.spool.readyname import ReadyName

# Resume after a low-free-space pause only with this much more than the minimum:
# no start/stop flapping around the threshold.
FREE_MARGIN_PERCENT = 1.0


@dataclass(frozen=True)
class Usage:
    used_bytes: int
    max_bytes: int
    free_percent: float
    min_free_percent: float

    @property
    def over_budget(self) -> bool:
        return self.used_bytes > self.max_bytes

    @property
    def low_free(self) -> bool:
        return self.free_percent < self.min_free_percent

    @property
    def over(self) -> bool:
        return self.over_budget or self.low_free

    def comfortable(self, reserve: int = 0, fraction: float = 0.9) -> bool:
        """Room to resume a paused capture: below 90% of the budget with reserve
        (the file about to be written) counted, and enough free space."""
        return (
            self.used_bytes + reserve < fraction * self.max_bytes
            and self.free_percent >= self.min_free_percent + FREE_MARGIN_PERCENT
        )

    def as_dict(self) -> dict[str, float | int]:
        return {
            "used_bytes": self.used_bytes,
            "max_bytes": self.max_bytes,
            "free_percent": round(self.free_percent, 2),
            "min_free_percent": self.min_free_percent,
            "percent_of_budget": round(100 * self.used_bytes / self.max_bytes, 1),
        }


@dataclass(frozen=True)
class Decision:
    drop_bytes: int  # delete the oldest ready/ files until at least this much is gone
    pause: bool  # capture must be (or stay) stopped
    reason: str  # why it pauses: "", "over budget", "low free space"


def decide(u: Usage, on_full: str, reserve: int, paused: bool) -> Decision:
    """The policy, pure: usage in, decision out.

    reserve: what the live file may still grow by (see live_reserve). drop-oldest
    makes room for it, so the spool stays within budget plus what tcpdump writes
    between a rotation and the next check. pause-capture pauses as soon as the
    live file, once full, would take the spool over budget; what tcpdump writes
    before it is stopped is bounded by its fence (fence_files), not by timing."""
    own_overage = u.used_bytes + reserve - u.max_bytes
    drop = max(0, own_overage) if on_full == "drop-oldest" else 0
    if u.low_free:
        return Decision(drop, True, "low free space")
    if on_full == "pause-capture" and own_overage > 0:
        return Decision(0, True, "over budget")
    if paused and not u.comfortable(reserve if on_full == "pause-capture" else 0):
        return Decision(drop, True, "low free space" if u.free_percent < u.min_free_percent
                        + FREE_MARGIN_PERCENT else "over budget")  # fmt: skip
    return Decision(drop, False, "")


def spool_bytes(spool: Spool) -> int:
    """Bytes in the spool's data directories (never following a link). Not tmp/:
    the offload's compressed copies exist only while it is emptying ready/ (at
    most offload.concurrency files), capture cannot read it when it runs as its
    own user, and dropping a capture to make room for them would be absurd."""
    return sum(tree_bytes(d) for d in (spool.work, spool.ready, spool.quarantine))


def free_percent(path: Path) -> float:
    st = os.statvfs(path)
    return 100.0 * st.f_bavail / st.f_blocks if st.f_blocks else 100.0


def measure(spool: Spool, max_megabytes: int, min_free_percent: float) -> Usage:
    return Usage(
        spool_bytes(spool), max_megabytes * 1_000_000, free_percent(spool.root), min_free_percent
    )


def fs_capacity_bytes(path: Path, min_free_percent: float, used_by_spool: int) -> int:
    """What the spool could hold on its filesystem above min_free_percent."""
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize
    return max(0, int(free + used_by_spool - total * min_free_percent / 100))


def live_reserve(rotate_bytes: int, live_size: int | None) -> int:
    """Bytes the live file may still grow by before tcpdump -C starts the next one.

    Reserving them when deciding what to drop keeps the spool within budget plus
    one file however late the next hand-off is processed.
    """
    if live_size is None:
        return 0
    return max(0, rotate_bytes - live_size)


def fence_files(used: int, reserve: int, live: int, max_bytes: int, rotate_bytes: int) -> int:
    """Whole -C files each of `live` running tcpdumps may start after its live file
    (pause-capture; rollcap.capture.fence stops it there).

    used counts every file in the spool, reserve what the live files may still grow
    by: used + reserve + live * files * rotate_bytes <= max_bytes, so what tcpdump
    can write at all keeps the spool within the budget (plus one packet per file:
    -C is checked before each write), whenever the supervisor looks again."""
    spare = max_bytes - used - reserve
    if live <= 0 or spare <= 0:
        return 0
    return spare // (live * rotate_bytes)


def oldest_ready(ready: Dir) -> list[str]:
    """Finished files in ready/, in hand-off order (by seq: after the wall clock
    stepped back, a newer file has an earlier start time in its name)."""
    found = [(r.seq, n) for n in ready.names() if (r := ReadyName.parse(n))]
    return [n for _seq, n in sorted(found)]
