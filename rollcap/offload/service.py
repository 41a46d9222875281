"""`rollcap offload`: move finished captures from ready/ to the destination.

One main thread owns all bookkeeping (what is pending, in flight, backing
off) and blocks on a single Event with a timeout, so an idle service costs
nothing. The watchdog observer and the worker threads only set that Event.
Workers (offload.concurrency) run rollcap.offload.pipeline, oldest file first.
The main thread never waits on the network: destination checks run in their
own thread too, so SIGTERM is answered even while the server does not answer.

Failures: a file-level failure backs off that file alone; a destination-level
one (connection, 5xx, credentials, bucket) stops new work until the
destination's own backoff expires, then one file probes it. Credentials,
bucket and permission errors are logged once (per distinct error) and retried
at the cap; files stay in the spool until they are stored and verified.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import signal
import string
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from rollcap.config import load_config
from rollcap.config.schema import RollcapConfig
from rollcap.errors import RollcapError
from rollcap.journal import fields, setup_logging
from rollcap.metrics.exporter import offload_exporter
from rollcap.naming import ReadyName, local_hostname
from rollcap.notify import Notifier
from rollcap.offload.backoff import Backoff
from rollcap.offload.compress import clean_tmp
from rollcap.offload.deferred import DeferredStorage
from rollcap.offload.discovery import ReadyWatcher, oldest_first, scan
from rollcap.offload.level import AdaptiveLevel
from rollcap.offload.pipeline import Outcome, Pipeline
from rollcap.offload.vet import expected_owners
from rollcap.spool import Spool
from rollcap.state import write_state
from rollcap.storage import Storage, StorageError

log = logging.getLogger("rollcap.offload")

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
STALL_SECONDS = 600  # an in-flight file without progress this long means "stuck"
STATUS_SECONDS = 5.0  # STATUS= and the state file while busy
IDLE_STATUS_SECONDS = 30.0  # ... and while idle (status calls a state stale after 90 s)
RATE_WINDOW = 60.0
# How long a stop waits for transfers to cancel; a server that stopped answering
# would hold them for botocore's read timeout. Below TimeoutStopSec=60.
STOP_GRACE_SECONDS = 20.0


@dataclass
class Entry:
    name: str
    size: int
    attempt: int = 0  # attempts so far
    not_before: float = 0.0  # monotonic time of the next attempt
    last_error: str = ""


@dataclass
class InFlight:
    entry: Entry
    future: Future[Outcome]
    started: float
    progress_at: float


@dataclass
class Counters:
    uploaded_files: int = 0
    uploaded_bytes_in: int = 0
    uploaded_bytes_out: int = 0
    quarantined: int = 0
    dropped_by_capture: int = 0
    last_upload: dict[str, Any] | None = None
    recent: deque[tuple[float, int]] = field(default_factory=deque)  # (monotonic, bytes_in)


def host_key_matcher(template: str, prefix: str, hosts: set[str]) -> Callable[[str], bool]:
    """True for keys this template renders for one of hosts (any time, iface, seq)."""
    parts = []
    for literal, name, _spec, _conv in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if name == "prefix":
            parts.append(re.escape(prefix))
        elif name == "host":
            parts.append("(?:" + "|".join(re.escape(h) for h in sorted(hosts)) + ")")
        elif name is not None:
            parts.append(".+?")
    rx = re.compile("".join(parts) + r"\Z")

    def ours(key: str) -> bool:
        return bool(rx.match(key if prefix else "/" + key))

    return ours


class OffloadService:
    def __init__(self, cfg: RollcapConfig, storage: Storage, notifier: Notifier) -> None:
        self.cfg = cfg
        self.oc = cfg.offload
        self.spool = Spool.at(cfg.spool.directory)
        self.storage = storage
        self.notifier = notifier
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.pending: dict[str, Entry] = {}
        self.in_flight: dict[str, InFlight] = {}
        self.ignored: set[str] = set()  # refused but could not be moved: logged once
        self.counters = Counters()
        self.dest = Backoff(self.oc.retry_max_seconds)
        self.dest_down_until = 0.0
        self.dest_error: StorageError | None = None
        self.last_error = ""
        self.state = "starting"
        self.pipeline = Pipeline(
            cfg, self.spool, storage, expected_owners(cfg.capture.user), self.stop
        )
        self.level = AdaptiveLevel(
            self.oc.compression, self.oc.compression_level, self.oc.compression_fast_backlog
        )
        self.executor = ThreadPoolExecutor(self.oc.concurrency, thread_name_prefix="offload")
        self.prober = ThreadPoolExecutor(1, thread_name_prefix="check")
        self.probe: Future[StorageError | None] | None = None  # a check under way
        self.stop_signal: int | None = None  # what asked for the stop, logged by shutdown()
        self.abandoned = 0  # threads still stuck in the network when shutdown gave up
        self.watcher = ReadyWatcher(self.spool.ready, self.wake)
        self._progress_lock = threading.Lock()
        self._progress: dict[str, float] = {}
        wd = os.environ.get("WATCHDOG_USEC", "")
        # no WATCHDOG_USEC: nobody listens, do not wake up for it
        self.watchdog_every = int(wd) / 2e6 if wd.isdigit() and int(wd) else 3600.0
        self.dirty = True  # something changed since the last _publish()
        self.started_at = time.monotonic()
        self.checked = False  # the destination was checked once (see run())
        self._lock_wait_logged = False
        self._pid_written = True
        self._state_write_failed = False
        self.metrics = offload_exporter(cfg)

    # -- start -------------------------------------------------------------

    def prepare(self) -> None:
        for d in (self.spool.ready, self.spool.quarantine, self.spool.tmp, self.spool.state):
            try:
                d.mkdir(mode=0o770, parents=True, exist_ok=True)
            except OSError as e:
                raise RollcapError(f"spool directory {d}: {e.strerror}") from None
        self._lock_spool()
        # ready/'s owner: the packaged capture user (rollcap-capture)
        self.pipeline.owners |= expected_owners(self.cfg.capture.user, self.pipeline.ready)
        for name in clean_tmp(self.spool.tmp):
            log.info("removed stale temp file %s", name, extra=fields(file=name))
        self.watcher.start()  # before the scan: nothing can fall between the two

    def _lock_spool(self) -> None:
        """One offload per spool: a second one would clean up the first one's
        temp files and multipart uploads. The lock dies with the process.

        The flock is what excludes; the pid in the file is only for the error
        message of a second instance. On a full disk the pid may not fit: the
        service runs on without it (uploading is what frees space) and writes
        it later (_retry_pid)."""
        path = self.spool.state / "offload.lock"
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o640)
                break
            except OSError as e:
                # creating an empty file needs an inode (and maybe a directory
                # block); wait for room instead of exiting into a restart loop
                if e.errno not in NO_SPACE:
                    raise RollcapError(f"cannot open {path}: {e.strerror}") from None
                if not self._lock_wait_logged:
                    log.error(
                        "cannot create %s: %s; waiting for free space in the spool",
                        path, e.strerror, extra=fields(error_code="ENOSPC"),
                    )  # fmt: skip
                    self._lock_wait_logged = True
                if self.stop.wait(5.0):
                    raise RollcapError(f"stopped while waiting to create {path}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RollcapError(
                f"another rollcap offload (pid {other}) is already using the spool "
                f"{self.spool.root} ({path} is locked)"
            ) from None
        self._lock_fd = fd  # kept open for the life of the process
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
            os.pwrite(self._lock_fd, data, 0)
            os.ftruncate(self._lock_fd, len(data))
        except OSError as e:
            if e.errno not in NO_SPACE:
                log.warning("cannot write the pid into offload.lock: %s", e.strerror)
            return False
        return True

    def _retry_pid(self) -> None:
        if not self._pid_written and self._write_pid():
            self._pid_written = True
            log.info("pid written into %s", self.spool.state / "offload.lock")

    def _start_check(self) -> None:
        """Check the destination in the check thread: HEAD the bucket and abort
        stale multipart uploads of ours. At start and to probe a failed one."""
        hosts = {local_hostname(self.cfg.capture.hostname)}
        hosts |= {n.host for n in map(ReadyName.parse, self.pending) if n is not None}
        self.probe = self.prober.submit(self._check, hosts)
        self.probe.add_done_callback(lambda _f: self.wake.set())

    def _check(self, hosts: set[str]) -> StorageError | None:
        try:
            self.storage.check()
            ours = host_key_matcher(self.oc.key_template, self.storage.key_prefix, hosts)
            for key in self.storage.cleanup_incomplete(ours):
                log.info(
                    "removed an incomplete upload of %s left by an earlier run",
                    key,
                    extra=fields(key=key, destination=self.storage.describe()),
                )
        except StorageError as e:
            return e
        return None

    def _check_done(self) -> bool | None:
        """The result of a finished check (True: the destination works), None
        while there is none."""
        if self.probe is None or not self.probe.done():
            return None
        probe, self.probe = self.probe, None
        # Anything but a StorageError (the storage cannot even be opened: a broken
        # credentials file) ends the service with its message, as it did when the
        # check ran in this thread: no retry fixes it, a restart after the fix does.
        err = probe.result()
        if err is not None:
            self._dest_failed(err, from_check=True)
            return False
        if self.dest_error is not None:
            log.info(
                "destination %s works again", self.storage.describe(),
                extra=fields(destination=self.storage.describe()),
            )  # fmt: skip
            self.dest_error = None
            self.dest.reset()
            self.last_error = ""
            now = time.monotonic()
            for entry in self.pending.values():
                entry.not_before = min(entry.not_before, now)
        return True

    # -- the loop ----------------------------------------------------------

    def run(self) -> int:
        self.prepare()
        self.metrics.start()
        self.rescan()
        next_rescan = time.monotonic() + self.oc.rescan_seconds
        # Compress the first files while the storage opens and is checked;
        # nothing is stored before the check (it aborts stale uploads of ours).
        self.pipeline.store_allowed.clear()
        self._dispatch(time.monotonic())
        self._start_check()
        while self._check_done() is None:
            if self.stop.wait(0.1):  # stopped before the destination ever answered
                return self.shutdown()
        self.pipeline.startup_error = self.dest_error
        self.checked = True
        self.pipeline.store_allowed.set()
        self.state = "running"
        self.notifier.ready(self.status_text())
        log.info(
            "offload started: %d files waiting, destination %s",
            len(self.pending),
            self.storage.describe(),
            extra=fields(destination=self.storage.describe(), backlog_files=len(self.pending)),
        )
        next_status = last_status = 0.0
        next_watchdog = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            self._check_done()
            self._collect()
            for name in self.watcher.take_hints():
                self._notice(name)
            if now >= next_rescan:
                self.rescan()
                next_rescan = now + self.oc.rescan_seconds
            self._dispatch(now)
            if now >= next_status or (self.dirty and now >= last_status + 1.0):
                self._publish()
                last_status = now
                busy = self.pending or self.in_flight
                next_status = now + (STATUS_SECONDS if busy else IDLE_STATUS_SECONDS)
            if now >= next_watchdog:
                # A stuck upload withholds WATCHDOG=1 so systemd restarts us, but the
                # next check still moves on: otherwise the loop would spin until then.
                if not self._stuck(now):
                    self.notifier.watchdog()
                next_watchdog = now + self.watchdog_every
            wake_at = min(next_rescan, next_status, next_watchdog, self._next_due(now))
            if self.dirty:
                wake_at = min(wake_at, last_status + 1.0)
            timeout = wake_at - time.monotonic()
            self.wake.wait(max(0.05, timeout))
            self.wake.clear()
        return self.shutdown()

    def request_stop(self, signum: int | None = None) -> None:
        """Safe in a signal handler: sets flags only (logging there could
        deadlock on a lock the interrupted thread holds); shutdown() logs."""
        if signum is not None and self.stop_signal is None:
            self.stop_signal = signum
        self.stop.set()
        self.wake.set()

    def shutdown(self) -> int:
        if self.stop_signal is not None:
            log.info("received %s, stopping", signal.Signals(self.stop_signal).name)
        self.state = "stopping"
        self.notifier.stopping()
        self.watcher.stop()
        closed = threading.Event()

        def close() -> None:
            self.storage.close()  # cancels transfers; s3transfer aborts their multipart uploads
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.prober.shutdown(wait=True, cancel_futures=True)
            closed.set()

        threading.Thread(target=close, name="close", daemon=True).start()
        if not closed.wait(STOP_GRACE_SECONDS):
            # Nothing is lost: a file leaves the spool only after its object was
            # verified, and incomplete multipart uploads are aborted at the next start.
            stuck = [n for n, fl in self.in_flight.items() if not fl.future.done()]
            probing = self.probe is not None and not self.probe.done()
            # at least 1: whatever holds the closing thread would hold the exit too
            self.abandoned = max(1, len(stuck) + probing)
            log.warning(
                "the destination did not answer within %.0f s of the stop; stopping "
                "without waiting for %d request(s); their files stay in the spool",
                STOP_GRACE_SECONDS, self.abandoned,
                extra=fields(destination=self.storage.describe(), files=len(stuck)),
            )  # fmt: skip
        self._collect()
        self.state = "stopped"
        self._publish()
        self.metrics.close()
        log.info("offload stopped: %d files left in the spool", len(self.pending))
        return 0

    # -- bookkeeping ------------------------------------------------------

    def _notice(self, name: str, size: int | None = None) -> None:
        if name in self.pending or name in self.ignored:
            return
        if size is None:
            try:
                size = os.lstat(self.spool.ready / name).st_size
            except FileNotFoundError:
                return
        self.pending[name] = Entry(name, size)
        self.dirty = True
        self.wake.set()

    def rescan(self) -> None:
        try:
            found = scan(self.spool.ready)
        except OSError as e:
            self._note_error(f"cannot list {self.spool.ready}: {e.strerror}")
            return
        for name, size in found.items():
            self._notice(name, size)
        for name in list(self.pending):
            if name not in found and name not in self.in_flight:
                self._dropped(self.pending.pop(name))
        self.ignored &= set(found)

    def _dropped(self, entry: Entry) -> None:
        self.counters.dropped_by_capture += 1
        log.warning(
            "%s was dropped by capture (spool budget) before it could be uploaded",
            entry.name,
            extra=fields(file=entry.name, bytes=entry.size),
        )

    def _dest_ok(self, now: float) -> bool:
        return self.dest_error is None or now >= self.dest_down_until

    def _dispatch(self, now: float) -> None:
        limit = self.oc.concurrency
        if self.dest_error is not None:
            if self.probe is None and now >= self.dest_down_until and not self.in_flight:
                self._start_check()  # cheap probe; clears the error when it passes
            return  # the loop dispatches once the check has passed
        if len(self.in_flight) >= limit:
            return
        for name in sorted(self.pending, key=oldest_first):  # hand-off order
            if len(self.in_flight) >= limit:
                break
            entry = self.pending[name]
            if name in self.in_flight or entry.not_before > now:
                continue
            self._follow_backlog()
            entry.attempt += 1
            with self._progress_lock:
                self._progress[name] = now
            self.pipeline.compress_slots.reserve(name)  # its place in the queue: now
            fut = self.executor.submit(
                self.pipeline.process, name, self._progress_cb(name), not self.checked,
                self.level.level,
            )
            fut.add_done_callback(lambda _f: self.wake.set())
            self.in_flight[name] = InFlight(entry, fut, now, now)

    def _follow_backlog(self) -> None:
        changed = self.level.update(len(self.pending))
        if changed is not None:
            old, new = changed
            log.info(
                "compression level %d -> %d: %d files wait (fast above %d)",
                old, new, len(self.pending), self.oc.compression_fast_backlog,
                extra=fields(compression_level=new, backlog_files=len(self.pending)),
            )  # fmt: skip
            self.dirty = True

    def _progress_cb(self, name: str) -> Callable[[int], None]:
        def cb(_n: int) -> None:
            with self._progress_lock:
                self._progress[name] = time.monotonic()

        return cb

    def _stuck(self, now: float) -> bool:
        """Files in flight, none of which moved a byte for STALL_SECONDS (a file
        waiting for a compression slot is not stuck while the others progress)."""
        with self._progress_lock:
            times = [self._progress.get(n, now) for n in self.in_flight]
        return bool(times) and now - max(times) > STALL_SECONDS

    def _next_due(self, now: float) -> float:
        due = now + 3600.0
        if self.dest_error is not None and self.probe is None and not self.in_flight:
            due = min(due, self.dest_down_until)  # in flight: their end wakes the loop
        for name, e in self.pending.items():
            if name not in self.in_flight and e.not_before > now:
                due = min(due, e.not_before)
        return due

    def _collect(self) -> None:
        for name, fl in list(self.in_flight.items()):
            if not fl.future.done():
                continue
            del self.in_flight[name]
            with self._progress_lock:
                self._progress.pop(name, None)
            try:
                out = fl.future.result()
            except Exception as e:  # a bug: keep the file, back off, say so
                log.exception("unexpected error processing %s", name)
                out = Outcome(name, "failed", message=f"internal error: {e!r}")
            self._handle(fl.entry, out)

    def _handle(self, entry: Entry, out: Outcome) -> None:
        self.dirty = True
        name = entry.name
        now = time.monotonic()
        kind = out.kind
        self.metrics.collector.outcome(kind, out.seconds, entry.attempt)
        if kind == "cancelled":
            entry.attempt -= 1
            return
        if kind == "failed":
            entry.last_error = out.message
            if out.dest_error is not None:
                self._dest_failed(out.dest_error)
                entry.not_before = self.dest_down_until
            else:
                delay = Backoff(self.oc.retry_max_seconds).delay(entry.attempt)
                entry.not_before = now + delay
                self._note_error(out.message)
                log.warning(
                    "%s: attempt %d failed, retrying in %.0f s: %s",
                    name, entry.attempt, delay, out.message,
                    extra=fields(file=name, key=out.key or None, attempt=entry.attempt),
                )  # fmt: skip
            return
        self.pending.pop(name, None)
        if kind in ("uploaded", "exists"):
            self._uploaded(entry, out)
        elif kind == "quarantined":
            self.counters.quarantined += 1
            log.warning(
                "%s moved to quarantine: %s", name, out.message,
                extra=fields(file=name, reason=out.message),
            )  # fmt: skip
        elif kind == "dropped":
            self._dropped(entry)
        elif kind == "ignored":
            self.ignored.add(name)
            self._note_error(out.message)
            log.error("%s: %s", name, out.message, extra=fields(file=name))

    def _uploaded(self, entry: Entry, out: Outcome) -> None:
        c = self.counters
        dest = self.storage.describe()
        if out.kind == "exists":
            log.info(
                "%s was already stored as %s (earlier run); local copy removed",
                entry.name, out.key, extra=fields(file=entry.name, key=out.key, destination=dest),
            )  # fmt: skip
        else:
            c.uploaded_files += 1
            c.uploaded_bytes_in += out.bytes_in
            c.uploaded_bytes_out += out.bytes_out
            c.recent.append((time.monotonic(), out.bytes_in))
            log.info(
                "uploaded %s as %s: %d -> %d bytes in %.2f s",
                entry.name, out.key, out.bytes_in, out.bytes_out, out.seconds,
                extra=fields(
                    file=entry.name, key=out.key, bytes_in=out.bytes_in, bytes_out=out.bytes_out,
                    seconds=round(out.seconds, 3), attempt=entry.attempt, packets=out.packets,
                    compress_seconds=round(out.compress_seconds, 3),
                    destination=dest,
                ),
            )  # fmt: skip
        c.last_upload = {
            "file": entry.name,
            "key": out.key,
            "at": time.time(),
            "seconds": round(out.seconds, 3),
        }
        if out.removed_by_capture:
            log.info(
                "%s was removed from the spool by capture while it was being uploaded; "
                "the upload had read all of it",
                entry.name, extra=fields(file=entry.name),
            )  # fmt: skip

    def _dest_failed(self, e: StorageError, from_check: bool = False) -> None:
        now = time.monotonic()
        if self.dest_error is not None and not from_check:
            # a file that was already under way when the destination failed: the
            # error is known (and logged); keep the probe's clearer message
            return
        first = self.dest_error is None or (self.dest_error.code, self.dest_error.permanent) != (
            e.code,
            e.permanent,
        )
        delay = self.dest.cap if e.permanent else self.dest.next_delay()
        self.dest_down_until = now + delay
        self.dest_error = e
        self._note_error(str(e))
        # Reschedule everyone behind the destination's backoff.
        for name, entry in self.pending.items():
            if name not in self.in_flight:
                entry.not_before = max(entry.not_before, self.dest_down_until)
        if first:
            retry = (
                f"needs an operator; retrying every {self.oc.retry_max_seconds} s"
                if e.permanent
                else f"retrying with backoff up to {self.oc.retry_max_seconds} s"
            )
            log.error(
                "destination %s failed: %s; %d files kept in the spool, %s",
                self.storage.describe(), e, len(self.pending), retry,
                extra=fields(destination=self.storage.describe(), error_code=e.code),
            )  # fmt: skip

    def _note_error(self, msg: str) -> None:
        self.last_error = msg
        self.dirty = True

    # -- status ------------------------------------------------------------

    def backlog(self) -> tuple[int, int]:
        return len(self.pending), sum(e.size for e in self.pending.values())

    def rate(self) -> float:
        now = time.monotonic()
        recent = self.counters.recent
        while recent and now - recent[0][0] > RATE_WINDOW:
            recent.popleft()
        span = max(1.0, min(RATE_WINDOW, now - self.started_at))
        return sum(b for _t, b in recent) / span / 1e6

    def status_text(self) -> str:
        files, nbytes = self.backlog()
        text = f"backlog {files} files ({nbytes / 1e6:.1f} MB), {self.rate():.1f} MB/s"
        if self.dest_error is not None:
            text += f", destination down: {self.dest_error.code or self.dest_error}"
        elif self.last_error:
            text += f", last error: {self.last_error[:200]}"
        return text

    def _publish(self) -> None:
        self.dirty = False
        files, nbytes = self.backlog()
        c = self.counters
        self.notifier.status(self.status_text())
        data = {
            "state": self.state if self.dest_error is None else "destination-down",
            "destination": self.storage.describe(),
            "backlog_files": files,
            "backlog_bytes": nbytes,
            "in_flight": sorted(self.in_flight),
            "uploaded_files": c.uploaded_files,
            "uploaded_bytes_in": c.uploaded_bytes_in,
            "uploaded_bytes_out": c.uploaded_bytes_out,
            "last_upload": c.last_upload,
            "last_error": self.last_error,
            "rate_mb_s": round(self.rate(), 3),
            "compression_level": self.level.level,
            "quarantined": c.quarantined,
            "dropped_by_capture": c.dropped_by_capture,
        }
        self._retry_pid()
        self.metrics.publish(data)
        try:
            write_state(self.spool.state / "offload.json", data)  # removes its temp file
        except OSError as e:
            if not self._state_write_failed:  # once per failure streak, not every 5 s
                log.warning("cannot write the state file (retrying): %s", e.strerror)
            self._state_write_failed = True
        else:
            if self._state_write_failed:
                log.info("state file written again")
            self._state_write_failed = False


def run(config_path: str) -> int:
    cfg = load_config(config_path)
    setup_logging(cfg.log.level, "rollcap-offload")
    host = local_hostname(cfg.capture.hostname)  # a policy may scope it to its own keys
    service = OffloadService(cfg, DeferredStorage(cfg.offload, host), Notifier())

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        service.request_stop(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with contextlib.suppress(AttributeError):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # no reload: restart to apply config
    code = service.run()
    if service.abandoned:
        # Worker threads stuck in a socket read would hold the interpreter's
        # exit (it joins them) for botocore's read timeout; nothing is left to save.
        logging.shutdown()
        os._exit(code)
    return code
