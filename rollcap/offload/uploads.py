"""A file's way from ready/ to the destination, as the main thread runs it:
noticed (watcher hint or rescan) and queued, started on a worker oldest first
while the destination is up, at the pace capture allows, and what each
outcome means for the file, the queue and the destination.

The parts it drives have their own modules: workqueue (what waits, in
flight, retry times), pipeline (one file, in a worker), destination (health,
backoff, the check thread), level (the compression level by backlog) and
yielding (pausing compression while capture drops). Built once by the
service; nothing here waits on the network.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

from rollcap.config.schema import RollcapConfig
from rollcap.dirtypages import read_dirty_level
from rollcap.journal import fields
from rollcap.offload.capturesignals import capture_drops
from rollcap.offload.destination import DestinationHealth
from rollcap.offload.discovery import scan
from rollcap.offload.keeps import Keeps
from rollcap.offload.level import AdaptiveLevel
from rollcap.offload.pipeline import Outcome, Pipeline
from rollcap.offload.report import StatusReport
from rollcap.offload.workqueue import Entry, WorkQueue
from rollcap.offload.yielding import Signals, Yielding
from rollcap.spool import Spool
from rollcap.spool.readyname import local_hostname
from rollcap.storage import StorageError

log = logging.getLogger("rollcap.offload")


class Uploads:
    def __init__(
        self,
        cfg: RollcapConfig,
        pipeline: Pipeline,
        executor: ThreadPoolExecutor,
        health: DestinationHealth,
        report: StatusReport,
        keeps: Keeps,
        wake: threading.Event,
    ) -> None:
        oc = cfg.offload
        self.cfg = cfg
        self.pipeline = pipeline
        self.executor = executor  # offload.concurrency workers
        self.health = health
        self.report = report
        self.keeps = keeps
        self.wake = wake
        self.queue = WorkQueue(Spool.at(cfg.spool.directory).ready, oc.retry_max_seconds)
        self.level = AdaptiveLevel(
            oc.compression, oc.compression_level, oc.compression_fast_backlog
        )
        self.yielding = Yielding(oc.yield_seconds, oc.yield_dirty_percent / 100)
        self.checked = False  # the destination was checked once (see start_storing())

    # -- the destination's checks ------------------------------------------

    def start_check(self) -> None:
        """Check the destination (in the check thread) for our host and every
        host named in ready/: their stale multipart uploads are ours to abort."""
        hosts = {local_hostname(self.cfg.capture.hostname)} | self.queue.hosts()
        self.health.start_check(hosts)

    def check_done(self) -> bool | None:
        """The result of a finished check (True: the destination works), None
        while there is none."""
        checked = self.health.check_result()
        if checked is None:
            return None
        if checked.error is not None:
            self.dest_failed(checked.error, from_check=True)
            return False
        if self.health.recovered():
            self.report.last_error = ""
            self.queue.release_all(time.monotonic())
        return True

    def hold_stores(self) -> None:
        """At start: files are compressed while the storage opens and is checked;
        nothing is stored before the check (it aborts stale uploads of ours)."""
        self.pipeline.store_allowed.clear()

    def start_storing(self) -> None:
        """The first check has finished: workers may store (or meet its error)."""
        self.pipeline.startup_error = self.health.error
        self.checked = True
        self.pipeline.store_allowed.set()

    def dest_failed(self, e: StorageError, from_check: bool = False) -> None:
        if self.health.failed(e, len(self.queue.pending), from_check):
            self.report.note_error(str(e))
            self.queue.defer_all(self.health.down_until)  # everyone waits for it

    # -- intake ------------------------------------------------------------

    def notice(self, name: str, size: int | None = None) -> None:
        if not self.keeps.wanted(name):
            return  # on demand: stays in the ring unless a keep holds it
        if self.queue.notice(name, size):
            self.report.dirty = True
            self.wake.set()

    def rescan(self) -> None:
        try:
            found = scan(self.queue.ready)
        except OSError as e:
            self.report.note_error(f"cannot list {self.queue.ready}: {e.strerror}")
            return
        found = {n: size for n, size in found.items() if self.keeps.wanted(n)}
        for name, size in found.items():
            self.notice(name, size)
        for entry in self.queue.vanished(found):
            self._dropped(entry)

    def _dropped(self, entry: Entry) -> None:
        self.report.counters.dropped_by_capture += 1
        log.warning(
            "%s was dropped by capture (spool budget) before it could be uploaded",
            entry.name,
            extra=fields(file=entry.name, bytes=entry.size),
        )

    # -- workers -----------------------------------------------------------

    def dispatch(self, now: float) -> None:
        limit = self.cfg.offload.concurrency
        q = self.queue
        if self.health.down:
            if self.health.probe_due(now) and not q.in_flight:
                self.start_check()  # cheap probe; clears the error when it passes
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

    def next_due(self, now: float) -> float:
        due = now + 3600.0
        h = self.health
        if h.down and h.probe is None and not self.queue.in_flight:
            due = min(due, h.down_until)  # in flight: their end wakes the loop
        return self.queue.next_due(now, due)

    # -- outcomes ----------------------------------------------------------

    def collect(self) -> None:
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
                self.dest_failed(out.dest_error)
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
                extra=fields(file=name, destination=self.health.storage.describe()),
            )  # fmt: skip
        elif kind == "ignored":
            self.queue.ignore(name)
            self.report.note_error(out.message)
            log.error("%s: %s", name, out.message, extra=fields(file=name))

    def _uploaded(self, entry: Entry, out: Outcome) -> None:
        # the pipeline logged its one line ("uploaded X as KEY: ..."), before the delete
        self.keeps.stored(out.keep_id, out.key)
        self.report.stored(
            entry.name, out.key, out.seconds, out.bytes_in, out.bytes_out, out.kind == "uploaded"
        )
        if out.removed_by_capture:
            log.info(
                "%s was removed from the spool by capture while it was being uploaded; "
                "the upload had read all of it",
                entry.name, extra=fields(file=entry.name),
            )  # fmt: skip

    # -- pace --------------------------------------------------------------

    def yield_check(self, now: float) -> None:
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
