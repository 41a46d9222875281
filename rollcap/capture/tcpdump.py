"""One running tcpdump: its stderr goes to the journal line by line, its counters
are parsed as they are printed."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable

from rollcap.capture.command import TCPDUMP_ENV
from rollcap.capture.counters import Counters, parse_counters
from rollcap.journal import fields

log = logging.getLogger("rollcap.capture.tcpdump")

# What tcpdump prints on every normal start: journal priority info, never a
# problem, never the reason for an exit. "data link type X" comes with -i any
# (LINUX_SLL2), also at each quiet-link switch.
_CHATTER = (
    "tcpdump: listening on ",
    "listening on ",
    "tcpdump: data link type ",
    "tcpdump: verbose output suppressed",
    # tcpdump gives up setuid privileges it never had (setuid(getuid())); the
    # units' SystemCallFilter= refuses the call. It already runs as our user.
    "Warning: setgid/setuid failed !",
)


def is_chatter(line: str) -> bool:
    return line.startswith(_CHATTER)


class Tcpdump:
    def __init__(
        self, argv: list[str], generation: int, iface: str, wake: Callable[[], None],
        keep_fds: tuple[int, ...] = (), chatter: int = logging.INFO,
    ) -> None:  # fmt: skip
        self.argv = argv
        # the level of its start-up chatter: DEBUG for one that takes over in a switch,
        # which happens every rotation and is no news
        self.chatter = chatter
        self.generation = generation
        self.iface = iface
        self._wake = wake
        self.listening = threading.Event()
        self.output_closed_at: float | None = None  # monotonic; stderr EOF: exiting or gone
        self.listening_at: float | None = None  # wall clock, comparable with pcap times
        self.listening_mono: float | None = None  # for ages: immune to clock steps
        self.counters = Counters()
        self.counters_seen = threading.Event()
        self.last_lines: list[str] = []
        self.stop_requested = False
        self.started_mono = time.monotonic()
        # Its socket cannot have seen a packet before this (wall clock, like pcap
        # times): where the tail of an old generation's overlap starts. The
        # "listening on" line is read later, by how much depends on the load.
        self.spawned_at = time.time()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=TCPDUMP_ENV,
            umask=0o027,  # 0640: the group (offload) reads finished files, nobody writes
            start_new_session=True,  # a terminal's ^C must not reach tcpdump first
            close_fds=True,
            pass_fds=keep_fds,  # rollcap.capture.switching.stamp_fds
        )
        self.pid = self.proc.pid
        self._reader = threading.Thread(
            target=self._read_stderr, name=f"tcpdump-{self.pid}", daemon=True
        )
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if not line:
                continue
            self.last_lines = [*self.last_lines[-4:], line]
            values = parse_counters(line)
            if values:
                self.counters.update(values)
                self.counters_seen.set()
                log.debug(
                    "%s",
                    line,
                    extra=fields(tcpdump_pid=self.pid, generation=self.generation),
                )
            else:
                # start-up chatter is info; anything else is a problem report
                chatter = is_chatter(line)
                level = self.chatter if chatter else logging.WARNING
                started = "listening on" in line and chatter
                if started and not self.listening.is_set():
                    self.listening_at = time.time()
                    self.listening_mono = time.monotonic()
                    self.listening.set()
                log.log(
                    level,
                    "%s",
                    line,
                    extra=fields(tcpdump_pid=self.pid, generation=self.generation),
                )
        self.output_closed_at = time.monotonic()
        self._wake()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def request_counters(self) -> None:
        """SIGUSR1 prints the counters; only once tcpdump has installed its handler."""
        if self.listening.is_set():
            self.signal(signal.SIGUSR1)

    def wait_listening(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.listening.wait(0.1):
                return True
            if not self.alive():
                return False
        return self.listening.is_set()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait (SIGKILL after timeout); the exit status."""
        self.stop_requested = True
        self.signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("tcpdump %d ignored SIGTERM for %.0f s; killing it", self.pid, timeout)
            self.proc.kill()
            rc = self.proc.wait()
        self._reader.join(2.0)  # the exit counters are the last lines
        return rc

    def exit_message(self) -> str:
        lines = [ln for ln in self.last_lines if not parse_counters(ln) and not is_chatter(ln)]
        return " / ".join(lines) or "no message"
