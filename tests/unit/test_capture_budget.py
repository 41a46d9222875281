"""The budget policy: only the spool's own overage is ever dropped; low free space
from anything else pauses capture and deletes nothing."""

from __future__ import annotations

from rollcap.capture.budget import FREE_MARGIN_PERCENT, Usage, decide, fence_files

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
