"""Time expressions for --since/--until.

Accepted (case-insensitive):
- ``now``
- relative to now: ``-15m``, ``-2h``, ``-1d``, ``-90s``, ``-1w``, also ``now-15m``
  and combined units ``-1h30m``
- ISO 8601: ``2026-11-26T12:00:00Z``, ``2026-11-26 12:00:00.5+01:00``,
  ``2026-11-26T12:00`` or a date alone ``2026-11-26`` (its midnight)
- epoch seconds: ``@1764158400.25``

Fractions are exact to the nanosecond (``@1764158400.123456789``,
``...12:00:00.123456789Z``): parse_window_ns gives the window of a fetch in
epoch ns, so a nanosecond capture is cut where the operator said. The
datetimes (µs) of parse_window are that window widened to whole µs.

A time without a zone is LOCAL time of the machine running rollcap, like
``date``, ``journalctl --since`` and tcpdump's own output; write ``Z`` or an
offset to be explicit. Everything is returned as an aware UTC datetime.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from rollcap import timestamps
from rollcap.timestamps import NS, from_datetime

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_REL_RE = re.compile(r"^(?:now)?\s*-\s*((?:\d+(?:\.\d+)?[smhdw])+)$")
_REL_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_HELP = (
    "use ISO 8601 (2026-11-26T12:00:00Z, 2026-11-26 13:00+01:00; no zone = local time), "
    "'now', relative '-15m' / '-2h' / '-1d', or '@EPOCH'"
)


class TimeExprError(ValueError):
    """A time expression that cannot be understood; the message names the argument."""


def parse_time(text: str, *, now: datetime, arg: str = "time") -> datetime:
    """Parse one expression relative to ``now`` (aware); return an aware UTC datetime."""
    s = text.strip().lower()
    if not s:
        raise TimeExprError(f"{arg}: empty time expression; {_HELP}")
    if s == "now":
        return now.astimezone(UTC)
    m = _REL_RE.fullmatch(s)
    if m:
        seconds = sum(float(n) * _UNITS[u] for n, u in _REL_PART.findall(m.group(1)))
        return (now - timedelta(seconds=seconds)).astimezone(UTC)
    if s.startswith("@"):
        try:
            return datetime.fromtimestamp(float(s[1:]), UTC)
        except (ValueError, OverflowError, OSError):
            raise TimeExprError(f"{arg}: {text!r} is not a valid epoch time; {_HELP}") from None
    iso = text.strip()
    if iso.endswith(("z", "Z")):
        iso = iso[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        raise TimeExprError(f"{arg}: cannot parse {text!r}; {_HELP}") from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # naive = local time of this machine
    return dt.astimezone(UTC)


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


# an epoch with a fraction, or the seconds of an ISO time and their fraction
_EPOCH_RE = re.compile(r"@(\d+)(?:\.(\d+))?")
_ISO_FRACTION_RE = re.compile(r"(:\d\d[.,]\d{6})(\d+)")


def parse_time_ns(text: str, *, now: datetime, arg: str = "time") -> int:
    """parse_time, in epoch ns: exact for fractions of up to 9 digits (more are cut)."""
    s = text.strip()
    m = _EPOCH_RE.fullmatch(s)
    if m:
        return int(m[1]) * NS + int((m[2] or "")[:9].ljust(9, "0"))
    extra = 0
    f = _ISO_FRACTION_RE.search(s)
    if f:  # datetime keeps µs: the digits after them are added here
        extra = int(f[2][:3].ljust(3, "0"))
        s = s[: f.start()] + f[1] + s[f.end() :]
    return from_datetime(parse_time(s, now=now, arg=arg)) + extra


def parse_window_ns(since: str, until: str, *, now: datetime | None = None) -> tuple[int, int]:
    """The half-open window [since, until) in epoch ns, checked: since before until."""
    now = now or datetime.now(UTC)
    start = parse_time_ns(since, now=now, arg="--since")
    end = parse_time_ns(until, now=now, arg="--until")
    if start >= end:
        raise TimeExprError(
            f"--since ({fmt_utc_ns(start)}) must be before --until ({fmt_utc_ns(end)})"
        )
    return start, end


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
