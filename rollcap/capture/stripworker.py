"""The strip worker: one thread, at a lower CPU priority, that does the part of
a hand-off that reads and rewrites a file (the overlap strip of a switch:
fingerprinting the old generation's tail, pairing and removing the new one's
duplicate head; rollcap.capture.handoff.Handoff.prepare).

At 200k packets/s that is seconds of CPU per switch (bench/strip.py). On the
supervisor's loop it held back the status, the budget checks every 0.1 s of an
overlap and the next switch; here the loop goes on and hands the file off
(finish) once the worker is done, the interface's later files waiting behind
it in order. It does the same disk steps in the same order as before, so the
crash rules of rollcap.capture.switching and .handoff are unchanged.

Linux nice values are per thread: NICE lowers this thread's alone, so tcpdump
(nice 0) gets the cores first. The thread still shares the GIL with the loop,
which waits at most the interpreter's switch interval (5 ms) when the worker
runs, longer only while a busy machine keeps the worker off a core.

A stop (rollcap.capture.handoff, HandoffQueue.process with a deadline) does
not leave its strips here, at nice +10, where a busy machine starves them
(30 s stops under load, docs/capture.md "Stopping"): stop() cancels the strips
not started and makes the running one raise StripCancelled at its next
checkpoint(), and the stop strips on its own thread, at the daemon's priority
(tcpdump has stopped), under deadline(): past it, checkpoint() raises
StripCancelled there too. Checkpoints sit only where the strip has written nothing
of its current step yet (reading the old tail, pairing the new head), so a
cancelled strip's file is left in work/ as it was, as a crash at that moment
would leave it, and the next start strips it.

After each job the worker hands the freed memory of every malloc arena back to
the kernel (glibc's malloc_trim): a strip reads and copies in 1 MB chunks on
this thread, and its arena kept the freed pages (11 MB after 12 minutes of
switches at 21k packets/s, 3 MB with the trim: docs/capture.md, "Capture RSS
under aligned rotation").
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

NICE = 10

_TRIM: Callable[[int], int] | None
try:
    _TRIM = ctypes.CDLL(None).malloc_trim  # glibc; ctypes releases the GIL for the call
except (OSError, AttributeError):  # a libc without it (musl): RSS stays as it is
    _TRIM = None

P = ParamSpec("P")
T = TypeVar("T")


class StripCancelled(Exception):
    """A strip ended at a checkpoint because the daemon stops (nothing of its
    current step written)."""


_local = threading.local()  # the worker's stop event; a thread's deadline()


def checkpoint() -> None:
    """Raise StripCancelled on a stopping strip worker or past this thread's
    deadline(); call only where the running step has written nothing yet.
    Elsewhere a no-op (the loop's hand-offs outside a stop, tools, tests)."""
    stop: threading.Event | None = getattr(_local, "stop", None)
    until: float | None = getattr(_local, "until", None)
    if (stop is not None and stop.is_set()) or (until is not None and time.monotonic() >= until):
        raise StripCancelled


@contextlib.contextmanager
def deadline(until: float | None) -> Iterator[None]:
    """checkpoint() on this thread raises StripCancelled from until (time.monotonic()) on."""
    _local.until = until
    try:
        yield
    finally:
        _local.until = None


def _then_trim(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return fn(*args, **kwargs)
    finally:
        if _TRIM is not None:
            _TRIM(0)


def _start(nice: int, stop: threading.Event) -> None:
    _local.stop = stop
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):  # never fatal: the strip is right at any priority
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))


class StripWorker:
    def __init__(self, wake: Callable[[], None], nice: int | None = None) -> None:
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(
            1, thread_name_prefix="strip", initializer=_start,
            initargs=(NICE if nice is None else nice, self._stop),
        )  # fmt: skip
        self._wake = wake  # the loop looks at the result as soon as it is there

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def submit(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Not after stop() (the caller checks stopping)."""
        job = self._pool.submit(lambda: _then_trim(fn, *args, **kwargs))
        job.add_done_callback(lambda _job: self._wake())
        return job

    def stop(self) -> None:
        """No more strips: those not started are cancelled, the running one
        raises StripCancelled at its next checkpoint (or, past its last one, finishes)."""
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
