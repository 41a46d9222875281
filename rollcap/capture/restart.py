"""How long to wait before restarting a tcpdump that died.

A tcpdump that captured (listened for a while, or wrote packets) and was then
killed is restarted after the minimum delay every time: the traffic of the
gap is lost. Only one that dies before or right after it listens (missing
interface, crash loop, bad filter on a changed link) backs off exponentially.
"""

from __future__ import annotations

BACKOFF_MIN = 1.0
BACKOFF_MAX = 60.0
HEALTHY_LISTEN = 5.0  # seconds listening that prove a tcpdump can run here


def restart_delay(backoff: float, listened: float | None, wrote: bool) -> tuple[float, float]:
    """(delay before this restart, backoff for the next failure).

    listened: seconds the dead tcpdump had been listening, None if it never did;
    wrote: whether it wrote at least one packet.
    """
    if listened is not None and (listened >= HEALTHY_LISTEN or wrote):
        backoff = BACKOFF_MIN
    return backoff, min(backoff * 2, BACKOFF_MAX)
