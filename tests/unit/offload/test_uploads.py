"""A file's way through the offload's main thread: what vanishes from ready/, and
what one file's destination failure means for every other file."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollcap.config.load import validate_data
from rollcap.notify import Notifier
from rollcap.offload.pipeline import Outcome
from rollcap.offload.service import OffloadService
from rollcap.storage import StorageError, open_storage

NAMES = ["20261126T120000Z-000001_h_eth0.pcap", "20261126T120000Z-000002_h_eth0.pcap"]


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[OffloadService]:
    cfg = validate_data({
        "spool": {"directory": str(tmp_path / "spool")},
        "offload": {"destination": f"file://{tmp_path}/archive"},
    })  # fmt: skip
    s = OffloadService(cfg, open_storage(cfg.offload), Notifier())
    s.prepare()
    yield s
    s.watcher.stop()
    s.uploads.executor.shutdown()


def test_a_file_that_vanishes_from_ready_counts_as_dropped_by_capture(
    svc: OffloadService,
) -> None:
    name = NAMES[0]
    (svc.spool.ready / name).write_bytes(b"x" * 100)
    svc.uploads.rescan()
    assert svc.uploads.queue.backlog() == (1, 100)
    (svc.spool.ready / name).unlink()  # capture's budget dropped it
    svc.uploads.rescan()
    assert svc.uploads.queue.backlog() == (0, 0)
    assert svc.report.counters.dropped_by_capture == 1


def test_a_destination_failure_holds_every_file_until_its_backoff_expires(
    svc: OffloadService,
) -> None:
    """One upload meeting a dead destination: no other file starts until the
    destination is probed, and the error is what the status shows."""
    u = svc.uploads
    for name in NAMES:
        (svc.spool.ready / name).write_bytes(b"x" * 10)
    u.rescan()
    entry = u.queue.pending[NAMES[0]]
    entry.attempt = 1  # as its dispatch counted it
    err = StorageError("connection refused", code="ConnectError")
    u._handle(entry, Outcome(NAMES[0], "failed", message=str(err), dest_error=err))
    assert svc.health.down and svc.report.last_error == "connection refused"
    now = time.monotonic()
    assert list(u.queue.due(now)) == []  # both wait for the destination
    assert all(e.not_before == svc.health.down_until for e in u.queue.pending.values())
    assert u.next_due(now) == svc.health.down_until  # the loop wakes for the probe
