"""The offload's work queue: hand-out order, in flight once, deferred retries, stalls."""

from __future__ import annotations

import random
import time
from concurrent.futures import Future
from pathlib import Path

import pytest

from rollcap.offload import workqueue
from rollcap.offload.pipeline import Outcome
from rollcap.offload.workqueue import WorkQueue

# seq 7 was handed off before seq 8, though its name (start time) sorts after
SEQ7 = "20261126T130000Z-000007_web1_eth0.pcap"
SEQ8 = "20261126T120000Z-000008_db1_eth0.pcap"
SEQ9 = "20261126T120500Z-000009_web1_eth1.pcap"


def queue(tmp_path: Path, *names: str) -> WorkQueue:
    q = WorkQueue(tmp_path, retry_max_seconds=300)
    for n in names:
        assert q.notice(n, 10)
    return q


def never_done() -> Future[Outcome]:
    return Future()


def test_due_files_come_oldest_first_and_never_twice(tmp_path: Path) -> None:
    q = queue(tmp_path, SEQ9, SEQ8, SEQ7)
    now = time.monotonic()
    assert [e.name for e in q.due(now)] == [SEQ7, SEQ8, SEQ9]
    first = next(q.due(now))
    q.start(first, now, never_done)
    assert first.attempt == 1
    assert [e.name for e in q.due(now)] == [SEQ8, SEQ9]  # SEQ7 is in flight
    assert not q.notice(SEQ7, 10)  # already queued: a second hint changes nothing


def test_a_failed_file_backs_off_alone(tmp_path: Path) -> None:
    random.seed(3)
    q = queue(tmp_path, SEQ7, SEQ8)
    now = time.monotonic()
    e7 = q.pending[SEQ7]
    for attempt, ceiling in ((1, 1.0), (4, 8.0), (30, 300.0)):
        e7.attempt = attempt
        delay = q.retry_later(e7, now)
        assert ceiling / 2 <= delay <= ceiling and e7.not_before == now + delay
    assert [e.name for e in q.due(now)] == [SEQ8]
    assert q.next_due(now, now + 3600) == e7.not_before
    assert [e.name for e in q.due(e7.not_before)] == [SEQ7, SEQ8]


def test_a_destination_outage_defers_everyone_waiting_and_its_end_releases_them(
    tmp_path: Path,
) -> None:
    q = queue(tmp_path, SEQ7, SEQ8, SEQ9)
    now = time.monotonic()
    q.start(q.pending[SEQ7], now, never_done)
    q.pending[SEQ9].not_before = now + 5000  # its own backoff is longer than the outage
    q.defer_all(now + 60)
    assert q.pending[SEQ7].not_before == 0.0  # in flight: its outcome decides
    assert q.pending[SEQ8].not_before == now + 60
    assert q.pending[SEQ9].not_before == now + 5000
    assert list(q.due(now)) == []
    q.release_all(now)
    assert [e.name for e in q.due(now)] == [SEQ8, SEQ9]


def test_a_rescan_drops_vanished_files_but_not_those_in_flight(tmp_path: Path) -> None:
    q = queue(tmp_path, SEQ7, SEQ8, SEQ9)
    now = time.monotonic()
    q.start(q.pending[SEQ7], now, never_done)
    q.done(SEQ9)
    q.ignore(SEQ9)  # refused but could not be moved
    assert not q.notice(SEQ9, 10)
    gone = q.vanished({})  # ready/ is empty now
    assert [e.name for e in gone] == [SEQ8]
    assert set(q.pending) == {SEQ7}
    assert q.notice(SEQ9, 10)  # it left ready/ and came back: a new file


def test_notice_without_a_size_reads_it_and_skips_a_file_already_gone(tmp_path: Path) -> None:
    (tmp_path / SEQ7).write_bytes(b"x" * 123)
    q = WorkQueue(tmp_path, 300)
    assert q.notice(SEQ7) and q.backlog() == (1, 123)
    assert not q.notice(SEQ8)
    assert q.hosts() == {"web1"}


def test_finished_files_leave_flight_and_stalls_are_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workqueue, "STALL_SECONDS", 10)
    q = queue(tmp_path, SEQ7, SEQ8)
    now = time.monotonic()
    fut7, fut8 = Future[Outcome](), Future[Outcome]()
    q.start(q.pending[SEQ7], now, lambda: fut7)
    q.start(q.pending[SEQ8], now, lambda: fut8)
    assert not q.stuck(now + 5)
    assert q.stuck(now + 11)  # neither moved a byte
    q.progress_cb(SEQ8)(4096)  # one moving is enough
    assert not q.stuck(time.monotonic() + 5)
    fut7.set_result(Outcome(SEQ7, "uploaded"))
    assert [(e.name, f) for e, f in q.finished()] == [(SEQ7, fut7)]
    assert list(q.in_flight) == [SEQ8] and q.running() == [SEQ8]
    assert SEQ7 in q.pending  # until the service says it is done
