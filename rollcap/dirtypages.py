"""How close the host's dirty page cache is to the point where the kernel
throttles writers, tcpdump included (read by capture's drop cause and by
offload's back-off).

The kernel (mm/page-writeback.c) lets a task write into the page cache freely
while dirty + writeback pages stay below the "freerun" point, halfway between
the background threshold (where the flusher threads start) and the dirty
threshold; above it, balance_dirty_pages() makes writers sleep. A tcpdump put
to sleep there does not read its socket, and the kernel drops what overflows
its buffer. The thresholds are vm.dirty_bytes / dirty_background_bytes when
set, else vm.dirty_ratio / dirty_background_ratio percent of the memory the
kernel counts as dirtyable: about free + file cache pages (MemFree +
Active(file) + Inactive(file) in /proc/meminfo).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
_FIELDS = ("MemFree", "Active(file)", "Inactive(file)", "Dirty", "Writeback")


@dataclass(frozen=True)
class DirtyLevel:
    dirty_bytes: int  # Dirty + Writeback
    freerun_bytes: int  # where the kernel starts throttling writers

    @property
    def ratio(self) -> float:
        """dirty_bytes / freerun_bytes: at 1.0 writers start being throttled."""
        return self.dirty_bytes / self.freerun_bytes if self.freerun_bytes > 0 else 0.0


def parse_meminfo(text: str) -> dict[str, int]:
    """The fields rollcap uses from /proc/meminfo, in bytes."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in _FIELDS:
            parts = rest.split()
            if parts and parts[0].isdigit():
                out[name] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out


def dirty_level(meminfo: dict[str, int], vm: dict[str, int]) -> DirtyLevel:
    """vm: the dirty_* sysctls of /proc/sys/vm by name (dirty_ratio, dirty_bytes,
    dirty_background_ratio, dirty_background_bytes)."""
    dirtyable = sum(meminfo.get(k, 0) for k in ("MemFree", "Active(file)", "Inactive(file)"))

    def threshold(kind: str) -> int:
        fixed = vm.get(f"{kind}_bytes", 0)
        return fixed if fixed > 0 else dirtyable * vm.get(f"{kind}_ratio", 0) // 100

    thresh = threshold("dirty")
    bg = threshold("dirty_background")
    if bg >= thresh:  # as the kernel does: background at most half of the limit
        bg = thresh // 2
    dirty = meminfo.get("Dirty", 0) + meminfo.get("Writeback", 0)
    return DirtyLevel(dirty, (thresh + bg) // 2)


def read_dirty_level(proc: Path = PROC) -> DirtyLevel | None:
    """The host's level now; None when /proc does not tell (a sandbox without it)."""
    try:
        meminfo = parse_meminfo((proc / "meminfo").read_text())
        vm = {
            name: int((proc / "sys" / "vm" / name).read_text())
            for name in ("dirty_ratio", "dirty_bytes", "dirty_background_ratio",
                         "dirty_background_bytes")
        }  # fmt: skip
    except (OSError, ValueError):
        return None
    if "Dirty" not in meminfo:
        return None
    return dirty_level(meminfo, vm)
