"""Journal priorities: tcpdump's start-up chatter is info, so `journalctl -p
warning` shows only problems (it used to fill with "data link type" lines)."""

from __future__ import annotations

import re

import pytest

from tests.integration.test_capture import Factory, daemon  # noqa: F401

pytestmark = pytest.mark.integration

LEVEL = re.compile(r"^\d\d:\d\d:\d\d (\w+) +(\S+): (.*)$")


def test_a_normal_start_and_stop_on_any_logs_no_warning(daemon: Factory) -> None:  # noqa: F811
    # the default interface; a filter that matches nothing keeps the files tiny
    d = daemon("any", filter="udp port 9 and host 192.0.2.1", spool={"group": "root"})
    d.wait_capturing()
    assert d.stop() == 0
    lines = [m.groups() for ln in d.log_text().splitlines() if (m := LEVEL.match(ln))]
    assert any("data link type LINUX_SLL2" in msg and lvl == "info" for lvl, _n, msg in lines)
    assert any("listening on any" in msg and lvl == "info" for lvl, _n, msg in lines)
    problems = [ln for ln in lines if ln[0] in ("warning", "error", "critical")]
    assert problems == []
