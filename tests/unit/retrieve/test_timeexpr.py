"""--since/--until expressions: what an operator types during an incident."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from rollcap.retrieve.timeexpr import (
    TimeExprError,
    fmt_utc,
    parse_time,
    parse_time_ns,
    parse_window,
    parse_window_ns,
    widened,
)
from rollcap.timestamps import fmt_utc as ts_fmt_utc
from rollcap.timestamps import from_text, to_text

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def berlin() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("NOW", NOW),
        ("-15m", datetime(2026, 11, 26, 11, 45, tzinfo=UTC)),
        ("-2h", datetime(2026, 11, 26, 10, 0, tzinfo=UTC)),
        ("-1d", datetime(2026, 11, 25, 12, 0, tzinfo=UTC)),
        ("-90s", datetime(2026, 11, 26, 11, 58, 30, tzinfo=UTC)),
        ("now-1h30m", datetime(2026, 11, 26, 10, 30, tzinfo=UTC)),
        ("-1w", datetime(2026, 11, 19, 12, 0, tzinfo=UTC)),
        ("2026-11-26T10:00:00Z", datetime(2026, 11, 26, 10, 0, tzinfo=UTC)),
        ("2026-11-26 10:00:00.25+01:00", datetime(2026, 11, 26, 9, 0, 0, 250000, tzinfo=UTC)),
        ("2026-11-26T10:00-05:00", datetime(2026, 11, 26, 15, 0, tzinfo=UTC)),
        ("@1795694400.5", datetime(2026, 11, 26, 12, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_accepted_forms(text: str, expected: datetime) -> None:
    assert parse_time(text, now=NOW) == expected


def test_naive_time_is_local_time(berlin: None) -> None:
    # Berlin is UTC+1 in November: 10:00 local is 09:00 UTC
    assert parse_time("2026-11-26 10:00", now=NOW) == datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    assert parse_time("2026-11-26", now=NOW) == datetime(2026, 11, 25, 23, 0, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["yesterday", "-15", "15m", "2026-13-01", "", "@x", "-1y"])
def test_bad_expression_names_the_argument(bad: str) -> None:
    with pytest.raises(TimeExprError) as e:
        parse_window(bad, "now", now=NOW)
    assert str(e.value).startswith("--since:")
    assert "\n" not in str(e.value)
    with pytest.raises(TimeExprError, match=r"^--until:"):
        parse_window("-1h", bad, now=NOW)


def test_window_must_be_forward() -> None:
    with pytest.raises(TimeExprError, match="must be before"):
        parse_window("-1h", "-2h", now=NOW)
    assert parse_window("-1h", "now", now=NOW) == (datetime(2026, 11, 26, 11, tzinfo=UTC), NOW)


def test_fmt_utc() -> None:
    assert fmt_utc(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    assert fmt_utc(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "2026-01-02T03:04:05.000006Z"


def test_fractions_are_exact_to_the_nanosecond() -> None:
    base = int(datetime(2026, 11, 26, 12, tzinfo=UTC).timestamp()) * 10**9
    assert parse_time_ns("@1795694400.123456789", now=NOW) == 1795694400_123456789
    assert parse_time_ns("@1795694400.5", now=NOW) == 1795694400_500000000
    assert parse_time_ns("2026-11-26T12:00:00.123456789Z", now=NOW) == base + 123456789
    assert parse_time_ns("2026-11-26 13:00:00.0000001+01:00", now=NOW) == base + 100
    assert parse_time_ns("2026-11-26T12:00:00.25Z", now=NOW) == base + 250_000_000
    assert parse_time_ns("now", now=NOW) == base
    assert parse_time_ns("-1s", now=NOW) == base - 10**9
    # the selection's datetimes: the same window widened to whole µs
    lo, hi = parse_window_ns("@1795694400.000000999", "@1795694400.000002001", now=NOW)
    assert (lo, hi) == (1795694400_000000999, 1795694400_000002001)
    since, until = widened((lo, hi))
    assert (since.microsecond, until.microsecond) == (0, 3)
    with pytest.raises(TimeExprError, match="must be before"):
        parse_window_ns("@1795694400.000000002", "@1795694400.000000001", now=NOW)


def test_timestamp_text_is_exact_and_reads_what_0_2_wrote() -> None:
    assert to_text(1795694400_250000000) == "1795694400.250000"  # µs: 0.2's "%.6f"
    assert to_text(1795694400_250000001) == "1795694400.250000001"
    for ns_ in (0, 1, 999, 1795694400_123456789, 1795694400_999999999):
        assert from_text(to_text(ns_)) == ns_
    assert from_text("1795694400.25") == 1795694400_250000000
    assert from_text("1795694400") == 1795694400 * 10**9
    assert from_text("") is None and from_text("soon") is None and from_text("nan") is None
    assert ts_fmt_utc(1795694400_000000000) == "2026-11-26T12:00:00Z"
    assert ts_fmt_utc(1795694400_250000000) == "2026-11-26T12:00:00.250000Z"
    assert ts_fmt_utc(1795694400_250000001) == "2026-11-26T12:00:00.250000001Z"
