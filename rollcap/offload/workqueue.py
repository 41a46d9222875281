"""The offload's work queue: what waits in ready/, what is in flight, what backs off.

Owned by the service's main thread; only the progress times are written by
the workers (under a lock). Files are handed out oldest first (capture's
hand-off sequence, see discovery.oldest_first), never twice at once, and not
before their retry time: a file-level failure defers that file alone with
jittered exponential backoff; a destination failure defers them all.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from rollcap.offload.backoff import Backoff
from rollcap.offload.discovery import oldest_first
from rollcap.offload.pipeline import Outcome
from rollcap.spool.readyname import ReadyName

STALL_SECONDS = 600  # an in-flight file without progress this long means "stuck"


@dataclass
class QueuedFile:
    name: str
    size: int
    attempt: int = 0  # attempts so far
    not_before: float = 0.0  # monotonic time of the next attempt
    last_error: str = ""


@dataclass
class InFlight:
    entry: QueuedFile
    future: Future[Outcome]
    started: float
    progress_at: float


class WorkQueue:
    def __init__(self, ready: Path, retry_max_seconds: int) -> None:
        self.ready = ready
        self.retry_max_seconds = retry_max_seconds
        self.pending: dict[str, QueuedFile] = {}  # in ready/, not yet stored (in flight too)
        self.in_flight: dict[str, InFlight] = {}
        self.ignored: set[str] = set()  # refused but could not be moved: logged once
        self._progress_lock = threading.Lock()
        self._progress: dict[str, float] = {}  # name -> monotonic time it last moved

    # -- what is in ready/ -------------------------------------------------

    def notice(self, name: str, size: int | None = None) -> bool:
        """Queue a file found in ready/ (size None: lstat it); True if new."""
        if name in self.pending or name in self.ignored:
            return False
        if size is None:
            try:
                size = os.lstat(self.ready / name).st_size
            except FileNotFoundError:
                return False
        self.pending[name] = QueuedFile(name, size)
        return True

    def vanished(self, found: dict[str, int]) -> list[QueuedFile]:
        """After a full scan of ready/ (found): remove and return the waiting
        files that are gone (capture's budget dropped them)."""
        gone = [
            self.pending.pop(name)
            for name in list(self.pending)
            if name not in found and name not in self.in_flight
        ]
        self.ignored &= set(found)
        return gone

    def done(self, name: str) -> None:
        """The file left ready/ (stored, quarantined, dropped) or is ignored."""
        self.pending.pop(name, None)

    def ignore(self, name: str) -> None:
        """Refused but still in ready/: never picked up again while it stays."""
        self.ignored.add(name)

    def backlog(self) -> tuple[int, int]:
        """Files and bytes waiting (in flight included)."""
        return len(self.pending), sum(e.size for e in self.pending.values())

    def hosts(self) -> set[str]:
        """The hosts named by the waiting files (their keys' owners)."""
        return {n.host for n in map(ReadyName.parse, self.pending) if n is not None}

    # -- handing out -------------------------------------------------------

    def due(self, now: float) -> Iterator[QueuedFile]:
        """Waiting files that may start now, oldest first (lazily: the caller
        stops when its slots are full)."""
        for name in sorted(self.pending, key=oldest_first):  # hand-off order
            entry = self.pending[name]
            if name in self.in_flight or entry.not_before > now:
                continue
            yield entry

    def start(self, entry: QueuedFile, now: float, submit: Callable[[], Future[Outcome]]) -> None:
        """Count an attempt and put the file in flight with submit()'s future."""
        entry.attempt += 1
        with self._progress_lock:
            self._progress[entry.name] = now
        self.in_flight[entry.name] = InFlight(entry, submit(), now, now)

    def progress_cb(self, name: str) -> Callable[[int], None]:
        """For the worker: called whenever the file moved some bytes."""

        def cb(_n: int) -> None:
            with self._progress_lock:
                self._progress[name] = time.monotonic()

        return cb

    def finished(self) -> Iterator[tuple[QueuedFile, Future[Outcome]]]:
        """Take the files whose work has ended out of flight."""
        for name, fl in list(self.in_flight.items()):
            if not fl.future.done():
                continue
            del self.in_flight[name]
            with self._progress_lock:
                self._progress.pop(name, None)
            yield fl.entry, fl.future

    def running(self) -> list[str]:
        """Names in flight whose work has not ended."""
        return [n for n, fl in self.in_flight.items() if not fl.future.done()]

    def stuck(self, now: float) -> bool:
        """Files in flight, none of which moved a byte for STALL_SECONDS (a file
        waiting for a compression slot is not stuck while the others progress)."""
        with self._progress_lock:
            times = [self._progress.get(n, now) for n in self.in_flight]
        return bool(times) and now - max(times) > STALL_SECONDS

    # -- deferred retries --------------------------------------------------

    def retry_later(self, entry: QueuedFile, now: float) -> float:
        """A file-level failure: back off this file alone; returns the delay."""
        delay = Backoff(self.retry_max_seconds).delay(entry.attempt)
        entry.not_before = now + delay
        return delay

    def defer_all(self, until: float) -> None:
        """The destination is down: nobody waiting starts before `until`."""
        for name, entry in self.pending.items():
            if name not in self.in_flight:
                entry.not_before = max(entry.not_before, until)

    def release_all(self, now: float) -> None:
        """The destination works again: whoever waited for it may start now."""
        for entry in self.pending.values():
            entry.not_before = min(entry.not_before, now)

    def next_due(self, now: float, default: float) -> float:
        """The earliest retry time after now of a waiting file, else default."""
        due = default
        for name, e in self.pending.items():
            if name not in self.in_flight and e.not_before > now:
                due = min(due, e.not_before)
        return due
