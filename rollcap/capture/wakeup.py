"""What wakes the capture loop: a self-pipe written by signal handlers (they
only set flags), tcpdump's stderr readers and the work/ watcher."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal

# `rollcap rotate`: cut the current file now (SIGUSR1 is tcpdump's, for counters)
ROTATE_SIGNAL = signal.SIGUSR2


class Wakeup:
    def __init__(self) -> None:
        self.read_fd, self._write_fd = os.pipe()
        for fd in (self.read_fd, self._write_fd):
            fl = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)
            os.set_inheritable(fd, False)
        self.stop = False
        self.reload = False
        self.rotate = False

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._write_fd, b"w")

    def _on_signal(self, signo: int, _frame: object) -> None:
        if signo == signal.SIGHUP:
            self.reload = True
        elif signo == ROTATE_SIGNAL:
            self.rotate = True
        else:
            self.stop = True

    def install_signals(self) -> None:
        signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, ROTATE_SIGNAL):
            signal.signal(s, self._on_signal)

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.read_fd, 4096):
                pass
