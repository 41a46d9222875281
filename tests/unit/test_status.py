"""`rollcap status`: wording for missing, exited and stale daemons; important keys first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rollcap.commands.status import JSON_VERSION, fmt_value, render_table
from rollcap.config.load import parse_config
from rollcap.spool.state import read_state, write_state
from rollcap.status import collect, daemon_report
from tests.support.cli import run_into_closed_pipe

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


def test_verbose_names_every_key_in_groups_and_keeps_the_unknown() -> None:
    """-v: tcpdump's two packet counts side by side with what each means, the free
    share named as the filesystem's, and keys no group names still shown."""
    st = {
        "verdict": "running", "pid": 2, "age_seconds": 1, "state": "capturing",
        "packets_received": 354, "packets_captured": 164, "kernel_drops": 0,
        "budget": {"used_bytes": 5_000, "max_bytes": 10_000, "free_percent": 41.5,
                   "min_free_percent": 10, "percent_of_budget": 50.0},
        "zeta": 1, "alpha": 2,
    }  # fmt: skip
    lines = render_table({"capture": st}, NOW, verbose=True).splitlines()
    titles = [ln.strip() for ln in lines if ln.startswith("  ") and not ln.startswith("    ")]
    assert titles[0] == "capture" and titles[-1] == "other"
    assert "received = matched the filter, captured = written to a file" in titles[1]
    assert [ln.split() for ln in lines[lines.index("  " + titles[1]) + 1 :][:2]] == [
        ["received", "354"], ["captured", "164"],
    ]  # fmt: skip
    assert any(ln.split() == ["filesystem", "free,", "%", "41.5"] for ln in lines), lines
    assert not any("free_percent" in ln for ln in lines)
    other = lines[lines.index("  other") + 1 : lines.index("")]
    assert [ln.split() for ln in other] == [["alpha", "2"], ["zeta", "1"]]


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
    # short: one line with the state and the key numbers; nothing needs attention
    assert lines[off + 1] == "  uploading, 2 files waiting (2.0 MB)"
    assert lines[off + 2] == "spool: " + str(spool)
    assert "  ready       1 file, 1.5 kB (1,500)" in lines
    assert not any(ln.startswith("  !") for ln in lines)
    v = subprocess.run([*run, "-v"], env=env, capture_output=True, text=True, timeout=60)
    assert v.returncode == 3
    vlines = v.stdout.splitlines()
    assert ["files", "waiting", "2"] in [ln.split() for ln in vlines]
    assert any(ln.split()[:2] == ["bytes", "waiting"] and "2.0 MB (2,000,000)" in ln
               for ln in vlines)  # fmt: skip
    assert vlines[vlines.index("  other") + 1].split() == ["zz", "x"]
    js = subprocess.run([*run, "--json"], env=env, capture_output=True, text=True, timeout=60)
    data = json.loads(js.stdout)
    assert js.returncode == 3
    assert data["capture"]["verdict"] == "not running"
    assert data["offload"]["backlog_files"] == 2
    assert data["spool"]["ready_files"] == 1 and data["spool"]["ready_bytes"] == 1500
    assert data["ok"] is False
    assert data["version"] == JSON_VERSION == 1  # --json is versioned: it will grow


