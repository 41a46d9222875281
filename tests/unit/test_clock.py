"""check-config warns when the system clock is not synchronised (docs/fleet.md:
windows across hosts need NTP). The clock's state is injected, whatever this
host's is; the kernel read itself is checked against this host's state."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rollcap import clock
from rollcap.cli import main

REPO = Path(__file__).resolve().parents[2]
CLOCK_LINE = "rollcap: warning: clock: the system clock is not synchronised"


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "rollcap.toml"
    cfg.write_text('[capture]\ninterface = "lo"\nuser = "root"\n[spool]\n'
                   f'directory = "{tmp_path / "spool"}"\ngroup = "root"\n'
                   f'[offload]\ndestination = "file://{tmp_path / "archive"}"\n')  # fmt: skip
    return cfg


@pytest.mark.parametrize(("synced", "warned"), [(False, True), (True, False), (None, False)])
def test_check_config_warns_only_when_the_clock_is_unsynchronised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    synced: bool | None, warned: bool,
) -> None:  # fmt: skip
    monkeypatch.setattr(clock, "synchronised", lambda: synced)
    cfg = _config(tmp_path)
    assert main(["check-config", str(cfg)]) == 0  # a warning: the daemons still start
    out, err = capsys.readouterr()
    assert out == f"{cfg}: OK\n"
    lines = [ln for ln in err.splitlines() if ln.startswith(CLOCK_LINE)]
    assert len(lines) == (1 if warned else 0), err
    if warned:
        assert "timedatectl show -p NTPSynchronized" in lines[0]
        assert lines[0].endswith("docs/fleet.md")


def _timedatectl() -> bool | None:
    """systemd's reading of the same kernel bit, where timedated answers."""
    if shutil.which("timedatectl") is None:
        return None
    r = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                       capture_output=True, text=True, timeout=30)  # fmt: skip
    value = r.stdout.strip()
    return {"yes": True, "no": False}.get(value) if r.returncode == 0 else None


def test_the_kernels_state_is_read_and_check_config_says_it(tmp_path: Path) -> None:
    synced = clock.synchronised()
    assert synced in (True, False)  # adjtimex(2) reads without privilege on Linux
    systemd = _timedatectl()
    if systemd is not None:
        assert synced == systemd
    r = subprocess.run([sys.executable, "-m", "rollcap", "check-config", str(_config(tmp_path))],
                       cwd=REPO, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (CLOCK_LINE in r.stderr) == (not synced), r.stderr
