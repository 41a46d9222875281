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

The loop's parts live in their own modules: workqueue (what waits, in flight,
retry times, progress), destination (health, backoff, the check thread),
report (counters, STATUS=, offload.json, metrics) and lock (one per spool).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from types import FrameType

from rollcap.config import load_config
from rollcap.config.schema import RollcapConfig
from rollcap.dirtypages import read_dirty_level
from rollcap.errors import RollcapError
from rollcap.journal import fields, setup_logging
from rollcap.keep.listener import KeepListener, ListenerStats
from rollcap.keep.poller import FleetPoller
from rollcap.keep.request import KeepRequest, Submit
from rollcap.keep.shipping import REFRESH_SECONDS, Shipping, write_record
from rollcap.keep.store import ensure_dir, submitter_for
from rollcap.keep.stored import stored_submitter
from rollcap.metrics import nodeexporter
from rollcap.metrics.exporter import offload_exporter
from rollcap.notify import Notifier
from rollcap.offload.capturesignals import capture_drops
from rollcap.offload.compress import clean_tmp
from rollcap.offload.deferred import DeferredStorage
from rollcap.offload.destination import DestinationHealth
from rollcap.offload.discovery import ReadyWatcher, scan
from rollcap.offload.level import AdaptiveLevel
from rollcap.offload.lock import SpoolLock
from rollcap.offload.pipeline import Outcome, Pipeline
from rollcap.offload.report import StatusReport
from rollcap.offload.vet import expected_owners
from rollcap.offload.workqueue import Entry, WorkQueue
from rollcap.offload.yielding import Signals, Yielding
from rollcap.spool import Spool
from rollcap.spool.readyname import local_hostname
from rollcap.storage import Storage, StorageError
from rollcap.storage.base import key_prefix_for

log = logging.getLogger("rollcap.offload")

STATUS_SECONDS = 5.0  # STATUS= and the state file while busy
IDLE_STATUS_SECONDS = 30.0  # ... and while idle (status calls a state stale after 90 s)
# How long a stop waits for transfers to cancel; a server that stopped answering
# would hold them for botocore's read timeout. Below TimeoutStopSec=60.
STOP_GRACE_SECONDS = 20.0
YIELD_EVERY = 1.0  # how often the back-off looks at capture and the page cache
RECORD_RETRY_SECONDS = 30.0  # a keep record the destination refused: tried again after


