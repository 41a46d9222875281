"""Packet timestamps as integer nanoseconds since the epoch, and their exact text.

A float of epoch seconds resolves about 0.24 µs today: it cannot hold the
stamps of a nanosecond pcap (capture.timestamp_precision = "nano"). rollcap
keeps packet times as ints of ns from the record walker to the object
metadata, the manifest entries, `rollcap list` and `rollcap fetch`, and
writes them as decimal text that is exactly that value: 6 fraction digits
when it is a whole microsecond (every micro capture: the same text rollcap
0.2 wrote), 9 otherwise. Readers accept both, and any other float() spelling
a hand-made object may carry.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

NS = 1_000_000_000
_TEXT_RE = re.compile(r"(\d{1,12})(?:\.(\d{1,9}))?")


def to_text(ns: int) -> str:
    """'1795694404.250000' (a whole µs) or '1795694404.250000123'."""
    sec, frac = divmod(ns, NS)
    if frac % 1000 == 0:
        return f"{sec}.{frac // 1000:06d}"
    return f"{sec}.{frac:09d}"


def from_text(text: str) -> int | None:
    """The ns a metadata value or manifest field says; None when it says none."""
    m = _TEXT_RE.fullmatch(text.strip())
    if m:
        return int(m[1]) * NS + int((m[2] or "").ljust(9, "0"))
    try:
        x = float(text)
    except ValueError:
        return None
    if not math.isfinite(x) or x < 0:
        return None
    return round(x * NS)


def to_seconds(ns: int | None) -> float | None:
    """Float seconds, for spans, slots and coverage (where 0.24 µs does not matter)."""
    return None if ns is None else ns / NS


class PacketSpan:
    """first_ts/last_ts: float views of a dataclass's first_ns/last_ns fields
    (first and last packet, epoch ns; None when there is none or it is unknown)."""

    first_ns: int | None
    last_ns: int | None

    @property
    def first_ts(self) -> float | None:
        return to_seconds(self.first_ns)

    @property
    def last_ts(self) -> float | None:
        return to_seconds(self.last_ns)


def from_datetime(dt: datetime) -> int:
    """An aware datetime (µs resolution) as epoch ns, exactly."""
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * NS + delta.microseconds * 1000


def fmt_utc(ns: int) -> str:
    """2026-11-26T12:00:00Z; a fraction only when there is one: 6 digits
    (...00.250000Z), or 9 when the value has ns (...00.250000001Z)."""
    sec, frac = divmod(ns, NS)
    base = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac == 0:
        return base + "Z"
    if frac % 1000 == 0:
        return f"{base}.{frac // 1000:06d}Z"
    return f"{base}.{frac:09d}Z"
