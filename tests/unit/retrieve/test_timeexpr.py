"""--since/--until expressions: what an operator types during an incident."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rollcap.retrieve.timeexpr import (
    TimeExprError,
    fmt_utc,
    fmt_utc_ns,
    parse_duration_ns,
    parse_time,
    parse_time_ns,
    parse_window,
    parse_window_ns,
    widened,
    window_ns,
)
from rollcap.timestamps import fmt_utc as ts_fmt_utc
from rollcap.timestamps import from_text, to_text

REPO = Path(__file__).resolve().parents[3]
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


def _docs_table() -> list[tuple[str, str]]:
    """(what the operator types, what it reads as) from the table in docs/retrieve.md."""
    text = (REPO / "docs" / "retrieve.md").read_text()
    block = text.split("<!-- time-expressions: begin -->", 1)[1]
    block = block.split("<!-- time-expressions: end -->", 1)[0]
    rows = []
    for line in block.strip().splitlines()[2:]:  # after the header and its rule
        typed, read_as = (c.strip() for c in line.strip("|").split("|")[:2])
        assert typed.startswith("`") and typed.endswith("`"), line
        typed = typed.strip("`")
        if typed[:1] == typed[-1:] == "'":  # the shell's quotes
            typed = typed[1:-1]
        rows.append((typed, read_as))
    return rows


DOCS_TABLE = _docs_table()


@pytest.fixture
def utc_local() -> Iterator[None]:
    """The table is written for a machine whose local time is UTC."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def test_docs_table_covers_the_forms_operators_type() -> None:
    typed = {t for t, _ in DOCS_TABLE}
    for form in ("today", "yesterday", "now", "09:30", "10 min ago", "2h ago", "-5min", "+1h",
                 "-5 min", "5m ago", "10m", "1h30m", "@1795694400.5"):  # fmt: skip
        assert form in typed, form
    assert len(DOCS_TABLE) >= 20


@pytest.mark.parametrize(("text", "expected"), DOCS_TABLE, ids=[t for t, _ in DOCS_TABLE])
def test_every_row_of_the_docs_table(text: str, expected: str, utc_local: None) -> None:
    assert fmt_utc_ns(parse_time_ns(text, now=NOW, arg="--since")) == expected
    assert fmt_utc_ns(parse_time_ns(text.upper(), now=NOW)) == expected  # case-insensitive


def test_a_bare_duration_means_ago_for_until_too() -> None:
    assert window_ns("1h30m", "10m", now=NOW) == (
        parse_time_ns("-90m", now=NOW), parse_time_ns("-10m", now=NOW))  # fmt: skip


def test_naive_time_is_local_time(berlin: None) -> None:
    # Berlin is UTC+1 in November: 10:00 local is 09:00 UTC
    assert parse_time("2026-11-26 10:00", now=NOW) == datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    assert parse_time("2026-11-26", now=NOW) == datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
    assert parse_time("10:00", now=NOW) == datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    assert parse_time("today", now=NOW) == datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
    assert parse_time("yesterday", now=NOW) == datetime(2026, 11, 24, 23, 0, tzinfo=UTC)
    # 23:30 UTC is already the 27th in Berlin: today is Berlin's day
    late = datetime(2026, 11, 26, 23, 30, tzinfo=UTC)
    assert parse_time("today", now=late) == datetime(2026, 11, 26, 23, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("15", "a number without a unit: write 15m, 15s, 15:00 or @15"),
        ("-15", "a number without a unit"),
        ("-5m ago", "'-' and 'ago' both say before now"),
        ("-1y", "unit 'y' unknown"),
        ("3 months ago", "unit 'months' unknown"),
        ("25:00", "not a time of day"),
        ("2026-13-01", "cannot read '2026-13-01'"),
        ("", "empty time expression"),
        ("@x", "not a valid epoch time"),
        ("last week", "cannot read 'last week'"),
    ],
)
def test_bad_expression_names_the_argument_and_how_it_was_read(bad: str, says: str) -> None:
    with pytest.raises(TimeExprError) as e:
        parse_window(bad, "now", now=NOW)
    assert str(e.value).startswith("--since:")
    assert says in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(TimeExprError, match=r"^--until:"):
        parse_window("-1h", bad, now=NOW)


def test_a_backward_window_shows_both_ends_as_read(utc_local: None) -> None:
    with pytest.raises(TimeExprError) as e:
        window_ns("12:45", "12:30", now=NOW)
    assert str(e.value) == (
        "--since '12:45' (read as 2026-11-26 12:45:00+00:00 local, 2026-11-26T12:45:00Z) "
        "must be before --until '12:30' (read as 2026-11-26 12:30:00+00:00 local, "
        "2026-11-26T12:30:00Z)"
    )


def test_around_before_after() -> None:
    t = parse_time_ns("2026-11-26T11:00:00Z", now=NOW)
    m = 60 * 10**9
    assert window_ns(around="2026-11-26T11:00:00Z", before="10m", after="2 min", now=NOW) == (
        t - 10 * m, t + 2 * m)  # fmt: skip
    assert window_ns(around="2026-11-26T11:00:00Z", now=NOW) == (t - 5 * m, t + 5 * m)
    with pytest.raises(TimeExprError, match=r"^--around with --since: give one window"):
        window_ns("1h", around="11:00", now=NOW)
    with pytest.raises(TimeExprError, match=r"^--before needs --around"):
        window_ns("1h", before="5m", now=NOW)
    with pytest.raises(TimeExprError, match=r"^--after: '-5m' is not a length of time"):
        window_ns(around="11:00", after="-5m", now=NOW)
    with pytest.raises(TimeExprError, match=r"^--before: '0s' is no time at all"):
        window_ns(around="11:00", before="0s", now=NOW)


def test_default_window_or_a_window_required() -> None:
    hour = 3600 * 10**9
    now_ns = parse_time_ns("now", now=NOW)
    assert window_ns(now=NOW, default_span_ns=hour) == (now_ns - hour, now_ns)
    assert window_ns(until="-1h", now=NOW, default_span_ns=hour) == (
        now_ns - 2 * hour, now_ns - hour)  # fmt: skip
    with pytest.raises(TimeExprError) as e:
        window_ns(now=NOW, command="fetch")
    assert str(e.value).startswith("fetch needs a time window: --since TIME")


def test_durations() -> None:
    assert parse_duration_ns("1h30m") == 5400 * 10**9
    assert parse_duration_ns("'1 hour 30 minutes'".strip("'")) == 5400 * 10**9
    assert parse_duration_ns("+0.5s") == 5 * 10**8
    assert parse_duration_ns("1.5 min") == 90 * 10**9


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


@pytest.mark.parametrize(
    "kw",
    [
        {"around": "0001-01-01"},
        {"since": "@99999999999999999999"},
        {"since": "1h", "until": "@99999999999"},
        {"around": "now", "before": "99999999999d"},
    ],
)
def test_times_beyond_what_a_capture_can_hold_are_one_line_errors(kw: dict[str, str]) -> None:
    """Not a traceback: the CLI, the listener and fleet requests all read these."""
    with pytest.raises(TimeExprError, match="1970-01-01 to 2262-04-11"):
        window_ns(**kw)
