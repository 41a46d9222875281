"""capture/capture.json and STATUS=: published at most once a second, and a state
file that cannot be written (a full spool) is tried again, never the end of capture."""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from rollcap.capture import status
from rollcap.spool.state import read_state
from tests.unit.capture.fakes import supervisor


def test_a_state_file_that_cannot_be_written_is_written_at_the_next_publish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sup = supervisor(tmp_path)
    clock = [100.0]
    monkeypatch.setattr(status, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    lines: list[str] = []
    monkeypatch.setattr(sup.status.notifier, "status", lines.append)
    state_file = sup.spool.state_file("capture")

    def enospc(*_a: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    caplog.set_level(logging.INFO, logger="rollcap.capture")
    with monkeypatch.context() as m:
        m.setattr(status, "write_state", enospc)
        sup.publish(force=True)  # no exception: capture goes on
    assert read_state(state_file) is None and sup.errors.active() == 1
    assert "cannot write the state file" in caplog.text
    assert lines and "starting on any" in lines[-1]  # STATUS= still sent
    # ... and says what is wrong, not a bare "error: "
    assert "; error: cannot write the state file: [Errno 28] No space" in lines[-1]

    sup.publish()  # within the second: not yet
    assert read_state(state_file) is None
    clock[0] += 1.0
    sup.publish()
    st = read_state(state_file)
    assert st is not None and st["interface"] == "any" and st["state"] == "starting"
    assert sup.errors.active() == 0 and "writing the state file works again" in caplog.text


def test_capture_json_keeps_its_count_keys_in_order(tmp_path: Path) -> None:
    """capture.json, `rollcap status` and the metrics read these keys: the typed
    counts are converted at the boundary, under the same names, in the same order."""
    sup = supervisor(tmp_path)
    sup.n.handed_off_files += 2
    state = sup.state()
    keys = list(state)
    counts = ["handed_off_files", "handed_off_bytes", "discarded_empty", "repaired_files",
              "duplicates_removed", "quarantined_files", "skipped_entries", "dropped_files",
              "dropped_bytes", "quarantine_removed", "restarts"]
    start = keys.index("handed_off_files")
    assert keys[start:start + len(counts)] == counts and state["handed_off_files"] == 2
    per = state["interfaces"]["any"]
    per_counts = ("handed_off_files", "handed_off_bytes", "restarts")
    assert {k: per[k] for k in per_counts} == dict.fromkeys(per_counts, 0)
