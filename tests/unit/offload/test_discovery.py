"""Oldest first = capture's hand-off sequence, even after the clock stepped back."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from rollcap.offload.discovery import oldest_first
from rollcap.offload.pipeline import OrderedSlots

# seq 7 was handed off before seq 8, but the wall clock stepped back an hour between them
BEFORE_STEP = "20261126T130000Z-000007_h_eth0.pcap"
AFTER_STEP = "20261126T120000Z-000008_h_eth0.pcap"
LATER = "20261126T120500Z-000009_h_eth1.pcap"


def test_oldest_first_sorts_by_sequence_not_by_start_time() -> None:
    names = [LATER, AFTER_STEP, BEFORE_STEP]
    assert sorted(names) != [BEFORE_STEP, AFTER_STEP, LATER]  # what name order would do
    assert sorted(names, key=oldest_first) == [BEFORE_STEP, AFTER_STEP, LATER]


def test_oldest_first_is_numeric_beyond_six_digits() -> None:
    a, b = "20261126T120000Z-999999_h_eth0.pcap", "20261126T110000Z-1000000_h_eth0.pcap"
    assert sorted([b, a], key=oldest_first) == [a, b]


def test_names_that_do_not_parse_go_first() -> None:
    assert sorted([AFTER_STEP, "junk.pcap"], key=oldest_first) == ["junk.pcap", AFTER_STEP]


def test_compression_slots_follow_the_sequence_across_a_clock_step() -> None:
    slots = OrderedSlots(1, threading.Event())
    order: list[str] = []
    for key in (AFTER_STEP, BEFORE_STEP):
        slots.reserve(key)

    def work(key: str) -> None:
        with slots.slot(key):
            order.append(key)
            time.sleep(0.05)

    # the later hand-off (with the smaller name) asks first
    threads = [threading.Thread(target=work, args=(k,)) for k in (AFTER_STEP, BEFORE_STEP)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join(10)
    assert order == [BEFORE_STEP, AFTER_STEP]


def test_the_service_dispatches_by_sequence(tmp_path: Path) -> None:
    from rollcap.config.load import validate_data
    from rollcap.notify import Notifier
    from rollcap.offload.service import OffloadService
    from rollcap.storage import open_storage

    cfg = validate_data(
        {
            "spool": {"directory": str(tmp_path / "spool")},
            "offload": {"destination": f"file://{tmp_path}/archive", "concurrency": 1},
        }
    )
    svc = OffloadService(cfg, open_storage(cfg.offload), Notifier())
    submitted: list[str] = []

    def submit(_fn: Any, name: str, *_a: Any) -> Future[Any]:
        submitted.append(name)
        return Future()  # never completes: stays in flight

    svc.uploads.executor.shutdown()
    svc.uploads.executor.submit = submit  # type: ignore[method-assign]
    for name in (LATER, AFTER_STEP, BEFORE_STEP):
        svc.uploads.notice(name, 1)
    svc.uploads.dispatch(time.monotonic())
    assert submitted == [BEFORE_STEP]
