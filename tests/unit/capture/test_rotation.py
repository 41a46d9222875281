"""Quiet-link rotation: a period's deadline runs on the monotonic clock, never the
wall clock. Aligned rotation: files end on UTC multiples of rotate_seconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rollcap.capture import interface, rotation
from rollcap.capture.interface import SwitchRequest
from tests.unit.capture.fakes import FakeTcpdump, supervisor, the_capture


def test_quiet_deadline_ignores_the_wall_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sup = supervisor(tmp_path, capture={"rotate_seconds": 10, "rotate_align": False})
    switched: list[str] = []

    def switch_all(reqs: list[SwitchRequest]) -> list[bool]:
        switched.extend(r.reason for r in reqs)
        return [True for _r in reqs]

    monkeypatch.setattr(interface, "switch_all", switch_all)
    # tcpdump named its file at 13:00; the clock then stepped back an hour
    (sup.spool.work / "g000003-20261126T130000-eth0.pcap").write_bytes(b"")
    monkeypatch.setattr(
        time, "time", lambda: datetime(2026, 11, 26, 12, 0, 5, tzinfo=UTC).timestamp()
    )
    the_capture(sup).proc = FakeTcpdump(3, time.monotonic() - 2.0)  # type: ignore[assignment]
    left = sup.check_quiet()
    assert left is not None and 9 < left <= 10 + rotation.QUIET_GRACE - 2.0
    # a new generation: its first period is aged from when it listened
    (sup.spool.work / "g000003-20261126T130000-eth0.pcap").unlink()
    (sup.spool.work / "g000004-20261126T130000-eth0.pcap").write_bytes(b"")
    the_capture(sup).proc = FakeTcpdump(4, time.monotonic() - 12.0)  # type: ignore[assignment]
    assert sup.check_quiet() is None and switched == ["quiet link"]


def test_a_later_period_is_aged_from_when_it_was_first_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sup = supervisor(tmp_path, capture={"rotate_seconds": 10, "rotate_align": False})
    monkeypatch.setattr(interface, "switch_all", lambda reqs: [True for _r in reqs])
    the_capture(sup).proc = FakeTcpdump(3, time.monotonic() - 8.0)  # type: ignore[assignment]
    (sup.spool.work / "g000003-20261126T130000-eth0.pcap").write_bytes(b"")
    first = sup.check_quiet()
    assert first is not None and first < 4
    (sup.spool.work / "g000003-20261126T130000-eth0.pcap1").write_bytes(b"")
    left = sup.check_quiet()  # a -C continuation keeps its period's deadline
    assert left is not None and left <= first
    # the -G period of 13:00:10 began; the first one was handed off meanwhile
    (sup.spool.work / "g000003-20261126T130000-eth0.pcap").unlink()
    (sup.spool.work / "g000003-20261126T130000-eth0.pcap1").unlink()
    (sup.spool.work / "g000003-20261126T130010-eth0.pcap").write_bytes(b"")
    left = sup.check_quiet()
    assert left is not None and left > 10


def _t(h: int, m: int, s: float = 0) -> float:
    return datetime(2026, 11, 26, h, m, tzinfo=UTC).timestamp() + s


def test_aligned_files_end_on_utc_multiples_of_rotate_seconds() -> None:
    # the first file after a start runs to the next boundary: shorter
    assert rotation.boundary_after(_t(12, 3, 17.4), 600) == _t(12, 10)
    # a file opened on a boundary runs one whole period
    assert rotation.boundary_after(_t(12, 10), 600) == _t(12, 20)
    # started just before a boundary: the first file runs on to the following one
    assert rotation.boundary_after(_t(12, 9, 59), 600) == _t(12, 20)
    # the switch starts LEAD seconds early, so the old tcpdump stops on the boundary
    assert rotation.switch_due(_t(12, 10), 600, _t(12, 19, 50)) == pytest.approx(10 - rotation.LEAD)


def test_the_next_file_is_named_for_its_boundary_when_on_schedule() -> None:
    opened = _t(12, 10)
    on_time = _t(12, 20) - rotation.LEAD
    assert rotation.name_time(opened, 600, on_time) == _t(12, 20)
    assert rotation.name_time(opened, 600, _t(12, 20, 3)) == _t(12, 20)  # a busy loop: late
    # `rollcap rotate` in the middle of a period: the new file is named for now
    assert rotation.name_time(opened, 600, _t(12, 14, 5.5)) == _t(12, 14, 5)
