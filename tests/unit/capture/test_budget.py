"""The budget policy: only the spool's own overage is ever dropped; low free space
from anything else pauses capture and deletes nothing.

Fences (pause-capture): tcpdump cannot open the fenced name, the hand-off never
sees a fence, and a running tcpdump is never left without one."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rollcap.capture.budget import (
    FREE_MARGIN_PERCENT,
    Fences,
    Usage,
    decide,
    fence_after,
    fence_files,
    live_reserve,
    oldest_ready,
    remove_stale_fences,
)
from rollcap.spool import Spool
from rollcap.spool.fs import Dir
from rollcap.spool.readyname import ReadyName
from rollcap.spool.workname import WorkName, list_work
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


def test_fences_leave_room_for_exactly_what_fits_the_budget() -> None:
    """pause-capture: the spool's bytes, the live files at their full size and the
    files each tcpdump may still start stay within the budget."""
    # 4.4 MB used (the live file 0.4 MB of it), 10 MB budget, 1 MB files: the
    # live file may grow by 0.6 MB, and five more files fit
    assert fence_files(4_400_000, 600_000, 1, 10 * MB, MB) == 5
    # a file overshoots -C by a packet: the last whole file no longer fits
    assert fence_files(4_400_001, 600_000, 1, 10 * MB, MB) == 4
    # two tcpdumps (two interfaces, or a switch's overlap) share the room
    assert fence_files(4 * MB, 2 * MB, 2, 10 * MB, MB) == 2
    for used, reserve in ((9 * MB, MB), (10 * MB, MB), (11 * MB, 0)):
        assert fence_files(used, reserve, 1, 10 * MB, MB) == 0  # the live file only
    for used, reserve, live in ((0, MB, 1), (3 * MB, 2 * MB, 2), (7 * MB + 5, 999_000, 3)):
        files = fence_files(used, reserve, live, 10 * MB, MB)
        assert used + reserve + live * files * MB <= 10 * MB
        assert used + reserve + live * (files + 1) * MB > 10 * MB


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
    sup.stop_capture = lambda drain=True: stopped.append(drain)  # type: ignore[method-assign]
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


FIRST = WorkName(7, datetime(2026, 12, 7, 15, 0, tzinfo=UTC), 0, "eth0")


def _work(tmp_path: Path) -> Dir:
    tmp_path.chmod(0o2770)  # work/ is setgid (tmpfiles.d): its directories are too
    return Dir(tmp_path)


def test_tcpdump_cannot_open_the_fenced_name(tmp_path: Path) -> None:
    fences = Fences(_work(tmp_path))
    fences.expect(7, FIRST)
    fences.place(7, None, 2)  # its first file and two more
    assert fences.placed[7] == "g000007-20261207T150000-eth0.pcap3"
    # what tcpdump's fopen(name, "w") does, root or not
    with pytest.raises(IsADirectoryError):
        os.open(tmp_path / fences.placed[7], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    assert fences.reached(7, f"tcpdump: {tmp_path}/{fences.placed[7]}: Is a directory")
    assert not fences.reached(7, "tcpdump: read error: Network is down")


def test_the_hand_off_lists_files_not_fences_but_a_planted_directory(tmp_path: Path) -> None:
    work = _work(tmp_path)
    (tmp_path / FIRST.format()).write_bytes(b"x")
    (tmp_path / "g000007-20261207T150000-eth0.pcap5").mkdir()  # planted: quarantined
    fences = Fences(work)
    fences.place(7, FIRST, 0)
    assert [n for _w, n in list_work(work)] == [
        "g000007-20261207T150000-eth0.pcap",
        "g000007-20261207T150000-eth0.pcap5",
    ]


def test_a_fence_moves_only_once_the_new_one_stands(tmp_path: Path) -> None:
    fences = Fences(_work(tmp_path))
    fences.place(7, FIRST, 4)
    assert fences.placed[7].endswith(".pcap5")
    live = fence_after(FIRST, 1)  # now writing .pcap2, room for 1 more file
    fences.place(7, live, 1)
    assert fences.placed[7].endswith(".pcap4")
    assert sorted(os.listdir(tmp_path)) == ["g000007-20261207T150000-eth0.pcap4"]
    # tcpdump opened .pcap6 before the fence could be placed there: the old one stays
    (tmp_path / "g000007-20261207T150000-eth0.pcap6").write_bytes(b"x")
    fences.place(7, live, 3)
    assert fences.placed[7].endswith(".pcap4")
    assert (tmp_path / "g000007-20261207T150000-eth0.pcap4").is_dir()


def test_fences_of_stopped_tcpdumps_and_a_crashed_supervisor_go(tmp_path: Path) -> None:
    work = _work(tmp_path)
    fences = Fences(work)
    fences.place(7, FIRST, 0)
    fences.place(8, WorkName(8, FIRST.opened, 3, "eth1"), 0)
    fences.keep_only({8})
    assert sorted(os.listdir(tmp_path)) == ["g000008-20261207T150000-eth1.pcap4"]
    # its exit is seen after the fence went: still a stop at the fence
    assert fences.reached(7, "tcpdump: g000007-20261207T150000-eth0.pcap1: Is a directory")
    (tmp_path / "g000009-20261207T150000-eth0.pcap").mkdir()  # planted: not a fence
    remove_stale_fences(work)
    assert sorted(os.listdir(tmp_path)) == ["g000009-20261207T150000-eth0.pcap"]
