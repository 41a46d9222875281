"""One offload per spool: a flock on state/offload.lock, held for the process's life.

A second offload would clean up the first one's temp files and multipart
uploads. The flock is what excludes; the pid in the file is only for the error
message of a second instance. On a full disk the pid may not fit: the service
runs on without it (uploading is what frees space) and writes it later
(retry_pid).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path

from rollcap.errors import RollcapError
from rollcap.journal import fields
from rollcap.spool.fs import is_no_space

log = logging.getLogger("rollcap.offload")


class SpoolLock:
    def __init__(self, path: Path, spool_root: Path, stop: threading.Event) -> None:
        self.path = path
        self.spool_root = spool_root  # for the message of a second instance
        self.stop = stop  # ends the wait for free space
        self._fd = -1
        self._pid_written = True

    def acquire(self) -> None:
        path = self.path
        wait_logged = False
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o640)
                break
            except OSError as e:
                # creating an empty file needs an inode (and maybe a directory
                # block); wait for room instead of exiting into a restart loop
                if not is_no_space(e):
                    raise RollcapError(f"cannot open {path}: {e.strerror}") from None
                if not wait_logged:
                    log.error(
                        "cannot create %s: %s; waiting for free space in the spool",
                        path, e.strerror, extra=fields(error_code="ENOSPC"),
                    )  # fmt: skip
                    wait_logged = True
                if self.stop.wait(5.0):
                    raise RollcapError(f"stopped while waiting to create {path}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RollcapError(
                f"another rollcap offload (pid {other}) is already using the spool "
                f"{self.spool_root} ({path} is locked)"
            ) from None
        self._fd = fd  # kept open for the life of the process
        self._pid_written = self._write_pid()
        if not self._pid_written:
            log.warning(
                "no space left to write the pid into %s; running without it (the lock "
                "holds) and writing it once there is room", path,
                extra=fields(error_code="ENOSPC"),
            )  # fmt: skip

    def _write_pid(self) -> bool:
        """Overwrite in place, then cut: rewriting a block the file already has
        needs no free space, so a restart on a full disk usually succeeds."""
        data = f"{os.getpid()}\n".encode()
        try:
            os.pwrite(self._fd, data, 0)
            os.ftruncate(self._fd, len(data))
        except OSError as e:
            if not is_no_space(e):
                log.warning("cannot write the pid into offload.lock: %s", e.strerror)
            return False
        return True

    def retry_pid(self) -> None:
        """Write the pid if it did not fit at start (called with each status)."""
        if self._fd >= 0 and not self._pid_written and self._write_pid():
            self._pid_written = True
            log.info("pid written into %s", self.path)
