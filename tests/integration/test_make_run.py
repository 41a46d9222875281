"""`make run` as a newcomer runs it: all of lo by default, options through ARGS,
only this run's files announced, one short log line per file, and the printed
`rollcap fetch` command gets the newcomer's own traffic (a TCP connect to
localhost:80, as `curl localhost` makes) back out of the archive."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LOG = re.compile(r"^\d\d:\d\d:\d\d (\w+) +(rollcap\S*): (.*)$")


def _wait(what: str, cond: object, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not callable(cond) or not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _own_connect() -> int:
    """`curl localhost`'s packets without curl: a connect to 127.0.0.1:80 from a
    known source port (refused or accepted, both put TCP packets on lo)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", 80))
    except OSError:
        pass
    finally:
        s.close()
    return port


def _fetch(cmd: str, out: Path) -> str:
    """Run a fetch command as printed (relative to the clone), into out; tcpdump -nr."""
    argv = [str(out) if a == "mine.pcap" else a for a in shlex.split(cmd)]
    r = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        return ""
    return subprocess.run(["tcpdump", "-nr", str(out)], capture_output=True, text=True,
                          timeout=60, check=True).stdout  # fmt: skip


def test_make_run_shows_this_runs_files_and_fetches_own_traffic(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    old = demo / "archive" / "earlier" / "earlier-run-000001.pcap.zst"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"an earlier run's archive: not news")
    out = tmp_path / "stdout"
    with out.open("w") as f:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"ARGS=--dir {demo}"],
            cwd=REPO, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C goes to make's process group, as in a terminal
        )  # fmt: skip
    try:
        text = out.read_text
        _wait("capture listening", lambda: "listening on lo" in text() or proc.poll() is not None)
        assert proc.poll() is None, text()
        assert "all traffic" in text() and f"config   {demo}/rollcap.toml" in text()  # ARGS
        hint = re.search(r"^\s+(\S*rollcap fetch .*)$", text(), re.M)
        assert hint, text()
        port = _own_connect()
        mine = f"127.0.0.1.{port} > 127.0.0.1.80:"
        _wait("the connect in the archive, by the printed command",
              lambda: mine in _fetch(hint.group(1), tmp_path / "hint.pcap"))  # fmt: skip
        os.killpg(proc.pid, signal.SIGINT)
        # make itself dies of the SIGINT (as at a terminal); the demo under it stops cleanly
        assert proc.wait(120) in (0, -signal.SIGINT), text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    lines = text().splitlines()
    assert "capture exited with status 0" in text() and "offload exited with status 0" in text()
    spool = [ln.split()[2] for ln in lines if ln.startswith("  spool   + ")]
    archive = [ln.split()[2] for ln in lines if ln.startswith("  archive + ")]
    assert spool and len(archive) == len(spool), lines  # every file seen in both
    assert not any("earlier" in a or "_index" in a or a.endswith(".json") for a in archive)
    assert re.search(rf"this run archived {len(archive)} capture\(s\)", text()), lines
    # the foreground log: one short line per file, fields only at debug
    logged = [m.groups() for ln in lines if (m := LOG.match(ln))]
    assert logged and all("[" not in ln and len(ln) < 220 for ln in lines if LOG.match(ln))
    handed = [msg for _l, _n, msg in logged if msg.startswith("handed off ")]
    uploaded = [msg for _l, _n, msg in logged if msg.startswith("uploaded ")]
    assert len(handed) == len(uploaded) == len(spool), logged
    assert not any("switched to a new tcpdump (aligned rotation)" in msg for *_x, msg in logged)
    # the closing command covers this run, from its first second
    final = re.search(r"^  (\S*rollcap fetch .*--since @\d+ .*)$", text(), re.M)
    assert final, lines
    assert mine in _fetch(final.group(1), tmp_path / "mine.pcap")
