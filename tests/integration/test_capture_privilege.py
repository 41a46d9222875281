"""The capture daemon without root, one capture per spool, and cutting a file now.

Real tcpdump on a test-owned veth pair. The unprivileged run is what the
packaged unit does: a non-root user whose only capability is an ambient
CAP_NET_RAW (setpriv here, AmbientCapabilities= there).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.capture_daemon import REPO
from tests.integration.conftest import Factory
from tests.support.net import Veth

pytestmark = pytest.mark.integration

PACKETS = 5374  # in all_pcap
DRAIN = 1.5
CAP_NET_RAW = 1 << 13
SETPRIV = [
    "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
    "--inh-caps=-all,+net_raw", "--ambient-caps=-all,+net_raw", "--bounding-set=-all,+net_raw",
]  # fmt: skip


def _status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def _children(pid: int) -> list[int]:
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(k) for k in kids]


def _rollcap(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "rollcap", *args], env=env, capture_output=True, text=True,
        timeout=timeout, cwd=REPO,
    )  # fmt: skip


def test_capture_runs_as_an_unprivileged_user_with_cap_net_raw_only(
    veth: Veth, all_pcap: Path, daemon: Factory
) -> None:
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is missing")
    nobody = pwd.getpwnam("nobody")
    d = daemon(veth.b, start=False, spool={"group": "nogroup"})
    d.spool.mkdir()
    os.chown(d.spool, nobody.pw_uid, nobody.pw_gid)
    d.prefix = SETPRIV
    d.start()
    st = d.wait_capturing()
    assert d.proc is not None
    tcpdump = st["tcpdump_pid"]
    assert tcpdump in _children(d.proc.pid)
    for pid in (d.proc.pid, tcpdump):
        s = _status(pid)
        assert s["Uid"].split() == [str(nobody.pw_uid)] * 4, (pid, s["Uid"])
        assert s["Gid"].split() == [str(nobody.pw_gid)] * 4, (pid, s["Gid"])
        assert int(s["CapEff"], 16) == CAP_NET_RAW, (pid, s["CapEff"])
    argv = Path(f"/proc/{tcpdump}/cmdline").read_bytes().split(b"\0")
    assert b"-Z" not in argv
    veth.replay(all_pcap)
    time.sleep(DRAIN)
    assert d.stop() == 0
    files = d.ready_files()
    assert files and sum(1 for _ in files) >= 1
    assert d.ready_packets() == PACKETS
    for p in files:
        pst = p.stat()
        assert (pst.st_uid, oct(pst.st_mode & 0o777)) == (nobody.pw_uid, "0o640")
    work = (d.spool / "work").stat()
    assert (work.st_uid, oct(work.st_mode & 0o7777)) == (nobody.pw_uid, "0o2700")


def test_a_second_capture_refuses_and_leaves_the_running_one_alone(
    veth: Veth, all_pcap: Path, daemon: Factory
) -> None:
    first = daemon(veth.b, spool={"group": "root"})  # a group that exists: no warning
    st = first.wait_capturing()
    assert first.proc is not None
    second = _rollcap("capture", "--config", str(first.config), timeout=60)
    assert second.returncode == 1, second.stderr
    lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, second.stderr
    # the pid, and the unit (here none, unless the tests themselves run in a service)
    assert f"pid {first.proc.pid}, " in lines[0], lines[0]
    assert "already capturing" in lines[0]
    # the running capture and its tcpdump are untouched, and lose nothing
    again = first.state()
    assert again["tcpdump_pid"] == st["tcpdump_pid"] and again["generation"] == st["generation"]
    assert "left running by a previous" not in first.log_text()
    veth.replay(all_pcap)
    time.sleep(DRAIN)
    assert first.stop() == 0
    assert first.ready_packets() == PACKETS


def test_rotate_and_an_unchanged_reload_hand_off_the_current_file_now(
    veth: Veth, all_pcap: Path, daemon: Factory
) -> None:
    d = daemon(veth.b, rotate_seconds=600)
    d.wait_capturing()
    veth.replay(all_pcap)
    time.sleep(DRAIN)
    listed = _rollcap("list", "--config", str(d.config), "--since=-1h")
    assert "still open on this host" in listed.stderr, listed.stderr
    r = _rollcap("rotate", "--config", str(d.config))
    assert r.returncode == 0, r.stderr
    assert "cut the current file" in r.stdout
    files = d.ready_files()
    assert len(files) == 1 and files[0].name in r.stdout
    assert d.ready_packets() == PACKETS  # at once: not after rotate_seconds
    # a reload with nothing changed cuts too (systemctl reload)
    veth.replay(all_pcap)
    time.sleep(DRAIN)
    d.signal(signal.SIGHUP)
    d.wait_for("the reload's cut", lambda s: s.get("handed_off_files") == 2, timeout=30)
    assert d.ready_packets() == 2 * PACKETS
    assert d.stop() == 0
    # nothing running: exit 3, as status says "not running"
    r = _rollcap("rotate", "--config", str(d.config))
    assert r.returncode == 3 and "no rollcap capture is running" in r.stderr