@pytest.mark.parametrize("fmt", [[], ["--json"]])
def test_closed_pipe_keeps_the_health_code_quietly(spool: Path, tmp_path: Path,
                                                    fmt: list[str]) -> None:  # fmt: skip
    """`rollcap status --json | head -3` in a check: its exit code is still the health
    (3 here: not running), with no traceback."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = run_into_closed_pipe(_cfg(spool, tmp_path), env, "status", *fmt, timeout=60)
    assert (r.returncode, r.stderr) == (3, "")


def test_collect_and_render_in_process(spool: Path, tmp_path: Path) -> None:
    cfg = parse_config(_cfg(spool, tmp_path).read_text())
    write_state(spool / "capture" / "capture.json", {"state": "capturing", "kernel_drops": 0})
    write_state(spool / "state" / "offload.json", {"state": "running"})
    report = collect(cfg)
    assert report["ok"] is True
    text = render_table(report)
    assert text.startswith("capture: running (pid ")
    assert "\n  capturing, 0 kernel drops\n" in text
    assert "!" not in text  # healthy: nothing needs attention
    verbose = render_table(report, verbose=True)
    assert any(ln.split() == ["dropped", "by", "kernel", "0"] for ln in verbose.splitlines())


def test_each_interface_of_capture_gets_its_own_line(spool: Path, tmp_path: Path) -> None:
    cfg = parse_config(_cfg(spool, tmp_path).read_text())
    per = {
        "eth0": {"state": "capturing", "tcpdump_pid": 11, "handed_off_files": 3,
                 "packets_captured": 900, "kernel_drops": 0, "restarts": 0, "last_error": ""},
        "eth1": {"state": "waiting-for-interface", "tcpdump_pid": None, "handed_off_files": 1,
                 "packets_captured": 40, "kernel_drops": 2, "drop_cause": "buffer", "restarts": 1,
                 "last_error": "interface eth1 does not exist"},
    }  # fmt: skip
    write_state(spool / "capture" / "capture.json", {
        "state": "waiting-for-interface", "interface": "eth0, eth1", "interfaces": per,
        "last_error": "eth1: interface eth1 does not exist",
    })  # fmt: skip
    write_state(spool / "state" / "offload.json", {"state": "running"})
    report = collect(cfg)
    assert report["exit_code"] == 5  # one interface not capturing: degraded
    text = render_table(report)
    lines = text.splitlines()
    assert "  eth0: capturing, 900 packets captured, 3 files handed off, 0 kernel drops" in lines
    assert (
        "  eth1: waiting-for-interface, 40 packets captured, 1 file handed off, 2 kernel drops"
        in lines
    ), text
    # then what needs attention: eth1's drops with their cause, and its error (once)
    attention = [ln for ln in lines if ln.startswith("  ! ")]
    assert attention == [
        "  ! eth1: 2 kernel drops (likely buffer)",
        "  ! eth1: interface eth1 does not exist",
    ], text
    verbose = render_table(report, verbose=True).splitlines()
    eth1 = verbose[verbose.index("  interface eth1") :]
    assert ["drops,", "likely", "cause", "buffer"] in [ln.split() for ln in eth1]
    assert ["tcpdump", "restarts", "1"] in [ln.split() for ln in eth1]


# -- exit codes a monitoring check can trust (issue: status said 0 while not capturing) --


def _both(spool: Path, capture: dict[str, object], offload: dict[str, object]) -> None:
    write_state(spool / "capture" / "capture.json", capture)
    write_state(spool / "state" / "offload.json", offload)


@pytest.mark.parametrize(
    ("capture", "offload", "code", "why"),
    [
        ({"state": "capturing"}, {"state": "running"}, 0, None),
        ({"state": "waiting-for-interface", "last_error": "interface uxbb does not exist"},
         {"state": "running"}, 5, "waiting-for-interface: interface uxbb does not exist"),
        ({"state": "paused"}, {"state": "running"}, 5, "paused"),
        ({"state": "restarting", "last_error": "tcpdump exited with status 1: x"},
         {"state": "running"}, 5, "restarting: tcpdump exited"),
        ({"state": "capturing"},
         {"state": "destination-down", "last_error": "PUT: AccessDenied"}, 5,
         "destination down: PUT: AccessDenied"),
    ],
)  # fmt: skip
def test_running_but_not_working_is_exit_5(
    spool: Path, tmp_path: Path, capture: dict[str, object], offload: dict[str, object],
    code: int, why: str | None,
) -> None:  # fmt: skip
    _both(spool, capture, offload)
    report = collect(parse_config(_cfg(spool, tmp_path).read_text()))
    assert report["exit_code"] == code
    problems = [report[n].get("problem") or "" for n in ("capture", "offload")]
    if why:
        assert any(p.startswith(why) for p in problems), problems
        assert "RUNNING BUT NOT WORKING" in render_table(report)


def test_backlog_without_uploads_for_long_is_exit_5(spool: Path, tmp_path: Path) -> None:
    cfg = parse_config(_cfg(spool, tmp_path).read_text())
    old = spool / "ready" / "20261126T130501Z-000042_h_eth0.pcap"
    old.write_bytes(b"\0" * 100)
    now = time.time() + 3600  # the file has waited an hour by then
    _both(spool, {"state": "capturing"}, {"state": "running", "last_upload": {"at": now - 3000}})
    for name in ("capture", "offload"):  # fresh state files at "now"
        p = spool / ("capture" if name == "capture" else "state") / f"{name}.json"
        p.write_text(json.dumps({**json.loads(p.read_text()), "updated": now - 1}))
    report = collect(cfg, now)
    assert report["exit_code"] == 5
    assert "1 files waiting, the oldest for 1h 00m" in report["offload"]["problem"]
    # an upload a minute ago: just behind, not stuck
    p = spool / "state" / "offload.json"
    p.write_text(json.dumps({**json.loads(p.read_text()), "last_upload": {"at": now - 60}}))
    assert collect(cfg, now)["exit_code"] == 0


def test_not_running_beats_degraded(spool: Path, tmp_path: Path) -> None:
    write_state(spool / "state" / "offload.json", {"state": "destination-down"})
    assert collect(parse_config(_cfg(spool, tmp_path).read_text()))["exit_code"] == 3


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run status as another user")
def test_unreadable_state_is_unknown_not_not_running(spool: Path, tmp_path: Path) -> None:
    """A non-root `rollcap status` for a running daemon: exit 4, never NOT RUNNING."""
    import shutil
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="rollcap-status-"))  # /tmp/pytest-of-root is 0700
    try:
        _unreadable_as_nobody(top)
    finally:
        shutil.rmtree(top)


def _unreadable_as_nobody(top: Path) -> None:
    os.chmod(top, 0o755)
    spool = top / "spool"
    (spool / "state").mkdir(parents=True)
    (spool / "capture").mkdir()
    _both(spool, {"state": "capturing"}, {"state": "running"})
    for d in ("state", "capture"):  # as the package makes them: 2750, not for others
        os.chmod(spool / d, 0o700)
    cfg = _cfg(spool, top)
    os.chmod(cfg, 0o644)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
         "-m", "rollcap", "status", "--config", str(cfg), "--json"],
        env=env, capture_output=True, text=True, timeout=60, cwd="/",
    )  # fmt: skip
    assert p.returncode == 4, p.stdout + p.stderr
    data = json.loads(p.stdout)
    for name in ("capture", "offload"):
        assert data[name]["verdict"] == "unknown"
        assert "permission denied" in data[name]["problem"]


def test_status_works_with_a_broken_config(spool: Path, tmp_path: Path) -> None:
    """A typo in the file: a warning, and the spool of the file's valid keys."""
    _both(spool, {"state": "capturing"}, {"state": "running"})
    cfg = tmp_path / "rollcap.toml"
    cfg.write_text(f'[spool]\ndirectory = "{spool}"\nmax_megabites = 5\n[capture]\nsnaplen = 1\n')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = [sys.executable, "-m", "rollcap", "status", "--config", str(cfg), "--json"]
    p = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60)
    # 3: the writer of the state files (pytest) is not a rollcap process
    assert p.returncode == 3, p.stderr
    assert "warning:" in p.stderr and "max_megabites" in p.stderr and "snaplen" in p.stderr
    data = json.loads(p.stdout)
    assert data["spool"]["directory"] == str(spool)
    assert data["capture"]["state"] == "capturing"  # found and read the state files
    cfg.write_text("[spool\n")  # not even TOML: the defaults
    p = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode in (0, 3, 4, 5) and "TOML syntax error" in p.stderr
    assert json.loads(p.stdout)["spool"]["directory"] == "/var/spool/rollcap"


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
    report = collect(cfg)
    text = render_table(report) + render_table(report, verbose=True)
    assert not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0 for c in text)
    assert max(len(line) for line in text.splitlines()) < 400
    assert "(absurdly large)" in text
