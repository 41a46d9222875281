"""What a SIGHUP does, decided from the configs alone, interface by interface.

`rollcap check-config` checks what the capture daemon checks at start and reload.

A reload the daemon cannot apply is rejected and logged; the old config stays."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rollcap import clock
from rollcap.capture.reload import plan_reload as plan
from rollcap.config.load import validate_data
from rollcap.config.schema import RollcapConfig
from tests.support.cli import rollcap
from tests.unit.capture.fakes import supervisor


def _cfg(**capture: Any) -> RollcapConfig:
    return validate_data({"capture": {"interface": "eth0", **capture}})


def _f(**filters: str) -> dict[str, str]:
    return filters


def test_unchanged_capture_cuts_the_file_now() -> None:
    old = _cfg()
    p = plan(old, _cfg(), _f(eth0="f"), _f(eth0="f"), {"eth0"}, 100, 100)
    assert (p.rotate, p.prepare_spool, p.keep_spool_directory) == (True, False, False)
    assert p.action == "rotate" and p.keep == ("eth0",)
    budget = validate_data({"capture": {"interface": "eth0"}, "spool": {"max_megabytes": 5000}})
    assert plan(old, budget, _f(eth0="f"), _f(eth0="f"), {"eth0"}, 100, 100).rotate


def test_new_filter_switches_and_new_interface_restarts() -> None:
    old = _cfg()
    p = plan(old, _cfg(filter="tcp"), _f(eth0=""), _f(eth0="(tcp)"), {"eth0"}, 1, 1)
    assert (p.action, p.switch, p.rotate) == ("switch", ("eth0",), False)
    p = plan(old, _cfg(interface="eth1"), _f(eth0=""), _f(eth1=""), {"eth0"}, 1, 1)
    assert (p.action, p.stop, p.start) == ("restart", ("eth0",), ("eth1",))
    # nothing running (waiting for the interface): a change means start anew
    p = plan(old, _cfg(filter="udp"), _f(eth0=""), _f(eth0="(udp)"), set(), 1, 1)
    assert (p.action, p.restart, p.switch) == ("restart", ("eth0",), ())


def test_adding_and_removing_interfaces_leaves_the_unchanged_ones_alone() -> None:
    two = _cfg(interface=["eth0", "eth1"])
    p = plan(_cfg(), two, _f(eth0=""), _f(eth0="", eth1=""), {"eth0"}, 1, 1)
    assert (p.start, p.keep, p.switch, p.stop, p.rotate) == (("eth1",), ("eth0",), (), (), False)
    p = plan(two, _cfg(interface=["eth1"]), _f(eth0="", eth1=""), _f(eth1=""), {"eth0", "eth1"},
             1, 1)  # fmt: skip
    assert (p.stop, p.keep, p.start) == (("eth0",), ("eth1",), ())


def test_a_per_interface_override_switches_that_interface_alone() -> None:
    two = _cfg(interface=["eth0", "eth1"])
    snap = _cfg(interface=["eth0", "eth1"], per_interface={"eth1": {"snaplen": 128}})
    filters = _f(eth0="", eth1="")
    p = plan(two, snap, filters, filters, {"eth0", "eth1"}, 1, 1)
    assert (p.switch, p.keep) == (("eth1",), ("eth0",))
    # a setting every interface shares switches them all
    p = plan(two, _cfg(interface=["eth0", "eth1"], rotate_seconds=60), filters, filters,
             {"eth0", "eth1"}, 1, 1)  # fmt: skip
    assert p.switch == ("eth0", "eth1")


def test_a_new_timestamp_precision_is_a_make_before_break_switch() -> None:
    """µs and ns generations meet in the overlap; the overlap strip (switching) handles both."""
    old, nano = _cfg(), _cfg(timestamp_precision="nano")
    assert plan(old, nano, "", "", "eth0", 1, 1).action == "switch"  # type: ignore[arg-type]
    assert plan(nano, old, "", "", "eth0", 1, 1).action == "switch"  # type: ignore[arg-type]


def test_owner_changes_prepare_the_spool_and_the_directory_stays() -> None:
    old = _cfg()
    moved = validate_data({"capture": {"interface": "eth0"}, "spool": {"directory": "/x/y"}})
    p = plan(old, moved, _f(eth0=""), _f(eth0=""), {"eth0"}, 1, 2)
    assert p.prepare_spool and p.keep_spool_directory


def _toml(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "rollcap.toml"
    p.write_text(body)
    return p


def test_missing_user_is_an_error_as_in_reload(tmp_path: Path) -> None:
    cfg = _toml(tmp_path, '[capture]\nuser = "tcpdumpx"\n')
    r = rollcap("check-config", str(cfg))
    assert r.returncode == 78 and r.stdout == ""
    assert r.stderr == f"rollcap: {cfg}: capture.user: no such user 'tcpdumpx' on this machine\n"


def test_missing_group_is_a_warning(tmp_path: Path) -> None:
    p = _toml(tmp_path, '[capture]\ninterface = "lo"\nuser = "root"\n[spool]\ngroup = "nogrp9"\n')
    r = rollcap("check-config", str(p))
    assert r.returncode == 0 and "warning: spool.group: no group 'nogrp9'" in r.stderr


def test_clean_config_has_no_warnings(tmp_path: Path) -> None:
    p = _toml(tmp_path, '[capture]\ninterface = "lo"\nuser = "root"\n[spool]\ngroup = "root"\n')
    r = rollcap("check-config", str(p))
    # but the clock's, on a host whose clock is not synchronised (tests/unit/test_clock.py)
    unsynced = clock.warning(clock.synchronised())
    assert (r.returncode, r.stdout, r.stderr) == (
        0, f"{p}: OK\n", f"rollcap: warning: {unsynced}\n" if unsynced else "")


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
