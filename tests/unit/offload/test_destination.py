"""Destination health: when it is down, for how long, and what gets logged once."""

from __future__ import annotations

import logging
import random
import threading
import time
from pathlib import Path

import pytest

from rollcap.config.load import validate_data
from rollcap.offload.destination import DestinationHealth
from rollcap.storage import StorageError, open_storage


def health(tmp_path: Path) -> DestinationHealth:
    cfg = validate_data(
        {
            "spool": {"directory": str(tmp_path / "spool")},
            "offload": {"destination": f"file://{tmp_path}/archive", "retry_max_seconds": 300},
        }
    )
    storage = open_storage(cfg.offload)
    return DestinationHealth(storage, cfg.offload.key_template, 300, threading.Event())


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]


def test_a_transient_outage_backs_off_exponentially_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    random.seed(5)
    h = health(tmp_path)
    refused = StorageError("connection refused", code="ConnectionError")
    with caplog.at_level(logging.ERROR, logger="rollcap.offload"):
        t = time.monotonic()
        assert h.failed(refused, files_kept=3)
        assert h.down and t + 0.5 <= h.down_until <= time.monotonic() + 1.0
        # a file that was under way when it failed: known, no new backoff
        until = h.down_until
        assert not h.failed(StorageError("timeout", code="ReadTimeout"), 3)
        assert h.down_until == until and h.error is refused
        assert not h.probe_due(until - 0.01) and h.probe_due(until)
        # the probe failed again with the same error: longer wait, no new line
        t = time.monotonic()
        assert h.failed(refused, 3, from_check=True)
        assert t + 1.0 <= h.down_until <= time.monotonic() + 2.0
    assert len(errors(caplog)) == 1
    assert "3 files kept in the spool" in errors(caplog)[0]
    assert "retrying with backoff up to 300 s" in errors(caplog)[0]


def test_a_permanent_error_waits_the_cap_and_a_new_error_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = health(tmp_path)
    with caplog.at_level(logging.ERROR, logger="rollcap.offload"):
        h.failed(StorageError("connection refused", code="ConnectionError"), 0)
        t = time.monotonic()
        h.failed(StorageError("denied", code="AccessDenied", permanent=True), 0, from_check=True)
        assert t + 300 <= h.down_until <= time.monotonic() + 300
    assert len(errors(caplog)) == 2 and "needs an operator" in errors(caplog)[1]


def test_a_passing_check_brings_it_back_with_a_fresh_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = health(tmp_path)
    assert not h.recovered()  # it was never down: nothing to say
    for _ in range(5):
        h.failed(StorageError("refused", code="ConnectionError"), 0, from_check=True)
    h.start_check({"benchhost"})
    assert h.wake.wait(10)
    checked = h.check_result()
    assert checked is not None and checked.error is None  # the archive directory works
    assert h.check_result() is None  # consumed
    with caplog.at_level(logging.INFO, logger="rollcap.offload"):
        assert h.recovered()
    assert not h.down and any("works again" in r.getMessage() for r in caplog.records)
    t = time.monotonic()
    h.failed(StorageError("refused", code="ConnectionError"), 0)
    assert h.down_until <= time.monotonic() + 1.0 and h.down_until >= t + 0.5
    h.shutdown()
