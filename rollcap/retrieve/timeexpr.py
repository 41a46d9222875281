"""Time expressions: --since/--until, and --around/--before/--after (the window
grammar `rollcap list`, `fetch` and `hold` share, and `rollcap keep` will).

The forms, with what each reads as, are one table: docs/retrieve.md, "Time
expressions" (tests/unit/retrieve/test_timeexpr.py runs every row of it).
In short (case-insensitive):

- ``now``, ``today``, ``yesterday``, ``tomorrow`` (midnight, local time)
- ``HH:MM[:SS[.frac]]``: that time today, local time
- a duration: ``10m``, ``1h30m``, ``'5 min'``, ``'1 hour 30 minutes'``
  (units s/sec/second, m/min/minute, h/hr/hour, d/day, w/week); bare or with
  ``ago`` it is that long before now, ``-D`` / ``now-D`` too, ``+D`` after now
- ISO 8601: ``2026-11-26T12:00:00Z``, ``2026-11-26 12:00:00.5+01:00``,
  ``2026-11-26T12:00`` or a date alone ``2026-11-26`` (its midnight)
- epoch seconds: ``@1764158400.25``

Fractions are exact to the nanosecond (``@1764158400.123456789``,
``...12:00:00.123456789Z``): window_ns gives the window of a fetch in epoch
ns, so a nanosecond capture is cut where the operator said. The datetimes
(µs) of parse_window are that window widened to whole µs.

A time without a zone is LOCAL time of the machine running rollcap, like
``date``, ``journalctl --since`` and tcpdump's own output; write ``Z`` or an
offset to be explicit. Everything is returned in UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from fractions import Fraction

from rollcap import timestamps
from rollcap.timestamps import NS, from_datetime

# longest spelling first: the regex takes the first alternative that matches
_UNIT_NAMES = {
    "s": ("seconds", "second", "secs", "sec", "s"),
    "m": ("minutes", "minute", "mins", "min", "m"),
    "h": ("hours", "hour", "hrs", "hr", "h"),
    "d": ("days", "day", "d"),
    "w": ("weeks", "week", "w"),
}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_UNIT_OF = {name: u for u, names in _UNIT_NAMES.items() for name in names}
_UNIT = "|".join(sorted(_UNIT_OF, key=len, reverse=True))
_PART = rf"(\d+(?:\.\d+)?)\s*({_UNIT})(?![a-z])"
_DURATION = rf"(?:{_PART}\s*)+"
_PART_RE = re.compile(_PART)
_DURATION_RE = re.compile(_DURATION)
_SIGNED_RE = re.compile(rf"(?:now)?\s*([+-])\s*({_DURATION})")
_AGO_RE = re.compile(rf"({_DURATION})\s*ago")
_CLOCK_RE = re.compile(r"(\d{1,2}):(\d\d)(?::(\d\d)(?:[.,](\d{1,9}))?)?")
_DAYS = {"today": 0, "yesterday": -1, "tomorrow": 1}
# an epoch with a fraction, or the seconds of an ISO time and their fraction
_EPOCH_RE = re.compile(r"@(\d+)(?:\.(\d+))?")
_ISO_FRACTION_RE = re.compile(r"(:\d\d[.,]\d{6})(\d+)")

HELP = (
    "'10 min ago', 10m (that long ago), -5min, 2h ago, today, yesterday, 12:45 (today), "
    "ISO 8601 (2026-11-26T12:00:00Z; without a zone it is local time) or @EPOCH; "
    "the table: docs/retrieve.md"
)
DURATION_HELP = "a length of time: 5m, 90s, 1h30m, '10 min'"

# argparse takes "--since -15m" for an option because "-15m" starts with '-';
# its (private, long-stable) negative-number matcher decides what counts as a
# value. Extend it to relative times (-15m, -10min, -1h30m) so the documented
# form just works; a number with a bad unit then gets the time parser's error.
NEGATIVE_VALUE = re.compile(r"^-(\d+(\.\d+)?[a-z]+)+$|^-\d+$|^-\d*\.\d+$", re.I)


class TimeExprError(ValueError):
    """A time expression that cannot be understood; the message names the argument."""


def parse_duration_ns(text: str, *, arg: str = "duration") -> int:
    """A length of time (``5m``, ``'1 hour 30 min'``, ``+90s``) in ns, positive."""
    s = text.strip().lower().removeprefix("+").strip()
    if not _DURATION_RE.fullmatch(s):
        raise TimeExprError(f"{arg}: {text!r} is not {DURATION_HELP}{_hint(s)}")
    ns = _duration(s)
    if ns <= 0:
        raise TimeExprError(f"{arg}: {text!r} is no time at all; {DURATION_HELP}")
    return ns


def _duration(s: str) -> int:
    total = sum(Fraction(n) * _UNITS[_UNIT_OF[u]] for n, u in _PART_RE.findall(s))
    return int(total * NS)


def _local_midnight(now: datetime, days: int) -> int:
    day = now.astimezone().date() + timedelta(days=days)
    return from_datetime(datetime.combine(day, time(0)).astimezone())


def _hint(s: str) -> str:
    """What an unreadable expression was probably meant as: shown in the error."""
    if re.fullmatch(r"[+-]?\s*\d+(\.\d+)?", s):
        n = s.lstrip("+-").strip()
        return f" (a number without a unit: write {n}m, {n}s, {n}:00 or @{n} for epoch seconds)"
    if re.match(r"(now)?\s*[+-]", s) and s.endswith("ago"):
        return " ('-' and 'ago' both say before now: write one of them)"
    m = re.fullmatch(r"(?:now)?\s*[+-]?\s*\d+(?:\.\d+)?\s*([a-z]+)(?:\s+ago)?", s)
    if m:
        return (
            f" (unit {m[1]!r} unknown: s, min (or m), h, d, w; months and years have no "
            "fixed length)"
        )
    return ""


# epoch ns must fit a signed 64-bit count (pcap, the index, S3 metadata): 1970 to 2262
_MAX_NS = 2**63 - 1


def parse_time_ns(text: str, *, now: datetime, arg: str = "time") -> int:
    """One expression relative to ``now`` (aware), in epoch ns: exact for fractions
    of up to 9 digits (more are cut). Times before 1970 or after 2262 are refused."""
    try:
        ns = _time_ns(text, now=now, arg=arg)
    except TimeExprError:
        raise
    except (ValueError, OverflowError):  # a date beyond what datetime can hold
        ns = -1
    if not 0 <= ns <= _MAX_NS:
        raise TimeExprError(f"{arg}: {text!r} is out of range (1970-01-01 to 2262-04-11 UTC)")
    return ns


def _time_ns(text: str, *, now: datetime, arg: str) -> int:
    s = text.strip().lower()
    if not s:
        raise TimeExprError(f"{arg}: empty time expression; {HELP}")
    now_ns = from_datetime(now)
    if s == "now":
        return now_ns
    if s in _DAYS:
        return _local_midnight(now, _DAYS[s])
    m = _SIGNED_RE.fullmatch(s)
    if m:
        return now_ns + (1 if m[1] == "+" else -1) * _duration(m[2])
    m = _AGO_RE.fullmatch(s) or _DURATION_RE.fullmatch(s)
    if m:  # '10 min ago', or a bare '10m': that long ago
        return now_ns - _duration(m[1] if m.re is _AGO_RE else s)
    m = _CLOCK_RE.fullmatch(s)
    if m:
        return _clock_today(m, now, text, arg)
    m = _EPOCH_RE.fullmatch(s)
    if m:
        return int(m[1]) * NS + int((m[2] or "")[:9].ljust(9, "0"))
    if s.startswith("@"):
        raise TimeExprError(f"{arg}: {text!r} is not a valid epoch time; {HELP}")
    return _iso_ns(text.strip(), text, arg)


def _clock_today(m: re.Match[str], now: datetime, text: str, arg: str) -> int:
    h, mi, sec = int(m[1]), int(m[2]), int(m[3] or 0)
    if h > 23 or mi > 59 or sec > 59:
        raise TimeExprError(f"{arg}: {text!r} is not a time of day (HH:MM[:SS], 00:00-23:59)")
    day = now.astimezone().date()
    t = datetime.combine(day, time(h, mi, sec)).astimezone()  # naive: local time
    return from_datetime(t) + int((m[4] or "").ljust(9, "0"))


def _iso_ns(s: str, text: str, arg: str) -> int:
    extra = 0
    f = _ISO_FRACTION_RE.search(s)
    if f:  # datetime keeps µs: the digits after them are added here
        extra = int(f[2][:3].ljust(3, "0"))
        s = s[: f.start()] + f[1] + s[f.end() :]
    if s.endswith(("z", "Z")):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise TimeExprError(
            f"{arg}: cannot read {text!r}{_hint(text.strip().lower())}; {HELP}"
        ) from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # naive = local time of this machine
    return from_datetime(dt) + extra


def parse_time(text: str, *, now: datetime, arg: str = "time") -> datetime:
    """parse_time_ns as an aware UTC datetime (cut to the µs)."""
    return to_datetime(parse_time_ns(text, now=now, arg=arg))


def read_as(text: str, ns: int) -> str:
    """How an expression was read, for an error: '12:45' (2026-12-07 12:45:00+01:00 local,
    2026-12-07T11:45:00Z)."""
    local = to_datetime(ns).astimezone().isoformat(sep=" ", timespec="seconds")
    return f"{text!r} (read as {local} local, {fmt_utc_ns(ns)})"


def window_ns(
    since: str | None = None,
    until: str | None = None,
    *,
    around: str | None = None,
    before: str | None = None,
    after: str | None = None,
    now: datetime | None = None,
    default_span_ns: int | None = None,
    command: str = "this command",
) -> tuple[int, int]:
    """The half-open window [start, end) in epoch ns, from either --since/--until or
    --around/--before/--after, checked: start before end. Without --since and
    --around, the window is ``default_span_ns`` up to --until; None means the
    command needs a window (a one-line error saying so)."""
    now = now or datetime.now(UTC)
    if around is not None:
        given = [n for n, v in (("--since", since), ("--until", until)) if v is not None]
        if given:
            raise TimeExprError(f"--around with {' and '.join(given)}: give one window, "
                                "--since/--until or --around/--before/--after")  # fmt: skip
        t = parse_time_ns(around, now=now, arg="--around")
        b = parse_duration_ns(before or DEFAULT_AROUND, arg="--before")
        a = parse_duration_ns(after or DEFAULT_AROUND, arg="--after")
        if t - b < 0 or t + a > _MAX_NS:
            raise TimeExprError(
                f"--around {around!r} --before {before} --after {after}: the window reaches "
                "beyond 1970-01-01 to 2262-04-11 UTC"
            )
        return t - b, t + a
    for name, v in (("--before", before), ("--after", after)):
        if v is not None:
            raise TimeExprError(f"{name} needs --around TIME (the time it is before or after)")
    until = "now" if until is None else until
    end = parse_time_ns(until, now=now, arg="--until")
    if since is None:
        if default_span_ns is None:
            raise TimeExprError(
                f"{command} needs a time window: --since TIME [--until TIME], or "
                "--around TIME [--before 5m] [--after 5m] (e.g. --since 10m)"
            )
        return max(0, end - default_span_ns), end
    start = parse_time_ns(since, now=now, arg="--since")
    if start >= end:
        raise TimeExprError(
            f"--since {read_as(since, start)} must be before --until {read_as(until or 'now', end)}"
        )
    return start, end


DEFAULT_AROUND = "5m"


def parse_window_ns(since: str, until: str, *, now: datetime | None = None) -> tuple[int, int]:
    """The half-open window [since, until) in epoch ns, checked: since before until."""
    return window_ns(since, until, now=now)


def parse_window(
    since: str, until: str, *, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """Both ends, checked: since must be before until. Fractions past the µs
    widen the window to whole µs (since down, until up)."""
    return widened(parse_window_ns(since, until, now=now))


def widened(window: tuple[int, int]) -> tuple[datetime, datetime]:
    """A window in ns as datetimes (µs), widened: since cut down, until rounded up."""
    lo, hi = window
    return to_datetime(lo), to_datetime(-(-hi // 1000) * 1000)


def to_datetime(ns: int) -> datetime:
    """Epoch ns as an aware UTC datetime, cut to the µs."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)


def fmt_utc(dt: datetime) -> str:
    """2026-11-26T12:00:00.123456Z (fraction only when there is one)."""
    dt = dt.astimezone(UTC)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_epoch(ts: float) -> str:
    return fmt_utc(datetime.fromtimestamp(ts, UTC))


def fmt_utc_ns(ns: int) -> str:
    """Like fmt_utc, with 9 fraction digits when the time has nanoseconds."""
    return timestamps.fmt_utc(ns)