class OffloadService:
    def __init__(
        self, cfg: RollcapConfig, storage: Storage, notifier: Notifier, submit: Submit | None = None
    ) -> None:
        self.cfg = cfg
        oc = cfg.offload
        self.spool = Spool.at(cfg.spool.directory)
        self.storage = storage
        self.notifier = notifier
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.lock = SpoolLock(self.spool.state / "offload.lock", self.spool.root, self.stop)
        self.queue = WorkQueue(self.spool.ready, oc.retry_max_seconds)
        self.health = DestinationHealth(storage, oc.key_template, oc.retry_max_seconds, self.wake)
        self.report = StatusReport(self.spool.state / "offload.json", offload_exporter(cfg))
        self.pipeline = Pipeline(
            cfg, self.spool, storage, expected_owners(cfg.capture.user), self.stop
        )
        self.level = AdaptiveLevel(
            oc.compression, oc.compression_level, oc.compression_fast_backlog
        )
        self.executor = ThreadPoolExecutor(oc.concurrency, thread_name_prefix="offload")
        self.yielding = Yielding(oc.yield_seconds, oc.yield_dirty_percent / 100)
        self.watcher = ReadyWatcher(self.spool.ready, self.wake)
        # keeps: what on-demand mode ships, and the keep each upload is for
        self.shipping = Shipping(self.spool.root, oc.mode == "on-demand", cfg.capture.interfaces)
        self.pipeline.keep_of = self.shipping.keep_of
        self._releasing: set[str] = set()  # keeps whose record is being written
        self._record_retry: dict[str, float] = {}  # keep id -> monotonic time to retry
        self.stop_signal: int | None = None  # what asked for the stop, logged by shutdown()
        self.abandoned = 0  # threads still stuck in the network when shutdown gave up
        wd = os.environ.get("WATCHDOG_USEC", "")
        # no WATCHDOG_USEC: nobody listens, do not wake up for it
        self.watchdog_every = int(wd) / 2e6 if wd.isdigit() and int(wd) else 3600.0
        self.checked = False  # the destination was checked once (see run())
        # keeps over HTTP (alerts, scripts): a thread of this daemon, its own sockets
        self.listener: KeepListener | None = None
        if cfg.listener.enabled:
            stats = ListenerStats()
            self.report.metrics.add(stats)
            self.listener = KeepListener(cfg.listener, submit or self._submitter(), stats)
        self.fleet: FleetPoller | None = None  # fleet keeps (keep/poller.py), own thread

    # -- start -------------------------------------------------------------

    def prepare(self) -> None:
        for d in (self.spool.ready, self.spool.quarantine, self.spool.tmp, self.spool.state):
            try:
                d.mkdir(mode=0o770, parents=True, exist_ok=True)
            except OSError as e:
                raise RollcapError(f"spool directory {d}: {e.strerror}") from None
        self.lock.acquire()
        # ready/'s owner: the packaged capture user (rollcap-capture)
        self.pipeline.owners |= expected_owners(self.cfg.capture.user, self.pipeline.ready)
        for name in clean_tmp(self.spool.tmp):
            log.info("removed stale temp file %s", name, extra=fields(file=name))
        self.watcher.start()  # before the scan: nothing can fall between the two

    def _start_check(self) -> None:
        """Check the destination (in the check thread) for our host and every
        host named in ready/: their stale multipart uploads are ours to abort."""
        hosts = {local_hostname(self.cfg.capture.hostname)} | self.queue.hosts()
        self.health.start_check(hosts)

    def _check_done(self) -> bool | None:
        """The result of a finished check (True: the destination works), None
        while there is none."""
        checked = self.health.check_result()
        if checked is None:
            return None
        if checked.error is not None:
            self._dest_failed(checked.error, from_check=True)
            return False
        if self.health.recovered():
            self.report.last_error = ""
            self.queue.release_all(time.monotonic())
        return True

    # -- the loop ----------------------------------------------------------

    def run(self) -> int:
        self.prepare()
        self.report.metrics.start()  # before READY=1: the unit's ExecStartPost= links it
        if self.listener is not None:
            self.listener.start()  # keeps are pins in the spool: no need to wait for the check
        self.rescan()
        next_rescan = time.monotonic() + self.cfg.offload.rescan_seconds
        # Compress the first files while the storage opens and is checked;
        # nothing is stored before the check (it aborts stale uploads of ours).
        self.pipeline.store_allowed.clear()
        self._yield_check(time.monotonic())  # before the first compression starts
        self._dispatch(time.monotonic())
        self._start_check()
        while self._check_done() is None:
            if self.stop.wait(0.1):  # stopped before the destination ever answered
                return self.shutdown()
        self.pipeline.startup_error = self.health.error
        self.checked = True
        self.pipeline.store_allowed.set()
        self._start_poller()
        self.report.state = "running"
        self.notifier.ready(self.status_text())
        waiting = len(self.queue.pending)
        log.info(
            "offload started: %d files waiting, destination %s",
            waiting, self.storage.describe(),
            extra=fields(destination=self.storage.describe(), backlog_files=waiting),
        )  # fmt: skip
        next_status = last_status = 0.0
        next_watchdog = next_yield = next_keeps = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= next_keeps:
                self._keeps()
                next_keeps = now + REFRESH_SECONDS
            if now >= next_yield:
                self._yield_check(now)
                next_yield = now + YIELD_EVERY
            self._check_done()
            self._collect()
            for name in self.watcher.take_hints():
                self._notice(name)
            if now >= next_rescan:
                self.rescan()
                next_rescan = now + self.cfg.offload.rescan_seconds
            self._dispatch(now)
            if now >= next_status or (self.report.dirty and now >= last_status + 1.0):
                self._publish()
                last_status = now
                busy = self.queue.pending or self.queue.in_flight
                next_status = now + (STATUS_SECONDS if busy else IDLE_STATUS_SECONDS)
            if now >= next_watchdog:
                # A stuck upload withholds WATCHDOG=1 so systemd restarts us, but the
                # next check still moves on: otherwise the loop would spin until then.
                if not self.queue.stuck(now):
                    self.notifier.watchdog()
                next_watchdog = now + self.watchdog_every
            wake_at = min(next_rescan, next_status, next_watchdog, next_yield, next_keeps,
                          self._next_due(now))  # fmt: skip
            if self.report.dirty:
                wake_at = min(wake_at, last_status + 1.0)
            timeout = wake_at - time.monotonic()
            self.wake.wait(max(0.05, timeout))
            self.wake.clear()
        return self.shutdown()

    def _submitter(self) -> Submit:
        """The ring's pins, as a local `rollcap keep` files them. Continuous:
        the answer says what of the window is stored or on its way."""
        try:
            ensure_dir(self.spool.root, self.cfg.spool.group)
        except OSError as e:  # each keep is then refused, naming the directory
            log.warning("cannot make the pins directory for keeps: %s", e)
        pin = submitter_for(self.cfg)
        if self.cfg.offload.mode == "on-demand":
            return pin
        host = local_hostname(self.cfg.capture.hostname)
        return stored_submitter(self.storage, key_prefix_for(self.cfg.offload), host,
                                self.spool.ready, pin)  # fmt: skip

    def _start_poller(self) -> None:
        """Fleet keep requests, in their own thread: a slow or hostile bucket
        never holds the loop, and a request never touches its bookkeeping."""
        oc = self.cfg.offload
        if not oc.keep_poll_seconds:
            return
        self.fleet = FleetPoller(
            self.storage, key_prefix_for(oc), local_hostname(self.cfg.capture.hostname),
            self._submitter(), self.spool.state, float(oc.keep_poll_seconds), self.stop,
        )  # fmt: skip
        threading.Thread(target=self.fleet.run, name="keep-poll", daemon=True).start()

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
        self.report.state = "stopping"
        self.notifier.stopping()
        if self.listener is not None:
            self.listener.close()
        self.watcher.stop()
        closed = threading.Event()

        def close() -> None:
            self.storage.close()  # cancels transfers; s3transfer aborts their multipart uploads
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.health.shutdown()
            closed.set()

        threading.Thread(target=close, name="close", daemon=True).start()
        if not closed.wait(STOP_GRACE_SECONDS):
            # Nothing is lost: a file leaves the spool only after its object was
            # verified, and incomplete multipart uploads are aborted at the next start.
            stuck = self.queue.running()
            # at least 1: whatever holds the closing thread would hold the exit too
            self.abandoned = max(1, len(stuck) + self.health.probing)
            log.warning(
                "the destination did not answer within %.0f s of the stop; stopping "
                "without waiting for %d request(s); their files stay in the spool",
                STOP_GRACE_SECONDS, self.abandoned,
                extra=fields(destination=self.storage.describe(), files=len(stuck)),
            )  # fmt: skip
        self._collect()
        self.report.state = "stopped"
        self._publish()
        self.report.metrics.close()
        log.info("offload stopped: %d files left in the spool", len(self.queue.pending))
        return 0

    # -- bookkeeping ------------------------------------------------------

    def _keeps(self) -> None:
        """Look at the pins: newly held files are queued (on demand); a done keep
        gets its record in the bucket, then its pin is released (in a worker:
        the main thread never waits on the network)."""
        if self.shipping.refresh():
            self.rescan()
        self._releasing &= {k.id for k in self.shipping.keeps}
        now = time.monotonic()
        if not self.checked or self.health.down:
            return
        for k in self.shipping.done(self.queue.in_flight):
            if k.id in self._releasing or self._record_retry.get(k.id, 0.0) > now:
                continue
            self._releasing.add(k.id)
            fut = self.executor.submit(self._finish_keep, k)
            fut.add_done_callback(functools.partial(self._keep_finished, k.id))

    def _keep_finished(self, keep_id: str, fut: Future[None]) -> None:
        """A release that raised what _finish_keep does not expect (a bug): its
        traceback in the log, never lost in the future; the id is free again."""
        e = fut.exception()
        if e is not None:
            self._record_retry[keep_id] = time.monotonic() + RECORD_RETRY_SECONDS
            self._releasing.discard(keep_id)
            log.error("keep %s: releasing it failed", keep_id, exc_info=e,
                      extra=fields(keep_id=keep_id))  # fmt: skip
        self.wake.set()

    def _finish_keep(self, k: KeepRequest) -> None:
        record = ""
        if self.storage.manifests:
            host = local_hostname(self.cfg.capture.hostname)
            try:
                record = write_record(self.storage, self.storage.key_prefix, host, k,
                                      self.shipping.shipped(k.id))  # fmt: skip
            except (StorageError, OSError, ValueError, OverflowError) as e:
                # the destination, or a window no manifest slot names
                log.warning("keep %s: cannot write its record, retrying in %.0f s: %s",
                            k.id, RECORD_RETRY_SECONDS, e, extra=fields(keep_id=k.id))  # fmt: skip
                self._record_retry[k.id] = time.monotonic() + RECORD_RETRY_SECONDS
                self._releasing.discard(k.id)
                return
        self.shipping.release(k, self.storage.describe(), record)

    def _notice(self, name: str, size: int | None = None) -> None:
        if not self.shipping.wanted(name):
            return  # on demand: stays in the ring unless a keep holds it
        if self.queue.notice(name, size):
            self.report.dirty = True
            self.wake.set()

    def rescan(self) -> None:
        try:
            found = scan(self.spool.ready)
        except OSError as e:
            self.report.note_error(f"cannot list {self.spool.ready}: {e.strerror}")
            return
        found = {n: size for n, size in found.items() if self.shipping.wanted(n)}
        for name, size in found.items():
            self._notice(name, size)
        for entry in self.queue.vanished(found):
            self._dropped(entry)

    def _dropped(self, entry: Entry) -> None:
        self.report.counters.dropped_by_capture += 1
        log.warning(
            "%s was dropped by capture (spool budget) before it could be uploaded",
            entry.name,
            extra=fields(file=entry.name, bytes=entry.size),
        )

    def _dispatch(self, now: float) -> None:
        limit = self.cfg.offload.concurrency
        q = self.queue
        if self.health.down:
            if self.health.probe_due(now) and not q.in_flight:
                self._start_check()  # cheap probe; clears the error when it passes
            return  # the loop dispatches once the check has passed
        if len(q.in_flight) >= limit:
            return
        for entry in q.due(now):
            if len(q.in_flight) >= limit:
                break
            self._follow_backlog()
            q.start(entry, now, partial(self._submit, entry.name))

    def _submit(self, name: str) -> Future[Outcome]:
        self.pipeline.compress_slots.reserve(name)  # its place in the queue: now
        fut = self.executor.submit(
            self.pipeline.process, name, self.queue.progress_cb(name), not self.checked,
            self.level.level, self.queue.pending[name].attempt,
        )  # fmt: skip
        fut.add_done_callback(lambda _f: self.wake.set())
        return fut

    def _follow_backlog(self) -> None:
        backlog = len(self.queue.pending)
        changed = self.level.update(backlog)
        if changed is not None:
            old, new = changed
            log.info(
                "compression level %d -> %d: %d files wait (fast above %d)",
                old, new, backlog, self.cfg.offload.compression_fast_backlog,
                extra=fields(compression_level=new, backlog_files=backlog),
            )  # fmt: skip
            self.report.dirty = True

    def _next_due(self, now: float) -> float:
        due = now + 3600.0
        h = self.health
        if h.down and h.probe is None and not self.queue.in_flight:
            due = min(due, h.down_until)  # in flight: their end wakes the loop
        return self.queue.next_due(now, due)

    def _collect(self) -> None:
        for entry, future in self.queue.finished():
            try:
                out = future.result()
            except Exception as e:  # a bug: keep the file, back off, say so
                log.exception("unexpected error processing %s", entry.name)
                out = Outcome(entry.name, "failed", message=f"internal error: {e!r}")
            self._handle(entry, out)

    def _handle(self, entry: Entry, out: Outcome) -> None:
        self.report.dirty = True
        name = entry.name
        now = time.monotonic()
        kind = out.kind
        self.report.outcome(kind, out.seconds, entry.attempt)
        if kind == "cancelled":
            entry.attempt -= 1
            return
        if kind == "failed":
            entry.last_error = out.message
            if out.dest_error is not None:
                self._dest_failed(out.dest_error)
                entry.not_before = self.health.down_until
            else:
                delay = self.queue.retry_later(entry, now)
                self.report.note_error(out.message)
                log.warning(
                    "%s: attempt %d failed, retrying in %.0f s: %s",
                    name, entry.attempt, delay, out.message,
                    extra=fields(file=name, key=out.key or None, attempt=entry.attempt),
                )  # fmt: skip
            return
        self.queue.done(name)
        if kind in ("uploaded", "exists"):
            self._uploaded(entry, out)
        elif kind == "quarantined":
            self.report.counters.quarantined += 1
            log.warning(
                "%s moved to quarantine: %s", name, out.message,
                extra=fields(file=name, reason=out.message),
            )  # fmt: skip
        elif kind == "dropped":
            self._dropped(entry)
        elif kind == "covered":
            log.info(
                "filed %s as coverage (no packets: a manifest entry, no object)", name,
                extra=fields(file=name, destination=self.storage.describe()),
            )  # fmt: skip
        elif kind == "ignored":
            self.queue.ignore(name)
            self.report.note_error(out.message)
            log.error("%s: %s", name, out.message, extra=fields(file=name))

    def _uploaded(self, entry: Entry, out: Outcome) -> None:
        # the pipeline logged its one line ("uploaded X as KEY: ..."), before the delete
        self.shipping.stored(out.keep_id, out.key)
        self.report.stored(
            entry.name, out.key, out.seconds, out.bytes_in, out.bytes_out, out.kind == "uploaded"
        )
        if out.removed_by_capture:
            log.info(
                "%s was removed from the spool by capture while it was being uploaded; "
                "the upload had read all of it",
                entry.name, extra=fields(file=entry.name),
            )  # fmt: skip

    def _yield_check(self, now: float) -> None:
        """Capture first: pause or resume starting compressions (yielding's rule).
        Logged at each change only; a pause holds for yield_seconds at least and
        is capped, so the journal gets few lines."""
        y = self.yielding
        drops = capture_drops(self.cfg) if y.hold or y.dirty_high else None
        # the page cache matters to a capture running here (its textfile is fresh)
        level = read_dirty_level() if y.dirty_high and drops is not None else None
        reason, before = y.update(Signals(now, drops, level.ratio if level else None))
        if reason:
            self.pipeline.compress_open.clear()
        else:
            self.pipeline.compress_open.set()
        if reason == before:
            return
        self.report.paused = reason
        self.report.dirty = True
        why = {
            "capture-drops": "capture reported new kernel drops",
            "dirty-pages": "dirty pages near the kernel's writer throttling"
            + (f" ({level.ratio:.0%} of its threshold)" if level else ""),
        }
        # INFO: a pause is the design working (capture warns of its drops itself)
        if reason and not before:
            log.info("compression paused: %s; files wait in ready/", why[reason],
                     extra=fields(reason=reason))  # fmt: skip
        elif reason:
            log.info("compression still paused: %s", why[reason], extra=fields(reason=reason))
        else:
            capped = " (paused too long: compressing for a while)" if y.capped(now) else ""
            log.info("compression resumed after %s%s", before, capped,
                     extra=fields(reason=before))  # fmt: skip

    def _dest_failed(self, e: StorageError, from_check: bool = False) -> None:
        if self.health.failed(e, len(self.queue.pending), from_check):
            self.report.note_error(str(e))
            self.queue.defer_all(self.health.down_until)  # everyone waits for it

    # -- status ------------------------------------------------------------

    def status_text(self) -> str:
        return self.report.text(self.queue.backlog(), self.health.error)

    def _publish(self) -> None:
        self.notifier.status(self.status_text())
        data = self.report.snapshot(
            destination=self.storage.describe(),
            backlog=self.queue.backlog(),
            in_flight=list(self.queue.in_flight),
            dest_error=self.health.error,
            compression_level=self.level.level,
            compression_paused=self.yielding.reason,
            paused_seconds=self.yielding.paused_seconds,
        )
        if self.fleet is not None:
            data["fleet_keep"] = self.fleet.snapshot()
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
    if service.abandoned:
        # Worker threads stuck in a socket read would hold the interpreter's
        # exit (it joins them) for botocore's read timeout; nothing is left to save.
        logging.shutdown()
        os._exit(code)
    return code
