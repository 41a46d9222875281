"""The offload's side of keeps, built once by the service: what on-demand mode
ships and the keep each upload is for (rollcap.keep.shipping), a done keep's
record in the bucket and its release, keeps over HTTP (rollcap.keep.listener)
and fleet keep requests (rollcap.keep.poller).

The main thread only looks at the pins (refresh, release_done); what waits on
the network runs elsewhere: a record is written in a worker, the listener and
the fleet poller in threads of their own.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Collection
from concurrent.futures import Executor, Future

from rollcap.config.schema import RollcapConfig
from rollcap.journal import fields
from rollcap.keep.listener import KeepListener, ListenerStats
from rollcap.keep.poller import FleetPoller
from rollcap.keep.request import KeepRequest, Submit
from rollcap.keep.shipping import Shipping, write_record
from rollcap.keep.store import ensure_dir, submitter_for
from rollcap.keep.stored import stored_submitter
from rollcap.metrics.exporter import Exporter
from rollcap.metrics.offload import OffloadCollector
from rollcap.spool import Spool
from rollcap.spool.readyname import local_hostname
from rollcap.storage import Storage, StorageError
from rollcap.storage.base import key_prefix_for

log = logging.getLogger("rollcap.offload")

RECORD_RETRY_SECONDS = 30.0  # a keep record the destination refused: tried again after


class Keeps:
    def __init__(
        self,
        cfg: RollcapConfig,
        storage: Storage,
        executor: Executor,
        wake: threading.Event,
        metrics: Exporter[OffloadCollector],
        submit: Submit | None = None,
    ) -> None:
        self.cfg = cfg
        self.spool = Spool.at(cfg.spool.directory)
        self.storage = storage
        self.executor = executor  # the offload's workers: a record is a request like an upload
        self.wake = wake
        self.shipping = Shipping(
            self.spool.root, cfg.offload.mode == "on-demand", cfg.capture.interfaces
        )
        self._releasing: set[str] = set()  # keeps whose record is being written
        self._record_retry: dict[str, float] = {}  # keep id -> monotonic time to retry
        # keeps over HTTP (alerts, scripts): a thread of this daemon, its own sockets
        self.listener: KeepListener | None = None
        if cfg.listener.enabled:
            stats = ListenerStats()
            metrics.add(stats)
            self.listener = KeepListener(cfg.listener, submit or self._submitter(), stats)
        self.fleet: FleetPoller | None = None  # fleet keeps (keep/poller.py), own thread

    # -- what the uploads ask --------------------------------------------------

    def wanted(self, name: str) -> bool:
        """On demand: only what a keep holds leaves ready/."""
        return self.shipping.wanted(name)

    def keep_of(self, name: str) -> KeepRequest | None:
        return self.shipping.keep_of(name)

    def stored(self, keep_id: str, key: str) -> None:
        self.shipping.stored(keep_id, key)

    # -- start and stop --------------------------------------------------------

    def start_listener(self) -> None:
        if self.listener is not None:
            self.listener.start()

    def start_poller(self, stop: threading.Event) -> None:
        """Fleet keep requests, in their own thread: a slow or hostile bucket
        never holds the loop, and a request never touches its bookkeeping."""
        oc = self.cfg.offload
        if not oc.keep_poll_seconds:
            return
        self.fleet = FleetPoller(
            self.storage, key_prefix_for(oc), local_hostname(self.cfg.capture.hostname),
            self._submitter(), self.spool.state, float(oc.keep_poll_seconds), stop,
        )  # fmt: skip
        threading.Thread(target=self.fleet.run, name="keep-poll", daemon=True).start()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()

    def snapshot(self) -> dict[str, object] | None:
        """The fleet poller's part of offload.json; None without one."""
        return self.fleet.snapshot() if self.fleet is not None else None

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

    # -- the pins, from the loop -----------------------------------------------

    def refresh(self) -> bool:
        """Read the pins again; True when what they hold changed (ready/ is then
        rescanned for the files now wanted)."""
        changed = self.shipping.refresh()
        self._releasing &= {k.id for k in self.shipping.keeps}
        return changed

    def release_done(self, in_flight: Collection[str], may_write: bool) -> None:
        """A done keep gets its record in the bucket, then its pin is released
        (in a worker: the main thread never waits on the network). may_write:
        the destination was checked and is not down."""
        now = time.monotonic()
        if not may_write:
            return
        for k in self.shipping.done(in_flight):
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
            # said first: once the id is free the loop (and a test) may go on
            log.error("keep %s: releasing it failed", keep_id, exc_info=e,
                      extra=fields(keep_id=keep_id))  # fmt: skip
            self._record_retry[keep_id] = time.monotonic() + RECORD_RETRY_SECONDS
            self._releasing.discard(keep_id)
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
