"""`rollcap reload` waits for the capture daemon's verdict: a rejected config
fails (exit 1, the reason on stderr) and capture goes on untouched; a later
good reload succeeds and clears last_error."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.capture_daemon import REPO, CaptureDaemon, write_config
from tests.integration.conftest import Factory
from tests.support.net import Veth

pytestmark = pytest.mark.integration


def _reload(d: CaptureDaemon) -> subprocess.CompletedProcess[str]:
    assert d.proc is not None
    env = {**os.environ, "PYTHONPATH": str(REPO), "MAINPID": str(d.proc.pid)}
    return subprocess.run(
        [sys.executable, "-m", "rollcap", "reload", "--config", str(d.config)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_rejected_reload_fails_and_a_good_one_clears_last_error(
    veth: Veth, daemon: Factory
) -> None:
    d = daemon(veth.b)
    first = d.wait_capturing()
    tcpdump = first["tcpdump_pid"]

    d.reconfigure(user="tcpdumpx")  # check-config used to say OK to this
    r = _reload(d)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "no such user 'tcpdumpx'" in r.stderr and r.stderr.count("\n") == 1
    st = d.wait_for("last_error", lambda s: s["last_error"].startswith("reload rejected"), 10)
    assert st["state"] == "capturing" and st["tcpdump_pid"] == tcpdump

    missing = f"rcN{secrets.token_hex(3)}"
    write_config(d.config, d.spool, missing)  # a typo in the interface name
    r = _reload(d)
    assert r.returncode == 1 and f"no interface {missing!r}" in r.stderr, r.stderr
    assert d.state()["tcpdump_pid"] == tcpdump  # the working capture was not stopped

    d.reconfigure(filter="greater 1")
    r = _reload(d)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "configuration reloaded"
    st = d.wait_for("the new filter", lambda s: s["filter"] == "(greater 1)" and
                    s["last_error"] == "", timeout=20)  # fmt: skip
    assert st["state"] == "capturing"

    r = _reload(d)  # unchanged: still an answer
    assert r.returncode == 0 and r.stdout.strip() == "configuration reloaded", r.stderr
    assert d.stop() == 0


def test_reload_without_a_daemon_says_so(tmp_path: Path) -> None:
    cfg = tmp_path / "rollcap.toml"
    cfg.write_text(f'[spool]\ndirectory = "{tmp_path / "spool"}"\n')
    env = {k: v for k, v in os.environ.items() if k != "MAINPID"}
    r = subprocess.run(
        [sys.executable, "-m", "rollcap", "reload", "--config", str(cfg)],
        cwd=REPO, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert r.returncode == 1 and "no running capture daemon" in r.stderr
