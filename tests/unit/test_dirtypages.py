"""The host's dirty-page level against the kernel's writer throttling."""

from __future__ import annotations

from pathlib import Path

from rollcap.dirtypages import dirty_level, parse_meminfo, read_dirty_level

GiB = 1 << 30
MEMINFO = """MemTotal:       24683772 kB
MemFree:         6000000 kB
Active(file):    1000000 kB
Inactive(file):  3000000 kB
Dirty:            500000 kB
Writeback:        100000 kB
"""
VM = {"dirty_ratio": 20, "dirty_bytes": 0, "dirty_background_ratio": 10,
      "dirty_background_bytes": 0}  # fmt: skip


def test_dirty_level_is_measured_against_the_kernels_freerun_point() -> None:
    level = dirty_level(parse_meminfo(MEMINFO), VM)
    dirtyable = 10_000_000 * 1024
    assert level.dirty_bytes == 600_000 * 1024
    # halfway between background (10 %) and the limit (20 %)
    assert level.freerun_bytes == (dirtyable * 20 // 100 + dirtyable * 10 // 100) // 2
    assert 0.39 < level.ratio < 0.41


def test_dirty_bytes_settings_win_over_ratios_and_background_is_capped() -> None:
    vm = {**VM, "dirty_bytes": GiB, "dirty_background_bytes": 2 * GiB}
    level = dirty_level(parse_meminfo(MEMINFO), vm)
    assert level.freerun_bytes == (GiB + GiB // 2) // 2


def test_dirty_level_of_a_proc_without_meminfo_is_unknown(tmp_path: Path) -> None:
    assert read_dirty_level(tmp_path) is None


def test_the_hosts_own_level_reads() -> None:
    level = read_dirty_level()
    assert level is not None and level.freerun_bytes > 0
