"""Journal priorities: tcpdump's start-up chatter is info, so `journalctl -p
warning` shows only problems (it used to fill with "data link type" lines)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.integration.conftest import Factory
from tests.support.net import Veth

pytestmark = pytest.mark.integration

LEVEL = re.compile(r"^\d\d:\d\d:\d\d (\w+) +(\S+): (.*)$")


def test_a_normal_start_and_stop_on_any_logs_no_warning(daemon: Factory) -> None:
    # the default interface; a filter that matches nothing keeps the files tiny
    d = daemon("any", filter="udp port 9 and host 192.0.2.1", spool={"group": "root"})
    d.wait_capturing()
    assert d.stop() == 0
    lines = [m.groups() for ln in d.log_text().splitlines() if (m := LEVEL.match(ln))]
    assert any("data link type LINUX_SLL2" in msg and lvl == "info" for lvl, _n, msg in lines)
    assert any("listening on any" in msg and lvl == "info" for lvl, _n, msg in lines)
    problems = [ln for ln in lines if ln[0] in ("warning", "error", "critical")]
    assert problems == []


def test_quiet_link_switches_log_no_warning(veth: Veth, all_pcap: Path,
                                            daemon: Factory) -> None:  # fmt: skip
    """Normal running: traffic, then a quiet link rotated twice by make-before-break
    (each switch starts a tcpdump, which used to log its chatter as warnings)."""
    d = daemon(veth.b, rotate_seconds=10, spool={"group": "root"})
    first = d.wait_capturing()["generation"]
    veth.replay(all_pcap, pps=2000)
    d.wait_for("two quiet-link switches", lambda s: (s.get("generation") or 0) >= first + 2, 60)
    assert d.stop() == 0
    assert d.ready_packets() == 5374
    lines = [m.groups() for ln in d.log_text().splitlines() if (m := LEVEL.match(ln))]
    # one line per switch, which says it is one: never "started tcpdump" again
    assert sum("switched to a new tcpdump (quiet link)" in msg for _l, _n, msg in lines) >= 2
    info = [msg for lvl, _n, msg in lines if lvl == "info"]
    assert sum(msg.startswith("started tcpdump on") for msg in info) == 1, info
    assert sum("listening on" in msg for msg in info) == 1, info  # the switches': debug
    assert not any("overlap" in msg for msg in info), info
    assert [ln for ln in lines if ln[0] in ("warning", "error", "critical")] == []
