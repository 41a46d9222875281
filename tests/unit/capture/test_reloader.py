"""A reload the daemon cannot apply is rejected and logged; the old config stays."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from tests.unit.capture.fakes import supervisor


def test_reload_to_a_user_that_cannot_reach_the_spool_keeps_the_old_config(
    tmp_path: Path,
) -> None:
    """A new capture.user that cannot enter the spool's parents is a rejected reload
    (logged, old config kept), not an exception that ends the daemon with 78."""
    if os.geteuid() != 0:
        pytest.fail("needs root (chown of the spool)")
    tmp_path.chmod(0o700)  # capture.user 'nobody' cannot pass through it
    sup = supervisor(tmp_path, capture={"user": "root", "interface": "rcNoSuch0"})
    sup.identity = replace(sup.identity, uid=0)
    (tmp_path / "rollcap.toml").write_text(
        f'[capture]\nuser = "nobody"\ninterface = "rcNoSuch0"\n'
        f'[spool]\ndirectory = "{sup.spool.root}"\n'
    )
    sup.reload()  # before the fix: ConfigError escaped the main loop
    assert sup.cfg.capture.user == "root" and sup.identity.uid == 0
    assert "reload rejected" in sup.last_error and "cannot enter" in sup.last_error
    assert sup.spool.work.stat().st_uid == 0  # the running tcpdump's work/ left as it was
