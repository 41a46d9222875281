"""The budget policy: only the spool's own overage is ever dropped; low free space
from anything else pauses capture and deletes nothing (fences:
test_fences.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rollcap.capture.budget import (
    FREE_MARGIN_PERCENT,
    Usage,
    decide,
    live_reserve,
    oldest_ready,
)
from rollcap.spool import Spool
from rollcap.spool.fs import Dir
from rollcap.spool.readyname import ReadyName
from tests.unit.capture.fakes import FakeTcpdump, supervisor, the_capture

MB = 1_000_000


def test_drop_oldest_drops_no_more_than_the_spools_own_overage() -> None:
    u = Usage(used_bytes=105 * MB, max_bytes=100 * MB, free_percent=50, min_free_percent=10)
    d = decide(u, "drop-oldest", reserve=0, paused=False)
    assert (d.drop_bytes, d.pause) == (5 * MB, False)
    # room for the live file to fill up: the overage counts it
    assert decide(u, "drop-oldest", reserve=2 * MB, paused=False).drop_bytes == 7 * MB
    within = Usage(90 * MB, 100 * MB, 50, 10)
    assert decide(within, "drop-oldest", reserve=0, paused=False).drop_bytes == 0


def test_low_free_space_from_outside_pauses_and_drops_nothing() -> None:
    """The spool is well within its budget; something else filled the disk."""
    u = Usage(used_bytes=20 * MB, max_bytes=100 * MB, free_percent=3, min_free_percent=10)
    for mode in ("drop-oldest", "pause-capture"):
        d = decide(u, mode, reserve=5 * MB, paused=False)
        assert (d.drop_bytes, d.pause, d.reason) == (0, True, "low free space"), mode
    # stays paused just above the minimum, resumes with the margin
    just = Usage(20 * MB, 100 * MB, 10 + FREE_MARGIN_PERCENT / 2, 10)
    assert decide(just, "drop-oldest", 0, paused=True).pause
    room = Usage(20 * MB, 100 * MB, 10 + FREE_MARGIN_PERCENT, 10)
    assert not decide(room, "drop-oldest", 0, paused=True).pause


def test_low_free_space_and_over_budget_drops_only_the_overage() -> None:
    u = Usage(used_bytes=103 * MB, max_bytes=100 * MB, free_percent=2, min_free_percent=10)
    d = decide(u, "drop-oldest", reserve=0, paused=False)
    assert (d.drop_bytes, d.pause) == (3 * MB, True)


def test_pause_capture_pauses_over_budget_and_resumes_below_90_percent() -> None:
    over = Usage(101 * MB, 100 * MB, 50, 10)
    d = decide(over, "pause-capture", reserve=0, paused=False)
    assert (d.drop_bytes, d.pause, d.reason) == (0, True, "over budget")
    assert decide(Usage(95 * MB, 100 * MB, 50, 10), "pause-capture", 0, paused=True).pause
    assert not decide(Usage(85 * MB, 100 * MB, 50, 10), "pause-capture", 0, paused=True).pause


def test_pause_capture_pauses_before_the_live_file_would_cross_the_budget() -> None:
    """The live file will grow to a full file: pausing only once the spool is
    over budget lets it end up over by that file plus the next one's start."""
    u = Usage(95 * MB, 100 * MB, 50, 10)
    assert not decide(u, "pause-capture", reserve=5 * MB, paused=False).pause
    d = decide(u, "pause-capture", reserve=6 * MB, paused=False)
    assert (d.pause, d.reason, d.drop_bytes) == (True, "over budget", 0)
    # resuming starts a whole new file: there must be room for it below 90%
    assert decide(Usage(80 * MB, 100 * MB, 50, 10), "pause-capture", 10 * MB, paused=True).pause
    assert not decide(Usage(79 * MB, 100 * MB, 50, 10), "pause-capture", 10 * MB, paused=True).pause


def test_live_reserve_is_what_the_live_file_may_still_grow_by() -> None:
    assert live_reserve(1_000_000, 200_000) == 800_000
    assert live_reserve(1_000_000, 1_000_050) == 0  # -C overshoots by one packet
    assert live_reserve(1_000_000, None) == 0  # no tcpdump running


def test_drop_oldest_reserves_the_live_files_full_size(tmp_path: Path) -> None:
    sup = supervisor(
        tmp_path,
        spool={"max_megabytes": 10, "on_full": "drop-oldest", "min_free_percent": 0},
        capture={"rotate_megabytes": 1},
    )
    for seq in (1, 2, 3):
        (sup.spool.ready / f"20261126T12000{seq}Z-00000{seq}_h_eth0.pcap").write_bytes(
            b"x" * 3_100_000
        )
    live = sup.spool.work / "g000007-20261126T120004-eth0.pcap"
    live.write_bytes(b"x" * 200_000)
    the_capture(sup).proc = FakeTcpdump(7, time.monotonic())  # type: ignore[assignment]
    sup.enforce_budget()  # 9.5 MB used: within 10 MB, but not once the live file is full
    left = sorted(ReadyName.parse(p.name).seq for p in sup.spool.ready.iterdir())  # type: ignore[union-attr]
    assert left == [2, 3]
    assert sup.n.dropped_files == 1 and live.exists()
    sup.enforce_budget()  # 6.4 MB + 0.8 MB reserved: nothing more to drop
    assert sup.n.dropped_files == 1


def test_pause_capture_pauses_before_the_live_file_can_cross_the_budget(tmp_path: Path) -> None:
    """9.9 MB used of 10: the live file may still grow by 0.8 MB, so capture
    pauses now, not one file too late; nothing is ever dropped for it."""
    sup = supervisor(
        tmp_path,
        spool={"max_megabytes": 10, "on_full": "pause-capture", "min_free_percent": 0},
        capture={"rotate_megabytes": 1},
    )
    (sup.spool.ready / "20261126T120001Z-000001_h_eth0.pcap").write_bytes(b"x" * 8_900_000)
    (sup.spool.work / "g000007-20261126T120004-eth0.pcap").write_bytes(b"x" * 200_000)
    the_capture(sup).proc = FakeTcpdump(7, time.monotonic())  # type: ignore[assignment]
    sup.enforce_budget()
    assert not sup.paused  # 8.9 + 0.2 + 0.8 reserve: exactly the budget
    (sup.spool.ready / "20261126T120002Z-000002_h_eth0.pcap").write_bytes(b"x" * 800_000)
    stopped: list[bool] = []
    sup.interfaces.stop = lambda drain=True: stopped.append(drain)  # type: ignore[method-assign]
    sup.enforce_budget()
    assert sup.paused and stopped == [False] and sup.n.dropped_files == 0


def test_ready_files_are_dropped_in_hand_off_order_after_a_clock_step_back(
    tmp_path: Path,
) -> None:
    spool = Spool.at(tmp_path)
    spool.ready.mkdir(parents=True)
    t = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)
    # seq 2 was handed off after the clock stepped back an hour
    for seq, start in ((1, t), (2, t - timedelta(hours=1)), (3, t - timedelta(minutes=59))):
        (spool.ready / ReadyName(start, seq, "h", "eth0").format()).write_bytes(b"x")
    got = [ReadyName.parse(n).seq for n in oldest_ready(Dir(spool.ready))]  # type: ignore[union-attr]
    assert got == [1, 2, 3]
