"""One capture per spool: an exclusive flock on capture/capture.lock.

Taken before the daemon touches anything in the spool; a second `rollcap
capture` (a foreground run while the service runs) refuses with one line naming
the running one and exits 1: it never signals, renames or deletes anything of
a live instance. The flock is what excludes (it dies with the process); the
"PID UNIT" written into the file is for that message and for `rollcap rotate`.

What a crashed supervisor left behind in work/: its tcpdumps still running
(found by pid and command line, stopped before a new capture starts) and its
temp files. Called only while holding the spool's lock (above),
so a live capture's tcpdump or temp file is never among them.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import signal
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from rollcap.errors import RollcapError
from rollcap.journal import fields
from rollcap.spool.fs import OPEN_FLAGS, BadEntry, Dir, check_regular
from rollcap.spool.workname import list_work

log = logging.getLogger("rollcap.capture")

LOCK = "capture.lock"
# rollcap.capture.switching's sidecar_name (.bin; .json: format 2) and switch_name
_RECORD = re.compile(r"\.(?:overlap|switch)-g(\d{1,9})\.(?:bin|json)")
NO_UNIT = "-"  # in the file; shown as "not a systemd service"


class SpoolLocked(RollcapError):
    """Another capture holds the spool (exit 1)."""


@dataclass(frozen=True)
class Holder:
    pid: int | None
    unit: str


def own_unit() -> str:
    """The systemd unit this process runs in, from its cgroup path."""
    try:
        cgroup = Path("/proc/self/cgroup").read_text()
    except OSError:
        return NO_UNIT
    for line in cgroup.splitlines():
        path = line.rpartition(":")[2]
        for part in reversed(path.split("/")):
            if part.endswith(".service") and part.isprintable() and " " not in part:
                return part
    return NO_UNIT


def _parse(raw: bytes) -> Holder:
    words = raw.decode(errors="replace").split()
    pid = int(words[0]) if words and words[0].isdigit() and len(words[0]) < 10 else None
    unit = words[1] if len(words) > 1 and words[1].isprintable() else "unit unknown"
    if unit == NO_UNIT:
        unit = "not a systemd service"
    return Holder(pid, unit[:100])


def take(state: Dir, spool_root: Path) -> int:
    """The locked fd (keep it open for the life of the process) or SpoolLocked."""
    try:
        fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | OPEN_FLAGS, 0o640, dir_fd=state.fd)
    except OSError as e:  # e.g. left by a capture run as root: not ours to open
        raise RollcapError(f"cannot open {state.path / LOCK}: {e.strerror}") from None
    try:
        check_regular(os.fstat(fd), {os.geteuid()})
        os.set_blocking(fd, True)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            h = _parse(os.pread(fd, 200, 0))
            pid = "?" if h.pid is None else str(h.pid)
            raise SpoolLocked(
                f"another rollcap capture (pid {pid}, {h.unit}) is already capturing into "
                f"{spool_root}; stop it first, or give this one another spool.directory"
            ) from None
        data = f"{os.getpid()} {own_unit()}\n".encode()
        with contextlib.suppress(OSError):  # a full disk: the lock holds without the text
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        os.fchmod(fd, 0o640)  # the group reads it (rollcap rotate, status)
    except BadEntry as e:
        os.close(fd)
        raise RollcapError(f"{state.path / LOCK}: {e}") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def holder(capture_state: Path) -> Holder | None:
    """Who holds the lock now; None when no capture runs on this spool."""
    try:
        d = Dir(capture_state)
    except FileNotFoundError:
        return None
    with d:
        try:
            fd = d.open(LOCK, None)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _parse(os.pread(fd, 200, 0))
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)




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
    """At start, before any strip or tcpdump runs, and at the end of a stop,
    after the last: strip and write temp files are stale, and so is an overlap
    sidecar or switch record whose generation has no file left in work/. One
    whose generation has (a stop left the strip to the next start, or a crash)
    is kept: the hand-off strips with it."""
    gens = {w.generation for w, _n in list_work(work)}
    for name in work.names():
        m = _RECORD.fullmatch(name)
        if m is not None:
            stale = int(m[1]) not in gens
        else:
            stale = name.startswith(".") and name.endswith((".strip", ".tmp"))
        st = work.lstat(name)
        if stale and st is not None and stat.S_ISREG(st.st_mode):
            log.info("removing stale %s", name, extra=fields(file=name))
            with contextlib.suppress(FileNotFoundError):
                work.unlink(name)  # never follows: a link would go, not its target
