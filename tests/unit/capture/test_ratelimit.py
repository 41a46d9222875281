"""A repeated error is logged once, then summarised, and its end is logged."""

from __future__ import annotations

import logging

import pytest

from rollcap.capture.ratelimit import RepeatLimiter


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
