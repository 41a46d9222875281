"""A repeated error is logged once, then summarised, and its end is logged; each
condition is set and cleared by name, and status shows the latest still active."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rollcap.capture.conditions import Condition, RepeatLimiter
from tests.unit.capture.fakes import supervisor


def test_repeated_errors_are_logged_once_then_summarised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    lim = RepeatLimiter(logging.getLogger("t.rl"), every=60.0, clock=lambda: now[0])
    caplog.set_level(logging.INFO, "t.rl")
    for _ in range(121):  # two a second for a minute
        lim.error("handoff:No space left on device", "hand-off of a failed: No space")
        now[0] += 0.5
    lim.error("state:No space left on device", "cannot write the state file")
    lim.clear("handoff:", "hand-off")
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs == [
        "hand-off of a failed: No space",
        "hand-off of a failed: No space (120 more times in the last 60 s)",
        "cannot write the state file",
        "hand-off works again after 121 failures in 60 s",
    ]
    assert lim.active() == 1  # the state file still fails


def test_a_condition_that_ends_leaves_the_others_shown(tmp_path: Path) -> None:
    """Paused by the budget, then a failed save of the counters that later
    succeeds: the pause is still what `rollcap status` shows, until it ends."""
    sup = supervisor(tmp_path)
    sup.conditions.set(Condition.PAUSED, "capture paused: spool full")
    sup.conditions.set(Condition.COUNTERS_UNSAVED, "cannot save capture/capture-counters.json")
    assert sup.state()["last_error"] == "cannot save capture/capture-counters.json"
    sup.conditions.clear(Condition.COUNTERS_UNSAVED)
    assert sup.state()["last_error"] == "capture paused: spool full"
    sup.conditions.set(Condition.PAUSED, "capture paused: disk full")  # set again: latest
    assert Condition.PAUSED in sup.conditions and sup.last_error == "capture paused: disk full"
    sup.conditions.clear(Condition.PAUSED)
    assert sup.state()["last_error"] == ""
