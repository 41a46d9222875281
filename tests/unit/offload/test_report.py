"""The offload's status report: what `rollcap status`, STATUS= and the metrics show."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from rollcap.config.load import validate_data
from rollcap.metrics.exporter import offload_exporter
from rollcap.offload import report
from rollcap.offload.report import StatusReport
from rollcap.storage import StorageError


def status(tmp_path: Path) -> StatusReport:
    cfg = validate_data(
        {
            "spool": {"directory": str(tmp_path / "spool")},
            "offload": {"destination": f"file://{tmp_path}/archive"},
        }
    )
    (tmp_path / "state").mkdir()
    return StatusReport(tmp_path / "state" / "offload.json", offload_exporter(cfg))


def snapshot(r: StatusReport, dest_error: StorageError | None = None) -> dict[str, object]:
    return r.snapshot(
        destination="file:///a", backlog=(2, 3_000_000), in_flight=["b", "a"],
        dest_error=dest_error, compression_level=1,
    )  # fmt: skip


def test_the_rate_counts_new_uploads_of_the_last_minute_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = status(tmp_path)
    r.started_at -= 120  # running for two minutes: the rate spans the window
    r.stored("f1", "k1", 1.0, 30_000_000, 10_000_000, new=True)
    r.stored("f2", "k2", 1.0, 50_000_000, 1, new=False)  # its object existed
    assert r.rate() == pytest.approx(30 / report.RATE_WINDOW)
    assert r.counters.uploaded_files == 1 and r.counters.uploaded_bytes_out == 10_000_000
    assert r.counters.last_upload is not None and r.counters.last_upload["key"] == "k2"
    later = time.monotonic() + report.RATE_WINDOW + 1
    monkeypatch.setattr(report.time, "monotonic", lambda: later)
    assert r.rate() == 0.0


def test_status_line_names_the_down_destination_before_the_last_error(tmp_path: Path) -> None:
    r = status(tmp_path)
    assert r.text((2, 3_000_000), None) == "backlog 2 files (3.0 MB), 0.0 MB/s"
    r.note_error("x.pcap: verification failed")
    assert r.text((0, 0), None).endswith(", last error: x.pcap: verification failed")
    down = StorageError("denied", code="AccessDenied", permanent=True)
    assert r.text((0, 0), down).endswith(", destination down: AccessDenied")


def test_the_snapshot_is_what_status_reads(tmp_path: Path) -> None:
    r = status(tmp_path)
    r.state = "running"
    data = snapshot(r)
    assert data["state"] == "running" and data["in_flight"] == ["a", "b"]
    assert (data["backlog_files"], data["backlog_bytes"]) == (2, 3_000_000)
    assert data["compression_level"] == 1
    assert snapshot(r, StorageError("refused"))["state"] == "destination-down"
    r.publish(data)
    assert not r.dirty
    written = json.loads(r.path.read_text())
    assert {k: written[k] for k in data} == data


def test_an_unwritable_state_file_warns_once_per_streak(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    r = status(tmp_path)
    r.path = tmp_path / "missing" / "offload.json"  # write_state fails like a full disk
    with caplog.at_level(logging.INFO, logger="rollcap.offload"):
        for _ in range(3):
            r.publish(snapshot(r))
        r.path = tmp_path / "state" / "offload.json"
        r.publish(snapshot(r))
    msgs = [rec.getMessage() for rec in caplog.records]
    assert sum("cannot write the state file" in m for m in msgs) == 1
    assert msgs[-1] == "state file written again" and r.path.exists()
