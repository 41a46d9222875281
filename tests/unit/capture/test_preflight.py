"""`rollcap check-config` checks what the capture daemon checks at start and reload."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import rollcap


def _cfg(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "rollcap.toml"
    p.write_text(body)
    return p


def test_missing_user_is_an_error_as_in_reload(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, '[capture]\nuser = "tcpdumpx"\n')
    r = rollcap("check-config", str(cfg))
    assert r.returncode == 78 and r.stdout == ""
    assert r.stderr == f"rollcap: {cfg}: capture.user: no such user 'tcpdumpx' on this machine\n"


def test_missing_group_is_a_warning(tmp_path: Path) -> None:
    p = _cfg(tmp_path, '[capture]\ninterface = "lo"\nuser = "root"\n[spool]\ngroup = "nogrp9"\n')
    r = rollcap("check-config", str(p))
    assert r.returncode == 0 and "warning: spool.group: no group 'nogrp9'" in r.stderr


def test_clean_config_has_no_warnings(tmp_path: Path) -> None:
    p = _cfg(tmp_path, '[capture]\ninterface = "lo"\nuser = "root"\n[spool]\ngroup = "root"\n')
    r = rollcap("check-config", str(p))
    assert (r.returncode, r.stdout, r.stderr) == (0, f"{p}: OK\n", "")
