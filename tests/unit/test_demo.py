"""`make run`'s demo runner: its config is valid and its traffic stays on loopback."""

from __future__ import annotations

import os
import pwd
import time
from pathlib import Path

import pytest

from rollcap.config.load import load_config
from rollcap.demo import LoopbackTraffic, fetch_command, reachable_by, write_config


def test_demo_config_is_valid_and_local(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, "lo", 10, "tcpdump"))
    assert cfg.capture.interface == "lo" and cfg.capture.rotate_seconds == 10
    assert cfg.spool.directory == str(tmp_path / "spool")
    assert cfg.offload.destination == f"file://{tmp_path / 'archive'}"
    assert not cfg.offload.is_s3


def test_reachable_by(tmp_path: Path) -> None:
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    d = tmp_path / "a" / "b"
    d.mkdir(parents=True)
    os.chmod(tmp_path, 0o755)
    os.chmod(tmp_path / "a", 0o700)
    os.chmod(d, 0o755)
    ancestors_open = all(
        p.stat().st_mode & 0o001 or p.stat().st_uid == nobody.pw_uid for p in tmp_path.parents
    )
    assert not reachable_by("nobody", d / "spool")  # a/ is 0700 root
    os.chmod(tmp_path / "a", 0o711)
    assert reachable_by("nobody", d / "spool") == bool(ancestors_open)
    assert not reachable_by("no-such-user-rollcap", d)


def test_loopback_traffic_is_sent_and_received_on_127_0_0_1() -> None:
    t = LoopbackTraffic(per_second=50)
    assert t.rx.getsockname()[0] == "127.0.0.1"
    t.thread.start()
    deadline = time.monotonic() + 20
    while t.received < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    t.stop.set()
    t.thread.join(10)
    assert t.received >= 3
    assert not t.thread.is_alive()


def test_readme_first_screen_goes_from_make_run_to_the_demos_fetch_command() -> None:
    """The README's first screen and `make run` print the same fetch command."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    first = "\n".join(readme.splitlines()[:40])
    assert "make run" in first and "curl -s localhost" in first
    hint = fetch_command(".venv/bin/rollcap", Path("run-demo/rollcap.toml"), "lo", "5m")
    assert hint.replace(" --force", "") in first
