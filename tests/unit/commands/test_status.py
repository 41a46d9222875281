"""`rollcap status` on a spool that is not there says so (not "unreadable")."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import rollcap


def test_a_missing_spool_does_not_exist(tmp_path: Path) -> None:
    cfg = tmp_path / "rollcap.toml"
    cfg.write_text(f'[spool]\ndirectory = "{tmp_path / "no-spool"}"\n')
    out = rollcap("status", "--config", str(cfg)).stdout.splitlines()
    assert "  ready       does not exist" in out
    assert "  quarantine  does not exist" in out
    assert not any("unreadable" in line for line in out)
