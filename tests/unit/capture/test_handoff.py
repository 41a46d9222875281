from __future__ import annotations

import logging
import os
import stat
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rollcap.capture.budget import measure, oldest_ready
from rollcap.capture.handoff import Handoff, HandoffResult, Persistent
from rollcap.capture.switching import (
    sidecar_name,
    tail_since,
    write_sidecar,
)
from rollcap.pcapfile import scan
from rollcap.spool import Spool
from rollcap.spool.layout import CaptureDirs
from rollcap.spool.readyname import ReadyName
from rollcap.spool.workname import WorkName
from tests.support.pcaps import HEADER, packets, record, write_nano_pcap, write_pcap
from tests.unit.capture.fakes import supervisor


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    s = Spool.at(tmp_path / "spool")
    for d in [s.root, *s.all_dirs()]:
        d.mkdir(exist_ok=True)
    return s


class _Handoff(Handoff):
    """Hand-off by path, for brevity: the daemon passes the name in work/."""

    def hand_off(self, w: WorkName, path: Path | str) -> HandoffResult:  # type: ignore[override]
        return super().hand_off(w, Path(path).name)


def _handoff(spool: Spool, marker_every: float = 600.0) -> _Handoff:
    dirs = CaptureDirs.open(spool)
    return _Handoff(dirs, Persistent.load(dirs), "host1", os.getegid(), os.geteuid(),
                    marker_every)  # fmt: skip


def test_cut_off_record_is_repaired_and_named(spool: Spool) -> None:
    name = "g000003-20261126T120000-eth0.pcap"
    path = write_pcap(spool.work / name, packets(10), tail=b"\x01\x02\x03\x04\x05")
    r = _handoff(spool).hand_off(WorkName.parse(name), path)  # type: ignore[arg-type]
    assert r.name == "20261126T120000Z-000001_host1_eth0.pcap"
    assert r.packets == 10 and r.repaired_bytes == 5
    ready = spool.ready / r.name
    assert not path.exists() and not scan(ready).truncated
    assert stat.S_IMODE(ready.stat().st_mode) == 0o640
    parsed = ReadyName.parse(r.name)
    assert parsed is not None and parsed.seq == 1


def test_a_nano_continuation_is_named_after_its_first_packets_whole_second(
    spool: Spool, tmp_path: Path
) -> None:
    """-C continuation: its name's start is its first packet's second, floored
    from the exact ns (a float of 12:00:07.999999999 would round up to :08)."""
    sec = int(datetime(2026, 11, 26, 12, 0, 7, tzinfo=UTC).timestamp())
    name = "g000003-20261126T120000-eth0.pcap1"
    write_nano_pcap(tmp_path / "x.pcap", [(float(sec), b"a" * 60)], extra_ns=0)
    data = bytearray((tmp_path / "x.pcap").read_bytes())
    struct.pack_into("<I", data, 28, 999_999_999)  # the first record's ns fraction
    (spool.work / name).write_bytes(bytes(data))
    r = _handoff(spool).hand_off(WorkName.parse(name), spool.work / name)  # type: ignore[arg-type]
    assert r.name == "20261126T120007Z-000001_host1_eth0.pcap"
    assert scan(spool.ready / r.name).first_ns == sec * 10**9 + 999_999_999


def test_an_idle_period_is_handed_off_as_a_coverage_marker_once_a_period(spool: Spool) -> None:
    """A header-only file (an idle link) goes to ready/ as a 24-byte coverage
    marker, its mtime the hand-off; another of the same interface opened
    within the rotation period (a restart loop), and an empty file, are
    discarded; the next period's is a marker again."""
    h = _handoff(spool)
    first = "g000001-20261126T120000-eth0.pcap"
    (spool.work / first).write_bytes(HEADER)
    os.utime(spool.work / first, (1, 1))  # tcpdump wrote the header when it opened
    r = h.hand_off(WorkName.parse(first), spool.work / first)  # type: ignore[arg-type]
    assert r.coverage and r.packets == 0 and r.name == "20261126T120000Z-000001_host1_eth0.pcap"
    marker = spool.ready / r.name
    assert marker.read_bytes() == HEADER and marker.stat().st_mtime > 1_000_000_000
    assert stat.S_IMODE(marker.stat().st_mode) == 0o640
    for name, content in [
        ("g000002-20261126T120000-eth0.pcap", b""),
        ("g000003-20261126T120000-eth0.pcap", HEADER + b"\x00" * 7),
        ("g000004-20261126T120805-eth0.pcap", HEADER),
    ]:
        p = spool.work / name
        p.write_bytes(content)
        r = h.hand_off(WorkName.parse(name), p)  # type: ignore[arg-type]
        assert r.name is None and not r.coverage and not p.exists()
    for other in ("g000005-20261126T120001-eth1.pcap", "g000006-20261126T121000-eth0.pcap"):
        (spool.work / other).write_bytes(HEADER)
        assert h.hand_off(WorkName.parse(other), spool.work / other).coverage  # type: ignore[arg-type]
    assert len(list(spool.ready.iterdir())) == 3


