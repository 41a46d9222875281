"""How long to wait before restarting a tcpdump that died.

A tcpdump that proved it runs here (listened for a while) or that was killed
from outside after it listened is restarted at once: every moment of the gap
loses traffic. One that wrote packets but died by itself soon after is
restarted after the minimum delay every time. Only one that fails by itself
before or right after it listens (missing interface, device not up, crash
loop) backs off exponentially.
"""

from __future__ import annotations

import signal

RESTART_AT_ONCE = 0.2  # not 0: whatever kills every new tcpdump gets 5 a second at most
BACKOFF_MIN = 1.0
BACKOFF_MAX = 60.0
HEALTHY_LISTEN = 5.0  # seconds listening that prove a tcpdump can run here
# Deaths by these signals come from outside (an operator, the OOM killer), not
# from tcpdump failing: a tcpdump killed 0.5 s after it listened may not have
# flushed a packet to disk yet, but it was capturing.
KILLED = frozenset({-signal.SIGKILL, -signal.SIGTERM, -signal.SIGINT, -signal.SIGHUP})


def restart_delay(
    backoff: float, listened: float | None, wrote: bool, returncode: int = 1
) -> tuple[float, float]:
    """(delay before this restart, backoff for the next failure).

    listened: seconds the dead tcpdump had been listening, None if it never did;
    wrote: whether it wrote at least one packet; returncode: Popen's (-N = signal N).
    """
    if listened is not None and (listened >= HEALTHY_LISTEN or returncode in KILLED):
        return RESTART_AT_ONCE, BACKOFF_MIN
    if listened is not None and wrote:
        backoff = BACKOFF_MIN
    return backoff, min(backoff * 2, BACKOFF_MAX)
