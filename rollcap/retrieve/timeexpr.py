"""Time expressions for --since/--until.

Accepted (case-insensitive):
- ``now``
- relative to now: ``-15m``, ``-2h``, ``-1d``, ``-90s``, ``-1w``, also ``now-15m``
  and combined units ``-1h30m``
- ISO 8601: ``2026-11-26T12:00:00Z``, ``2026-11-26 12:00:00.5+01:00``,
  ``2026-11-26T12:00`` or a date alone ``2026-11-26`` (its midnight)
- epoch seconds: ``@1764158400.25``

A time without a zone is LOCAL time of the machine running rollcap, like
``date``, ``journalctl --since`` and tcpdump's own output; write ``Z`` or an
offset to be explicit. Everything is returned as an aware UTC datetime.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

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
    """Both ends, checked: since must be before until."""
    now = now or datetime.now(UTC)
    start = parse_time(since, now=now, arg="--since")
    end = parse_time(until, now=now, arg="--until")
    if start >= end:
        raise TimeExprError(f"--since ({fmt_utc(start)}) must be before --until ({fmt_utc(end)})")
    return start, end


def fmt_utc(dt: datetime) -> str:
    """2026-11-26T12:00:00.123456Z (fraction only when there is one)."""
    dt = dt.astimezone(UTC)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_epoch(ts: float) -> str:
    return fmt_utc(datetime.fromtimestamp(ts, UTC))
