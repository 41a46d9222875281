"""The supervisor's loop: it wakes when something is due, never spins, and a full
disk does not stop it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rollcap.capture import service
from tests.unit.capture.fakes import FakeTcpdump, enospc, supervisor, the_capture


def test_the_loop_wakes_for_a_due_restart_and_a_dying_tcpdump_but_never_spins(
    tmp_path: Path,
) -> None:

    sup = supervisor(tmp_path)
    the_capture(sup).proc = None
    # restart due in 0.2 s, not at the next tick
    the_capture(sup).next_start = time.monotonic() + 0.2
    assert 0.1 < sup.loop_timeout(None) <= 0.21
    the_capture(sup).next_start = time.monotonic() - 5  # long past (waiting for an interface)
    assert sup.loop_timeout(None) == service.TICK
    assert sup.loop_timeout(0.3) == 0.3  # quiet-link rotation due first
    dying = FakeTcpdump(1, 0.0)
    the_capture(sup).proc = dying  # type: ignore[assignment]
    assert sup.loop_timeout(None) == service.TICK
    dying.output_closed_at = time.monotonic()  # stderr EOF: reaped any moment
    assert sup.loop_timeout(None) <= 0.05
    dying.output_closed_at -= 10  # an exit stuck in the kernel
    assert sup.loop_timeout(None) == service.TICK


def test_counters_that_cannot_be_saved_do_not_stop_capture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sup = supervisor(tmp_path)
    monkeypatch.setattr(sup.session.launcher.persistent, "save", enospc)
    the_capture(sup).proc = FakeTcpdump(3, time.monotonic())  # type: ignore[assignment]
    sup.track_pids()
    sup.stop_orphans()
    assert "No space left on device" in sup.last_error
    assert sup.session.launcher.persistent.tcpdump_pids == []  # the memory copy is right
    the_capture(sup).proc = None
    assert "error: cannot save" in sup.status_line()  # systemctl status shows it


def test_the_capture_daemon_does_not_load_numpy() -> None:
    """Capture stays lean (memory, start-up beside a busy tcpdump): numpy is the
    offload's and the flow index's, loaded only by a full record walk."""
    import subprocess
    import sys

    code = "import sys, rollcap.capture.service as s; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
