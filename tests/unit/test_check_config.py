"""`rollcap check-config` checks what the capture daemon checks at start and reload."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.unit.test_cli import rollcap


def _cfg(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "rollcap.toml"
    p.write_text(body)
    return p


def test_missing_user_is_an_error_as_in_reload(tmp_path: Path) -> None:
    r = rollcap("check-config", str(_cfg(tmp_path, '[capture]\nuser = "tcpdumpx"\n')))
    assert r.returncode == 78 and r.stdout == ""
    assert r.stderr == "rollcap: capture.user: no such user 'tcpdumpx' on this machine\n"


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
    lines = r.stderr.splitlines()
    assert lines[0] == (
        "rollcap: warning: capture.interface: no interface 'uxbb' on this machine (yet); "
        "capture waits until it appears"
    )
    assert len(lines) == (2 if filter_ else 1)  # plus the note how the filter was compiled


def test_missing_group_is_a_warning(tmp_path: Path) -> None:
    p = _cfg(tmp_path, '[capture]\ninterface = "lo"\nuser = "root"\n[spool]\ngroup = "nogrp9"\n')
    r = rollcap("check-config", str(p))
    assert r.returncode == 0 and "warning: spool.group: no group 'nogrp9'" in r.stderr


def test_clean_config_has_no_warnings(tmp_path: Path) -> None:
    p = _cfg(tmp_path, '[capture]\ninterface = "lo"\nuser = "root"\n[spool]\ngroup = "root"\n')
    r = rollcap("check-config", str(p))
    assert (r.returncode, r.stdout, r.stderr) == (0, f"{p}: OK\n", "")


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
        "rollcap: capture.per_interface.uxbb.filter: tcpdump rejects 'udp and and': "
    ), r.stderr
    p.write_text(p.read_text().replace("udp and and", "udp"))
    r = rollcap("check-config", str(p))
    assert (r.returncode, r.stdout) == (0, f"{p}: OK\n")
    assert "warning: capture.interface: no interface 'uxbb'" in r.stderr
    assert "capture.per_interface.uxbb.filter compiled for Ethernet" in r.stderr
