"""tcpdumps a crashed supervisor left running: found by pid and command line,
stopped before a new capture starts. Called only while holding the spool's lock
(rollcap.capture.lock), so a live capture's tcpdump is never among them."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path

from rollcap.journal import fields

log = logging.getLogger("rollcap.capture")


def is_our_tcpdump(pid: int, work_dir: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False  # a zombie waiting for its reaper has closed its files
    return str(work_dir).encode() in cmdline and b"tcpdump" in cmdline


def stop_orphans(pids: list[int], work_dir: Path) -> None:
    for pid in pids:
        if not is_our_tcpdump(pid, work_dir):
            continue
        log.warning(
            "stopping tcpdump %d left running by a previous rollcap capture",
            pid,
            extra=fields(tcpdump_pid=pid),
        )
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while is_our_tcpdump(pid, work_dir) and time.monotonic() < deadline:
            time.sleep(0.1)
        if is_our_tcpdump(pid, work_dir):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
