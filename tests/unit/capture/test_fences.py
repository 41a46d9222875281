"""Fences (pause-capture): each tcpdump may start only the files the budget has
room for, tcpdump cannot open the fenced name, the hand-off never sees a fence,
and a running tcpdump is never left without one."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rollcap.capture.fences import Fences, fence_after, fence_files, remove_stale_fences
from rollcap.spool.fs import Dir
from rollcap.spool.workname import WorkName, list_work

MB = 1_000_000


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
