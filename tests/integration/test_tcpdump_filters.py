"""Filters compiled by the real tcpdump: its rejections become one-line config errors
(exit 78) naming the key, in check-config and in the capture command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rollcap.capture.command import check_config_filter, check_filter
from rollcap.config.load import validate_data
from rollcap.errors import ConfigError
from tests.support.cli import REPO, rollcap

pytestmark = pytest.mark.integration


def _cfg(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "rollcap.toml"
    p.write_text(body)
    return p


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("tcp porrt 80", "can't parse filter expression: syntax error"),
        ("port 99999", "illegal port number"),
        ("ether host 1.2.3.4", "illegal link layer address"),
    ],
)
def test_filter_errors_in_every_wording_are_config_errors(bad: str, message: str) -> None:
    if not Path("/usr/bin/tcpdump").exists():
        pytest.fail("tcpdump is not installed (.ci/run installs it)")
    cap = validate_data({"capture": {"interface": "rcNoSuch0", "filter": bad}}).capture
    with pytest.raises(ConfigError) as e:
        check_filter(cap, f"({bad})")
    assert e.value.exit_code == 78
    assert str(e.value).startswith(f"capture.filter: tcpdump rejects {bad!r}: ")
    assert message in str(e.value)
    check_filter(cap, "(tcp port 80) and not (host 127.0.0.1 and tcp port 8333)")


@pytest.mark.parametrize("filter_", ["", "udp"])
def test_missing_interface_is_a_warning_worded_the_same_with_or_without_filter(
    tmp_path: Path, filter_: str
) -> None:
    if filter_ and shutil.which("tcpdump") is None:
        pytest.skip("tcpdump not installed")
    p = _cfg(tmp_path, f'[capture]\ninterface = "uxbb"\nfilter = "{filter_}"\nuser = "root"\n'
             '[spool]\ngroup = "root"\n')  # fmt: skip
    r = rollcap("check-config", str(p))
    assert r.returncode == 0 and r.stdout == f"{p}: OK\n"
    # (the clock's warning depends on this host: tests/unit/test_clock.py)
    lines = [ln for ln in r.stderr.splitlines() if not ln.startswith("rollcap: warning: clock:")]
    assert lines[0] == (
        "rollcap: warning: capture.interface: no interface 'uxbb' on this machine (yet); "
        "capture waits until it appears"
    )
    assert len(lines) == (2 if filter_ else 1)  # plus the note how the filter was compiled


def test_each_interfaces_filter_is_compiled_and_named_by_its_key(tmp_path: Path) -> None:
    if shutil.which("tcpdump") is None:
        pytest.fail("tcpdump is not installed (.ci/run installs it)")
    body = (
        '[capture]\ninterface = ["lo", "uxbb"]\nfilter = "tcp"\nuser = "root"\n'
        '[capture.per_interface.uxbb]\nfilter = "udp and and"\n[spool]\ngroup = "root"\n'
    )
    p = _cfg(tmp_path, body)
    r = rollcap("check-config", str(p))
    assert r.returncode == 78, r.stderr
    assert r.stderr.startswith(
        f"rollcap: {p}: capture.per_interface.uxbb.filter: tcpdump rejects 'udp and and': "
    ), r.stderr
    p.write_text(p.read_text().replace("udp and and", "udp"))
    r = rollcap("check-config", str(p))
    assert (r.returncode, r.stdout) == (0, f"{p}: OK\n")
    assert "warning: capture.interface: no interface 'uxbb'" in r.stderr
    assert "capture.per_interface.uxbb.filter compiled for Ethernet" in r.stderr


def test_check_config_filter() -> None:
    if not Path("/usr/bin/tcpdump").exists():
        pytest.fail("tcpdump is not installed (.ci/run installs it)")
    with pytest.raises(ConfigError) as e:
        check_config_filter(
            validate_data({"capture": {"interface": "lo", "filter": "tcp and and"}}).capture
        )
    assert e.value.exit_code == 78 and "syntax error" in str(e.value)
    missing = {"interface": "rcNoSuch0", "filter": "tcp port 80"}
    note = check_config_filter(validate_data({"capture": missing}).capture)
    assert note is not None and "EN10MB" in note and "interface is missing" in note
    no_tcpdump = {**missing, "tcpdump_path": "/nonexistent/tcpdump"}
    note = check_config_filter(validate_data({"capture": no_tcpdump}).capture)
    assert note is not None and "not compiled" in note
    assert (
        check_config_filter(validate_data({"capture": {"interface": "rcNoSuch0"}}).capture) is None
    )


def test_check_config_exits_78_with_tcpdumps_message(tmp_path: Path) -> None:
    cfg = tmp_path / "rollcap.toml"
    cfg.write_text('[capture]\ninterface = "rcNoSuch0"\nfilter = "tcp porrt 80"\n')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run(
        [sys.executable, "-m", "rollcap", "check-config", str(cfg)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 78, r.stderr
    assert r.stderr == (
        f"rollcap: {cfg}: capture.filter: tcpdump rejects 'tcp porrt 80': "
        "tcpdump: can't parse filter expression: syntax error\n"
    )
    cfg.write_text('[capture]\ninterface = "rcNoSuch0"\nfilter = "tcp port 80"\n')
    r = subprocess.run(
        [sys.executable, "-m", "rollcap", "check-config", str(cfg)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (r.returncode, r.stdout) == (0, f"{cfg}: OK\n")
    assert "compiled for Ethernet (EN10MB): the interface is missing" in r.stderr
    assert "capture.interface: no interface 'rcNoSuch0' on this machine (yet)" in r.stderr


def test_errors_past_the_schema_name_the_config_file(tmp_path: Path) -> None:
    """capture.user and tcpdump's verdict on a filter name the file as the schema's do."""
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[capture]\nuser = "no-such-user-x"\nfilter = "tcp and ("\n'
                   f'[spool]\ndirectory = "{tmp_path}"\n')  # fmt: skip
    r = rollcap("check-config", str(bad))
    assert r.returncode == 78
    lines = r.stderr.splitlines()
    assert (
        lines[0] == f"rollcap: {bad}: capture.user: no such user 'no-such-user-x' on this machine"
    )
    assert lines[1].startswith(f"rollcap: {bad}: capture.filter: tcpdump rejects 'tcp and ('")
