"""`rollcap status`: wording for missing, exited and stale daemons; important keys first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rollcap.config.load import parse_config
from rollcap.state import read_state, write_state
from rollcap.status import collect, daemon_report, fmt_value, ordered_keys, render_table

REPO = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000.0


@pytest.fixture(autouse=True)
def any_process_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer in these tests is pytest, not a process called rollcap."""
    monkeypatch.setattr("rollcap.status.PROCESS_MARKER", b"")


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    root = tmp_path / "spool"
    for d in ("state", "capture", "ready", "quarantine"):
        (root / d).mkdir(parents=True)
    return root


def _cfg(spool: Path, tmp_path: Path) -> Path:
    path = tmp_path / "rollcap.toml"
    path.write_text(f'[spool]\ndirectory = "{spool}"\n')
    return path


def test_write_state_is_atomic_json_with_pid_and_time(spool: Path) -> None:
    path = spool / "state" / "offload.json"
    write_state(path, {"state": "idle"})
    st = read_state(path)
    assert st is not None
    assert st["state"] == "idle" and st["pid"] == os.getpid()
    assert abs(st["updated"] - time.time()) < 3600
    assert [p.name for p in path.parent.iterdir()] == ["offload.json"]  # no temp left


def test_missing_state_file_says_never_started(spool: Path) -> None:
    r = daemon_report(spool / "capture" / "capture.json", NOW)
    assert r["verdict"] == "not running" and r["running"] is False
    assert "no state file" in r["problem"]


def test_running_daemon(spool: Path) -> None:
    path = spool / "capture" / "capture.json"
    write_state(path, {"state": "capturing"})  # our own pid: alive
    r = daemon_report(path)
    assert r["verdict"] == "running" and r["running"] and not r["stale"]


def test_exited_daemon(spool: Path) -> None:
    path = spool / "capture" / "capture.json"
    # a pid that cannot exist (above pid_max)
    path.write_text(json.dumps({"state": "capturing", "pid": 2**30, "updated": NOW - 30}))
    r = daemon_report(path, NOW)
    assert r["verdict"] == "not running"
    assert r["problem"] == f"process {2**30} has exited; last update 30s ago"


def test_stale_daemon(spool: Path) -> None:
    path = spool / "state" / "offload.json"
    path.write_text(json.dumps({"state": "uploading", "pid": os.getpid(), "updated": NOW - 600}))
    r = daemon_report(path, NOW)
    assert r["verdict"] == "stale" and r["stale"] and r["running"]
    assert r["problem"].startswith("no update for 10m 00s")


def test_garbage_state_file(spool: Path) -> None:
    path = spool / "state" / "offload.json"
    path.write_text("{half")
    r = daemon_report(path, NOW)
    assert r["verdict"] == "not running" and "not valid JSON" in r["problem"]


def test_important_keys_first_then_alphabetical() -> None:
    st = {
        "zeta": 1,
        "last_error": "x",
        "alpha": 2,
        "backlog_files": 3,
        "state": "s",
        "updated": 1,
        "pid": 2,
        "last_upload": 4,
        "backlog_bytes": 5,
    }
    assert ordered_keys(st) == [
        "state",
        "backlog_files",
        "backlog_bytes",
        "last_upload",
        "last_error",
        "alpha",
        "zeta",
    ]


def test_value_formatting() -> None:
    assert fmt_value("backlog_bytes", 123_456_789, NOW) == "123.5 MB (123,456,789)"
    assert fmt_value("backlog_bytes", 12, NOW) == "12 B"
    assert fmt_value("uploaded_bytes_in", 5_000, NOW) == "5.0 kB (5,000)"
    assert fmt_value("bytesize", 5_000, NOW) == "5000"
    assert fmt_value("last_handoff", NOW - 125, NOW) == "2027-01-15 07:57:55 UTC (2m 05s ago)"
    assert fmt_value("last_error", None, NOW) == "-"
    assert fmt_value("kernel_drops", 0, NOW) == "0"
    assert fmt_value("last_upload", {"file": "a", "at": NOW - 5}, NOW) == (
        "file=a, at=2027-01-15 07:59:55 UTC (5s ago)"
    )


def test_recycled_pid_is_not_our_daemon(spool: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("rollcap.status.PROCESS_MARKER", b"no-such-program-name")
    path = spool / "capture" / "capture.json"
    write_state(path, {"state": "capturing"})  # pid = pytest, which is not rollcap
    assert daemon_report(path)["verdict"] == "not running"


def test_table_and_json_through_the_cli(spool: Path, tmp_path: Path) -> None:
    write_state(
        spool / "state" / "offload.json",
        {"state": "uploading", "backlog_files": 2, "backlog_bytes": 2_000_000, "zz": "x"},
    )
    (spool / "ready" / "a.pcap").write_bytes(b"\0" * 1500)
    cfg = _cfg(spool, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = [sys.executable, "-m", "rollcap", "status", "--config", str(cfg)]
    table = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60)
    assert table.returncode == 3, table.stderr  # a daemon is not running
    lines = table.stdout.splitlines()
    assert lines[0].startswith("capture: NOT RUNNING: no state file")
    # the writer (this test's python) is gone by now or is not "rollcap": not running
    off = lines.index(next(ln for ln in lines if ln.startswith("offload:")))
    assert lines[off + 1].split() == ["state", "uploading"]
    assert lines[off + 2].split() == ["backlog_files", "2"]
    assert "2.0 MB (2,000,000)" in lines[off + 3]
    assert "  ready       1 file, 1.5 kB (1,500)" in lines
    js = subprocess.run([*run, "--json"], env=env, capture_output=True, text=True, timeout=60)
    data = json.loads(js.stdout)
    assert js.returncode == 3
    assert data["capture"]["verdict"] == "not running"
    assert data["offload"]["backlog_files"] == 2
    assert data["spool"]["ready_files"] == 1 and data["spool"]["ready_bytes"] == 1500
    assert data["ok"] is False


def test_collect_and_render_in_process(spool: Path, tmp_path: Path) -> None:
    cfg = parse_config(_cfg(spool, tmp_path).read_text())
    write_state(spool / "capture" / "capture.json", {"state": "capturing", "kernel_drops": 0})
    write_state(spool / "state" / "offload.json", {"state": "idle"})
    report = collect(cfg)
    assert report["ok"] is True
    text = render_table(report)
    assert text.startswith("capture: running (pid ")
    assert "  kernel_drops  0\n" in text


def test_hostile_state_is_shown_without_terminal_control_and_survives_absurd_values(
    spool: Path, tmp_path: Path
) -> None:
    """The state files are written by unprivileged users: status must not obey them."""
    cfg = parse_config(_cfg(spool, tmp_path).read_text())
    write_state(
        spool / "capture" / "capture.json",
        {
            "state": "capturing\x1b[2J\x1b]0;pwned\x07",
            "last_error": "x" * 100_000,
            "active_since": 1e300,
            "last_handoff": {"at": float("nan"), "name": "\r\x9bevil", "n": {"a": {"b": {"c": 1}}}},
            "dropped_bytes": 10**400,
            "\x1b[31mkey": 1,
        },
    )
    text = render_table(collect(cfg))
    assert not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0 for c in text)
    assert max(len(line) for line in text.splitlines()) < 400
    assert "(absurdly large)" in text
