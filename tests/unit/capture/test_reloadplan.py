"""What a SIGHUP does, decided from the configs alone, interface by interface."""

from __future__ import annotations

from typing import Any

from rollcap.capture.reloadplan import plan
from rollcap.config.load import validate_data
from rollcap.config.schema import RollcapConfig


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
    """µs and ns generations meet in the overlap; overlap.py strips it either way."""
    old, nano = _cfg(), _cfg(timestamp_precision="nano")
    assert plan(old, nano, "", "", "eth0", 1, 1).action == "switch"  # type: ignore[arg-type]
    assert plan(nano, old, "", "", "eth0", 1, 1).action == "switch"  # type: ignore[arg-type]


def test_owner_changes_prepare_the_spool_and_the_directory_stays() -> None:
    old = _cfg()
    moved = validate_data({"capture": {"interface": "eth0"}, "spool": {"directory": "/x/y"}})
    p = plan(old, moved, _f(eth0=""), _f(eth0=""), {"eth0"}, 1, 2)
    assert p.prepare_spool and p.keep_spool_directory
