"""`rollcap list` in on-demand mode: what this host's ring holds is its own state, not a gap."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

from rollcap.commands.list import coverage_json, render_summary
from rollcap.keep.local import HeldSpan, LocalFile, spans, uncovered
from rollcap.retrieve.coverage import Gap
from rollcap.retrieve.select import Selection, Summary
from rollcap.timestamps import NS

T = 1_800_000_000


def _file(start: int, end: int, keep: str = "", iface: str = "eth0") -> LocalFile:
    return LocalFile(f"f{start}", iface, (T + start) * NS, (T + end) * NS, 1000, keep)


def test_consecutive_files_are_one_span_and_a_hole_splits_them() -> None:
    files = [_file(0, 60), _file(60, 120, "k1"), _file(300, 360), _file(0, 30, iface="eth1")]
    got = spans(files, "h1", T + 10, T + 350)
    assert got == [
        HeldSpan("h1", "eth0", T + 10, T + 120, 2, 1),
        HeldSpan("h1", "eth0", T + 300, T + 350, 1, 0),
        HeldSpan("h1", "eth1", T + 10, T + 30, 1, 0),
    ]


def test_a_gap_the_ring_holds_is_no_gap_and_the_rest_stays_one() -> None:
    ring = [HeldSpan("h1", "eth0", T + 100, T + 200, 3, 0)]
    gaps = [Gap("h1", "eth0", T + 50, T + 300), Gap("h1", "eth1", T, T + 300),
            Gap("h2", "eth0", T, T + 300)]  # fmt: skip
    assert uncovered(gaps, ring) == [
        Gap("h1", "eth0", T + 50, T + 100),
        Gap("h1", "eth0", T + 200, T + 300),
        Gap("h1", "eth1", T, T + 300),  # another interface: still a gap
        Gap("h2", "eth0", T, T + 300),  # another host's ring is not seen from here
    ]


def _selection(gaps: list[Gap]) -> Selection:
    s = Summary(hosts_seen=1, hosts_with_captures=1, gaps=gaps)
    when = datetime.fromtimestamp(T, UTC)
    sel: Any = SimpleNamespace(summary=s, since=when, until=when, settled_until=when)
    return cast(Selection, sel)


def test_list_shows_the_ring_as_held_locally() -> None:
    sel = _selection([Gap("h1", "eth0", T, T + 600)])
    ring = [HeldSpan("h1", "eth0", T, T + 600, 10, 2)]
    text = render_summary(sel, ring)
    assert "# gap:" not in text
    assert "# held locally, not shipped: h1 eth0" in text and "2 kept: shipping" in text
    cov = coverage_json(sel, ring)
    assert cov["gaps"] == [] and cov["held_locally"][0]["files"] == 10
    assert "# gap: h1 eth0" in render_summary(sel)  # continuous mode: unchanged
