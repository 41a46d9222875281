"""The compression level follows the backlog, with hysteresis, and only when asked."""

from __future__ import annotations

from rollcap.offload.level import AdaptiveLevel


def test_fast_above_the_threshold_back_at_half() -> None:
    lv = AdaptiveLevel("zstd", 0, 4)
    assert lv.level == 3
    assert lv.update(4) is None  # at the threshold: not yet
    assert lv.update(5) == (3, 1)
    assert lv.update(3) is None  # above half: stays fast (no flapping at 4/5)
    assert lv.level == 1
    assert lv.update(2) == (1, 3)
    assert lv.level == 3


def test_configured_level_is_what_returns() -> None:
    lv = AdaptiveLevel("zstd", 9, 2)
    assert lv.update(10) == (9, 1)
    assert lv.update(0) == (1, 9)


def test_zero_keeps_the_level_fixed() -> None:
    lv = AdaptiveLevel("zstd", 3, 0)
    assert lv.update(10_000) is None
    assert lv.level == 3


def test_gzip_goes_to_one_and_none_never_changes() -> None:
    g = AdaptiveLevel("gzip", 0, 1)
    assert g.level == 6
    assert g.update(2) == (6, 1)
    n = AdaptiveLevel("none", 0, 1)
    assert n.update(100) is None


def test_a_configured_level_below_fast_is_not_raised() -> None:
    lv = AdaptiveLevel("zstd", 1, 1)
    assert lv.update(50) is None
    assert lv.level == 1
