"""Capture's kernel drops name their likely cause: CPU, disk or the buffer."""

from __future__ import annotations

from pathlib import Path

from rollcap.capture.counters import Evidence, Sampler, likely_cause


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
