"""Offload's back-off: compression pauses for capture's fresh drops and for dirty pages
(tests/integration/test_rightofway.py runs the daemons)."""

from __future__ import annotations

from rollcap.offload.capturesignals import parse_drops
from rollcap.offload.yielding import DIRTY, DROPS, MAX_PAUSE, MIN_RUN, Signals, Yielding


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
