"""Coverage of a window per host: the holes where no capture was running.

Pure logic, no storage. A capture covers its span (open or first packet, to
close or last packet: catalog.Capture.span). Holes shorter than ``MIN_GAP``
are not reported (a tcpdump restart takes about 0.2 s; key times are floored
to the second). Only the *settled* part of the window is judged: the newest
files of a host may still be open or waiting on the host, so after
``settled_until`` a missing capture is not (yet) a gap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MIN_GAP = 10.0  # seconds


@dataclass(frozen=True)
class Gap:
    host: str
    iface: str
    start: float  # epoch seconds
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def holes(spans: Iterable[tuple[float, float]], lo: float, hi: float,
          min_gap: float = MIN_GAP) -> list[tuple[float, float]]:  # fmt: skip
    """Parts of [lo, hi) covered by no span, each at least min_gap long."""
    out: list[tuple[float, float]] = []
    if hi <= lo:
        return out
    cursor = lo
    for a, b in sorted(spans):
        if b < cursor:
            continue
        if a > cursor and min(a, hi) - cursor >= min_gap:
            out.append((cursor, min(a, hi)))
        cursor = max(cursor, b)
        if cursor >= hi:
            return out
    if hi - cursor >= min_gap:
        out.append((cursor, hi))
    return out


def host_gaps(host: str, spans_by_iface: dict[str, list[tuple[float, float]]],
              since: float, settled_until: float,
              min_gap: float = MIN_GAP) -> list[Gap]:  # fmt: skip
    """Gaps of each interface seen for host within [since, settled_until)."""
    return [
        Gap(host, iface, a, b)
        for iface in sorted(spans_by_iface)
        for a, b in holes(spans_by_iface[iface], since, settled_until, min_gap)
    ]
