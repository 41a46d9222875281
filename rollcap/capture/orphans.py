"""What a crashed supervisor left behind in work/: its tcpdumps still running
(found by pid and command line, stopped before a new capture starts) and its
temp files. Called only while holding the spool's lock (rollcap.capture.lock),
so a live capture's tcpdump or temp file is never among them."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import stat
import time
from pathlib import Path

from rollcap.journal import fields
from rollcap.spool.fs import Dir

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


def remove_stale_temps(work: Dir) -> None:
    """Overlap sidecars and strip temp files of generations already handed off."""
    for name in work.names():
        stale = name.startswith((".overlap-", ".switch-")) or (
            name.startswith(".") and name.endswith((".strip", ".tmp"))
        )
        st = work.lstat(name)
        if stale and st is not None and stat.S_ISREG(st.st_mode):
            log.info("removing stale %s", name, extra=fields(file=name))
            with contextlib.suppress(FileNotFoundError):
                work.unlink(name)  # never follows: a link would go, not its target
