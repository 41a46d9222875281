"""When a tcpdump that exited is started again: at once after it captured, backing
off while it cannot start."""

from __future__ import annotations

import signal

from rollcap.capture.restart import BACKOFF_MAX, RESTART_AT_ONCE, restart_delay


def test_a_tcpdump_that_captured_is_restarted_at_once_every_time() -> None:
    backoff = 1.0
    delays = []
    for _kill in range(5):  # kill -9 1.5-3 s after each restart while packets flow
        delay, backoff = restart_delay(backoff, listened=1.5, wrote=True, returncode=-9)
        delays.append(delay)
    assert delays == [RESTART_AT_ONCE] * 5
    # even after a crash loop had pushed the backoff up
    assert restart_delay(BACKOFF_MAX, listened=6.0, wrote=False) == (RESTART_AT_ONCE, 1.0)
    # kill -9 half a second after it listened: nothing flushed to disk yet, but capturing
    assert restart_delay(8.0, listened=0.5, wrote=False, returncode=-signal.SIGKILL)[0] == 0.2
    assert restart_delay(8.0, listened=None, wrote=False, returncode=-signal.SIGKILL)[0] == 8.0


def test_a_tcpdump_that_wrote_but_keeps_dying_by_itself_waits_one_second_each_time() -> None:
    backoff = 1.0
    delays = []
    for _crash in range(5):  # e.g. a packet that crashes it, a second after each start
        delay, backoff = restart_delay(backoff, listened=0.8, wrote=True, returncode=-11)
        delays.append(delay)
    assert delays == [1.0] * 5


def test_a_tcpdump_that_dies_before_or_right_after_listening_backs_off() -> None:
    backoff = 1.0
    delays = []
    for i in range(8):
        listened = None if i % 2 else 0.2  # never listened / died right after, no packets
        rc = -signal.SIGSEGV if i == 3 else 1  # a crash is not a kill from outside
        delay, backoff = restart_delay(backoff, listened=listened, wrote=False, returncode=rc)
        delays.append(delay)
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
