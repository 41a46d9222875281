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

This module is the wiring, the loop's timing and the start and stop; the
parts are built once here and live in their own modules: uploads (a file's
way from ready/ through the workers, and the destination's checks), keeps
(pins, keep records, the keep listener and fleet poller), destination
(health, backoff, the check thread), report (counters, STATUS=, offload.json,
metrics), discovery (ready/'s watcher) and lock (one per spool).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import FrameType

from rollcap.config import load_config
from rollcap.config.schema import RollcapConfig
from rollcap.errors import RollcapError
from rollcap.journal import fields, setup_logging
from rollcap.keep.request import Submit
from rollcap.keep.shipping import REFRESH_SECONDS
from rollcap.metrics import nodeexporter
from rollcap.metrics.exporter import offload_exporter
from rollcap.notify import Notifier
from rollcap.offload.compress import clean_tmp
from rollcap.offload.deferred import DeferredStorage
from rollcap.offload.destination import DestinationHealth
from rollcap.offload.discovery import ReadyWatcher
from rollcap.offload.keeps import Keeps
from rollcap.offload.lock import SpoolLock
from rollcap.offload.pipeline import Pipeline
from rollcap.offload.report import StatusReport
from rollcap.offload.uploads import Uploads
from rollcap.offload.vet import expected_owners
from rollcap.spool import Spool
from rollcap.spool.readyname import local_hostname
from rollcap.storage import Storage

log = logging.getLogger("rollcap.offload")

STATUS_SECONDS = 5.0  # STATUS= and the state file while busy
IDLE_STATUS_SECONDS = 30.0  # ... and while idle (status calls a state stale after 90 s)
# How long a stop waits for transfers to cancel; a server that stopped answering
# would hold them for botocore's read timeout. Below TimeoutStopSec=60.
STOP_GRACE_SECONDS = 20.0
YIELD_EVERY = 1.0  # how often the back-off looks at capture and the page cache


def watchdog_every() -> float:
    """Half of systemd's WatchdogSec=; no WATCHDOG_USEC: nobody listens, do not
    wake up for it."""
    wd = os.environ.get("WATCHDOG_USEC", "")
    return int(wd) / 2e6 if wd.isdigit() and int(wd) else 3600.0


class Stop(threading.Event):
    """The stop every thread of the daemon waits on, what asked for it (a signal
    handler only sets it; shutdown() logs it), and how many threads it left
    stuck in the network (then the process exits without joining them)."""

    def __init__(self) -> None:
        super().__init__()
        self.signum: int | None = None
        self.abandoned = 0


class OffloadService:
    def __init__(
        self, cfg: RollcapConfig, storage: Storage, notifier: Notifier, submit: Submit | None = None
    ) -> None:
        self.cfg = cfg
        oc = cfg.offload
        self.spool = Spool.at(cfg.spool.directory)
        self.storage = storage
        self.notifier = notifier
        self.stop = Stop()
        self.wake = threading.Event()
        self.lock = SpoolLock(self.spool.state / "offload.lock", self.spool.root, self.stop)
        self.health = DestinationHealth(storage, oc.key_template, oc.retry_max_seconds, self.wake)
        self.report = StatusReport(self.spool.state / "offload.json", offload_exporter(cfg))
        self.watcher = ReadyWatcher(self.spool.ready, self.wake)
        executor = ThreadPoolExecutor(oc.concurrency, thread_name_prefix="offload")
        self.keeps = Keeps(cfg, storage, executor, self.wake, self.report.metrics, submit)
        pipeline = Pipeline(cfg, self.spool, storage, expected_owners(cfg.capture.user), self.stop)
        pipeline.keep_of = self.keeps.keep_of
        self.uploads = Uploads(cfg, pipeline, executor, self.health, self.report, self.keeps,
                               self.wake)  # fmt: skip

    # -- start -------------------------------------------------------------

    def prepare(self) -> None:
        for d in (self.spool.ready, self.spool.quarantine, self.spool.tmp, self.spool.state):
            try:
                d.mkdir(mode=0o770, parents=True, exist_ok=True)
            except OSError as e:
                raise RollcapError(f"spool directory {d}: {e.strerror}") from None
        self.lock.acquire()
        # ready/'s owner: the packaged capture user (rollcap-capture)
        pipeline = self.uploads.pipeline
        pipeline.owners |= expected_owners(self.cfg.capture.user, pipeline.ready)
        for name in clean_tmp(self.spool.tmp):
            log.info("removed stale temp file %s", name, extra=fields(file=name))
        self.watcher.start()  # before the scan: nothing can fall between the two

    # -- the loop ----------------------------------------------------------

    def run(self) -> int:
        self.prepare()
        self.report.metrics.start()  # before READY=1: the unit's ExecStartPost= links it
        self.keeps.start_listener()  # keeps are pins in the spool: no need to wait for the check
        u = self.uploads
        u.rescan()
        next_rescan = time.monotonic() + self.cfg.offload.rescan_seconds
        # Compress the first files while the storage opens and is checked;
        # nothing is stored before the check (it aborts stale uploads of ours).
        u.hold_stores()
        u.yield_check(time.monotonic())  # before the first compression starts
        u.dispatch(time.monotonic())
        u.start_check()
        while u.check_done() is None:
            if self.stop.wait(0.1):  # stopped before the destination ever answered
                return self.shutdown()
        u.start_storing()
        self.keeps.start_poller(self.stop)
        self.report.state = "running"
        self.notifier.ready(self.status_text())
        waiting = len(u.queue.pending)
        log.info(
            "offload started: %d files waiting, destination %s",
            waiting, self.storage.describe(),
            extra=fields(destination=self.storage.describe(), backlog_files=waiting),
        )  # fmt: skip
        next_status = last_status = 0.0
        next_watchdog = next_yield = next_keeps = 0.0
        every = watchdog_every()
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= next_keeps:
                self._keeps()
                next_keeps = now + REFRESH_SECONDS
            if now >= next_yield:
                u.yield_check(now)
                next_yield = now + YIELD_EVERY
            u.check_done()
            u.collect()
            for name in self.watcher.take_hints():
                u.notice(name)
            if now >= next_rescan:
                u.rescan()
                next_rescan = now + self.cfg.offload.rescan_seconds
            u.dispatch(now)
            if now >= next_status or (self.report.dirty and now >= last_status + 1.0):
                self._publish()
                last_status = now
                busy = u.queue.pending or u.queue.in_flight
                next_status = now + (STATUS_SECONDS if busy else IDLE_STATUS_SECONDS)
            if now >= next_watchdog:
                # A stuck upload withholds WATCHDOG=1 so systemd restarts us, but the
                # next check still moves on: otherwise the loop would spin until then.
                if not u.queue.stuck(now):
                    self.notifier.watchdog()
                next_watchdog = now + every
            wake_at = min(next_rescan, next_status, next_watchdog, next_yield, next_keeps,
                          u.next_due(now))  # fmt: skip
            if self.report.dirty:
                wake_at = min(wake_at, last_status + 1.0)
            timeout = wake_at - time.monotonic()
            self.wake.wait(max(0.05, timeout))
            self.wake.clear()
        return self.shutdown()

    def _keeps(self) -> None:
        """Look at the pins: newly held files are queued (on demand); a done keep
        gets its record in the bucket, then its pin is released."""
        if self.keeps.refresh():
            self.uploads.rescan()
        may_write = self.uploads.checked and not self.health.down
        self.keeps.release_done(self.uploads.queue.in_flight, may_write)

    def request_stop(self, signum: int | None = None) -> None:
        """Safe in a signal handler: sets flags only (logging there could
        deadlock on a lock the interrupted thread holds); shutdown() logs."""
        if signum is not None and self.stop.signum is None:
            self.stop.signum = signum
        self.stop.set()
        self.wake.set()

    def shutdown(self) -> int:
        if self.stop.signum is not None:
            log.info("received %s, stopping", signal.Signals(self.stop.signum).name)
        self.report.state = "stopping"
        self.notifier.stopping()
        self.keeps.close()
        self.watcher.stop()
        closed = threading.Event()
        queue = self.uploads.queue

        def close() -> None:
            self.storage.close()  # cancels transfers; s3transfer aborts their multipart uploads
            self.uploads.executor.shutdown(wait=True, cancel_futures=True)
            self.health.shutdown()
            closed.set()

        threading.Thread(target=close, name="close", daemon=True).start()
        if not closed.wait(STOP_GRACE_SECONDS):
            # Nothing is lost: a file leaves the spool only after its object was
            # verified, and incomplete multipart uploads are aborted at the next start.
            stuck = queue.running()
            # at least 1: whatever holds the closing thread would hold the exit too
            self.stop.abandoned = max(1, len(stuck) + self.health.probing)
            log.warning(
                "the destination did not answer within %.0f s of the stop; stopping "
                "without waiting for %d request(s); their files stay in the spool",
                STOP_GRACE_SECONDS, self.stop.abandoned,
                extra=fields(destination=self.storage.describe(), files=len(stuck)),
            )  # fmt: skip
        self.uploads.collect()
        self.report.state = "stopped"
        self._publish()
        self.report.metrics.close()
        log.info("offload stopped: %d files left in the spool", len(queue.pending))
        return 0

    # -- status ------------------------------------------------------------

    def status_text(self) -> str:
        return self.report.text(self.uploads.queue.backlog(), self.health.error)

    def _publish(self) -> None:
        self.notifier.status(self.status_text())
        u = self.uploads
        data = self.report.snapshot(
            destination=self.storage.describe(),
            backlog=u.queue.backlog(),
            in_flight=list(u.queue.in_flight),
            dest_error=self.health.error,
            compression_level=u.level.level,
            compression_paused=u.yielding.reason,
            paused_seconds=u.yielding.paused_seconds,
        )
        fleet = self.keeps.snapshot()
        if fleet is not None:
            data["fleet_keep"] = fleet
        self.lock.retry_pid()
        self.report.publish(data)


def run(config_path: str) -> int:
    cfg = load_config(config_path)
    setup_logging(cfg.log.level, "rollcap-offload")
    # no start while a rollcap user may write where root's collectors write
    nodeexporter.check_no_grants(cfg)
    host = local_hostname(cfg.capture.hostname)  # a policy may scope it to its own keys
    service = OffloadService(cfg, DeferredStorage(cfg.offload, host), Notifier())

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        service.request_stop(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with contextlib.suppress(AttributeError):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # no reload: restart to apply config
    code = service.run()
    if service.stop.abandoned:
        # Worker threads stuck in a socket read would hold the interpreter's
        # exit (it joins them) for botocore's read timeout; nothing is left to save.
        logging.shutdown()
        os._exit(code)
    return code