def test_no_coverage_marker_under_a_clock_stepped_back(spool: Spool) -> None:
    """Named by a clock stepped back, a marker would sort before what ready/
    already holds and claim a covered time again: none until the clock passes
    the last marker's period."""
    h = _handoff(spool)
    name = "g000001-20261126T113000-eth0.pcap"  # packets: no marker yet, but a time
    h.hand_off(WorkName.parse(name), write_pcap(spool.work / name, packets(2)))  # type: ignore[arg-type]
    for name, due in [
        ("g000002-20261126T112000-eth0.pcap", False),  # stepped back before any marker
        ("g000001-20261126T120000-eth0.pcap", True),
        ("g000002-20261126T110000-eth0.pcap", False),  # the clock stepped back 1 h
        ("g000003-20261126T115000-eth0.pcap", False),
        ("g000004-20261126T121000-eth0.pcap", True),  # past the last marker's period
    ]:
        (spool.work / name).write_bytes(HEADER)
        r = h.hand_off(WorkName.parse(name), spool.work / name)  # type: ignore[arg-type]
        assert r.coverage is due, name
    assert sorted(p.name for p in spool.ready.iterdir()) == [
        "20261126T113000Z-000001_host1_eth0.pcap",
        "20261126T120000Z-000002_host1_eth0.pcap", "20261126T121000Z-000003_host1_eth0.pcap",
    ]  # fmt: skip


def test_sequence_survives_a_restart_and_a_lost_counter_file(spool: Spool) -> None:
    h = _handoff(spool)
    for i in range(3):
        name = f"g000001-20261126T12000{i}-eth0.pcap"
        h.hand_off(WorkName.parse(name), write_pcap(spool.work / name, packets(2)))  # type: ignore[arg-type]
    (spool.capture_state / "capture-counters.json").unlink()
    p = Persistent.load(CaptureDirs.open(spool))
    assert p.seq == 3  # recovered from ready/
    assert p.next_generation() == 1  # work/ is empty; counters restart safely above it


def test_overlap_sidecar_strips_the_new_generations_first_file(spool: Spool) -> None:
    pk = packets(50)
    old = write_pcap(spool.work / "g000001-20261126T120000-eth0.pcap", pk[:30])
    new_name = "g000002-20261126T120001-eth0.pcap"
    write_pcap(spool.work / new_name, pk[20:])
    write_sidecar(CaptureDirs.open(spool).work, sidecar_name(2), tail_since(old, pk[25][0]))
    r = _handoff(spool).hand_off(WorkName.parse(new_name), spool.work / new_name)  # type: ignore[arg-type]
    assert r.stripped == 10 and r.packets == 20
    assert not (spool.work / sidecar_name(2)).exists()


def test_budget_counts_every_area_and_drops_oldest_first(spool: Spool) -> None:
    for i, name in enumerate(
        [
            "20261126T120005Z-000002_h_eth0.pcap",
            "20261126T120000Z-000001_h_eth0.pcap",
            "20261126T120010Z-000003_h_eth0.pcap",
        ]
    ):
        (spool.ready / name).write_bytes(b"x" * (1000 + i))
    (spool.ready / "not-ours.txt").write_bytes(b"x" * 10)
    (spool.work / "g000001-20261126T120000-eth0.pcap").write_bytes(b"x" * 500)
    (spool.tmp / "t").write_bytes(b"x" * 20)
    (spool.quarantine / "q").write_bytes(b"x" * 30)
    u = measure(spool, 10, 0)
    assert u.used_bytes == 1000 + 1001 + 1002 + 10 + 500 + 30  # not tmp/: offload's copies
    assert not u.over
    assert [n[:16] for n in oldest_ready(CaptureDirs.open(spool).ready)] == [
        "20261126T120000Z",
        "20261126T120005Z",
        "20261126T120010Z",
    ]


def test_a_quarantined_work_file_is_not_reported_as_discarded_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Quarantine keeps the file: the log and status must not say it was deleted."""
    sup = supervisor(tmp_path)
    (sup.spool.work / "g000004-20261126T120000-eth0.pcap").write_bytes(b"x" * 100)
    with caplog.at_level(logging.INFO, logger="rollcap.capture"):
        sup.process_work(block=True)
    kept = [p.name for p in sup.spool.quarantine.iterdir() if not p.name.endswith(".reason")]
    assert kept == ["g000004-20261126T120000-eth0.pcap"]
    assert sup.n.discarded_empty == 0
    assert "no packets" not in caplog.text and "quarantine" in caplog.text


def test_a_big_finished_file_is_repaired_from_its_tail(spool: Spool) -> None:
    """Larger than the tail window: the cut is proved from the tail, the file is
    not walked, its packets are left for the offload to count."""
    name = "g000003-20261126T120000-eth0.pcap"
    pkts = [(1_800_000_000.0 + i * 0.001, os.urandom(1400)) for i in range(1000)]
    torn = record(1_800_000_001.0, os.urandom(1400))[:700]  # tcpdump killed mid-record
    path = write_pcap(spool.work / name, pkts, tail=torn)
    r = _handoff(spool).hand_off(WorkName.parse(name), path)  # type: ignore[arg-type]
    assert r.name is not None and r.packets is None and r.repaired_bytes == 700
    assert r.first_ts == pytest.approx(1_800_000_000.0)
    full = scan(spool.ready / r.name)
    assert full.packets == 1000 and not full.truncated
