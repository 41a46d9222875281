"""Capture first: the drops' likely cause, the dirty-page level, and offload's
back-off rule (pure parts; tests/integration/test_rightofway.py runs the daemons)."""

from __future__ import annotations

from pathlib import Path

from rollcap.capture.dropcause import Evidence, Sampler, likely_cause
from rollcap.dirtypages import dirty_level, parse_meminfo, read_dirty_level
from rollcap.offload.capturesignals import parse_drops
from rollcap.offload.yielding import DIRTY, DROPS, MAX_PAUSE, MIN_RUN, Signals, Yielding

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


def test_cause_cpu_when_tcpdump_saturates_a_core() -> None:
    c = likely_cause(Evidence(0.97, 0.6, 0.5, 2.0), 32768)
    assert c.cause == "cpu" and "97% of a core" in c.detail


def test_cause_cpu_when_the_host_has_no_core_to_spare() -> None:
    assert likely_cause(Evidence(0.3, 0.99, 0.0, 0.1), 32768).cause == "cpu"


def test_cause_disk_from_io_pressure_or_dirty_pages() -> None:
    assert likely_cause(Evidence(0.3, 0.5, 0.4, 0.1), 32768).cause == "disk"
    c = likely_cause(Evidence(0.3, 0.5, 0.0, 1.2), 32768)
    assert c.cause == "disk" and "throttle" in c.detail


def test_cause_buffer_names_the_setting_when_cpu_and_disk_had_room() -> None:
    c = likely_cause(Evidence(0.3, 0.5, 0.01, 0.2), 512)
    assert c.cause == "buffer" and "512 KiB" in c.detail and "capture.buffer_kib" in c.detail
    assert likely_cause(Evidence(None, None, None, None), 512).cause == "buffer"


def test_sampler_reads_a_process_cpu_share(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    rest = " ".join(["S"] + ["0"] * 10 + ["{u}", "{s}"] + ["0"] * 30)

    def write(u: int, s: int) -> None:
        (tmp_path / "42" / "stat").write_text(f"42 (tc pd) ump) {rest.format(u=u, s=s)}\n")

    sampler = Sampler(tmp_path)
    write(100, 0)
    assert sampler.sample(42, 10.0).tcpdump_cpu is None  # no interval yet
    write(150, 40)  # 90 ticks in 1 s
    share = sampler.sample(42, 11.0).tcpdump_cpu
    assert share is not None and abs(share - 90 / sampler.tick) < 1e-9


def _text(drops: int, updated: float, daemon: str = "capture") -> str:
    return (
        "# TYPE rollcap_capture_kernel_drops counter\n"
        f'rollcap_capture_kernel_drops_total{{interface="a"}} {drops}\n'
        f'rollcap_capture_kernel_drops_total{{interface="b"}} 1\n'
        "# TYPE rollcap_state_updated_timestamp_seconds gauge\n"
        f'rollcap_state_updated_timestamp_seconds{{daemon="{daemon}"}} {updated}\n'
    )


def test_capture_drops_summed_only_while_the_file_is_fresh() -> None:
    assert parse_drops(_text(5, 1000.0), 1010.0, 45) == 6
    assert parse_drops(_text(5, 1000.0), 1100.0, 45) is None  # stale: capture stopped
    assert parse_drops(_text(5, 1000.0, "offload"), 1010.0, 45) is None
    assert parse_drops("rollcap_capture_kernel_drops_total{", 1010.0, 45) is None
    assert parse_drops("", 1010.0, 45) is None


def test_fresh_drops_pause_for_the_hold_and_old_ones_do_not() -> None:
    y = Yielding(hold=10, dirty_high=0)
    assert y.update(Signals(0, 500, None)) == ("", "")  # older drops: a base only
    assert y.update(Signals(1, 500, None))[0] == ""
    assert y.update(Signals(2, 501, None)) == (DROPS, "")
    assert y.update(Signals(11, 501, None))[0] == DROPS
    assert y.update(Signals(12, None, None)) == ("", DROPS)  # hold over
    assert y.paused_seconds[DROPS] == 10


def test_a_restarted_capture_counting_from_zero_is_no_drop() -> None:
    y = Yielding(hold=10, dirty_high=0)
    y.update(Signals(0, 500, None))
    assert y.update(Signals(1, 0, None))[0] == ""
    assert y.update(Signals(2, 3, None))[0] == DROPS


def test_dirty_pause_has_hysteresis() -> None:
    y = Yielding(hold=0, dirty_high=0.8)
    assert y.update(Signals(0, 7, 0.79))[0] == ""
    assert y.update(Signals(1, 9, 0.85))[0] == DIRTY  # drops ignored: hold 0
    assert y.update(Signals(2, None, 0.5))[0] == DIRTY  # not yet half
    assert y.update(Signals(3, None, 0.4))[0] == ""
    assert y.update(Signals(4, None, None))[0] == ""


def test_a_pause_is_capped_then_compression_runs() -> None:
    y = Yielding(hold=0, dirty_high=0.8)
    assert y.update(Signals(0, None, 2.0))[0] == DIRTY
    assert y.update(Signals(MAX_PAUSE - 1, None, 2.0))[0] == DIRTY
    assert y.update(Signals(MAX_PAUSE, None, 2.0)) == ("", DIRTY)
    assert y.capped(MAX_PAUSE + 1)
    assert y.update(Signals(MAX_PAUSE + MIN_RUN - 1, None, 2.0))[0] == ""
    assert y.update(Signals(MAX_PAUSE + MIN_RUN, None, 2.0))[0] == DIRTY
