"""What a SIGHUP does, decided from the configs alone."""

from __future__ import annotations

from rollcap.capture.reloadplan import plan
from rollcap.config.load import validate_data


def _cfg(**capture: object) -> object:
    return validate_data({"capture": {"interface": "eth0", **capture}})


def test_unchanged_capture_cuts_the_file_now() -> None:
    old = _cfg()
    p = plan(old, _cfg(), "f", "f", "eth0", 100, 100)  # type: ignore[arg-type]
    assert (p.action, p.prepare_spool, p.keep_spool_directory) == ("rotate", False, False)
    budget = validate_data({"capture": {"interface": "eth0"}, "spool": {"max_megabytes": 5000}})
    assert plan(old, budget, "f", "f", "eth0", 100, 100).action == "rotate"  # type: ignore[arg-type]


def test_new_filter_switches_and_new_interface_restarts() -> None:
    old = _cfg()
    assert plan(old, _cfg(filter="tcp"), "", "(tcp)", "eth0", 1, 1).action == "switch"  # type: ignore[arg-type]
    assert plan(old, _cfg(interface="eth1"), "", "", "eth0", 1, 1).action == "restart"  # type: ignore[arg-type]
    # nothing running (waiting for the interface): a change means start anew
    assert plan(old, _cfg(filter="udp"), "", "(udp)", None, 1, 1).action == "restart"  # type: ignore[arg-type]


def test_a_new_timestamp_precision_is_a_make_before_break_switch() -> None:
    """µs and ns generations meet in the overlap; overlap.py strips it either way."""
    old, nano = _cfg(), _cfg(timestamp_precision="nano")
    assert plan(old, nano, "", "", "eth0", 1, 1).action == "switch"  # type: ignore[arg-type]
    assert plan(nano, old, "", "", "eth0", 1, 1).action == "switch"  # type: ignore[arg-type]


def test_owner_changes_prepare_the_spool_and_the_directory_stays() -> None:
    old = _cfg()
    moved = validate_data({"capture": {"interface": "eth0"}, "spool": {"directory": "/x/y"}})
    p = plan(old, moved, "", "", "eth0", 1, 2)  # type: ignore[arg-type]
    assert p.prepare_spool and p.keep_spool_directory
