"""`rollcap capture`: supervise tcpdump and hand its finished files to the spool.

One tcpdump per interface of capture.interface writes
``work/gNNNNNN-YYYYmmddTHHMMSS-IFACE.pcap[N]`` itself (-C, TZ=UTC0; -G and a
strftime name without rotate_align), as the daemon's own unprivileged user
(CAP_NET_RAW only); NNNNNN grows with every tcpdump start, of any interface.
This module is the wiring and what the interfaces share (spool, lock,
counters, hand-off, budget, status): one thread runs the loop below;
tcpdump's stderr readers and the watchdog observer only wake it through a
pipe, signal handlers only set flags. The jobs are elsewhere:

- rollcap.capture.interface  one interface: its tcpdump, restart delay, deadlines;
                             Interfaces, all of them
- rollcap.capture.cuts       cuts on request: `rollcap rotate`, a keep's window end
- rollcap.capture.rotation   the quiet-link deadline and rotate_align's boundaries
- rollcap.capture.tcpdump    one running tcpdump (stderr, counters, stop)
- rollcap.capture.handoff    hand-off of finished files, and their queue
- rollcap.capture.switching  make-before-break switch and its overlap strip
- rollcap.capture.stripworker  the thread that strips an overlap off the loop
- rollcap.capture.budget     the spool budget: policy, the keeper, its control of tcpdump
- rollcap.capture.fences     pause-capture's fences: names tcpdump cannot open
- rollcap.capture.counters   packet counters, drop causes, totals
- rollcap.capture.status     gathers, formats and publishes the status
- rollcap.capture.reload     a SIGHUP: plan, check, apply, verdict
- rollcap.capture.launcher   starts tcpdumps, saves their generation and pids
- rollcap.capture.lock       one capture per spool; what a crashed one left

Quiet link: tcpdump -G rotates only when a packet arrives. If the live file
is still the newest QUIET_GRACE seconds after its rotate deadline, a new
tcpdump is started first (make-before-break), both run for OVERLAP seconds
(tcpdump loses its last partially filled kernel block at SIGTERM, the new one
has those packets), then the old one is stopped and its file handed off;
packets captured by both are removed from the new file's head
(rollcap.capture.switching). So a file is handed off about rotate_seconds + 3 s
after it was opened, and never later than rotate_seconds + 5 s. `rollcap
rotate` (SIGUSR2) and a SIGHUP that changes nothing use the same switch to cut
the file now; a new interface means start, a removed one stop. With
rotate_align the same switch runs at every UTC multiple of rotate_seconds.
"""

from __future__ import annotations

import logging
import os
import selectors
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from watchdog.events import (
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from rollcap.capture import exclusion, lock, reload, status
from rollcap.capture.budget import BudgetControl, BudgetKeeper
from rollcap.capture.conditions import Conditions, RepeatLimiter
from rollcap.capture.counters import EventCounts, InterfaceCounts
from rollcap.capture.cuts import Cuts
from rollcap.capture.fences import Fences, remove_stale_fences
from rollcap.capture.handoff import Handoff, HandoffQueue, Persistent, stop_strips_seconds
from rollcap.capture.interface import InterfaceCapture, Interfaces
from rollcap.capture.launcher import Launcher
from rollcap.capture.stripworker import StripWorker
from rollcap.capture.switching import Overlaps
from rollcap.capture.tcpdump import Tcpdump
from rollcap.capture.wakeup import Wakeup
from rollcap.config import load_config
from rollcap.config.schema import RollcapConfig
from rollcap.journal import fields, setup_logging
from rollcap.metrics import nodeexporter
from rollcap.metrics.exporter import capture_exporter
from rollcap.notify import Notifier
from rollcap.spool import Spool, layout
from rollcap.spool.layout import CaptureDirs
from rollcap.spool.readyname import local_hostname
from rollcap.spool.workname import WorkName, list_work

log = logging.getLogger("rollcap.capture")

TICK = 1.0
REAP_POLL_SECONDS = 2.0  # poll this long for a tcpdump whose stderr closed to be reapable


class _WakeHandler(FileSystemEventHandler):
    def __init__(self, wake: Any) -> None:
        self._wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._wake()


@dataclass(frozen=True)
class CaptureSession:
    """The spool, opened and locked, and the parts that work on it: built once by
    Supervisor.open_spool, before anything in the spool is read or changed."""

    dirs: CaptureDirs
    lock_fd: int  # held for the process's life: one capture per spool
    launcher: Launcher
    handoff: Handoff
    overlaps: Overlaps
    queue: HandoffQueue
    keeper: BudgetKeeper
    fences: Fences  # pause-capture: where each tcpdump must stop
    budget: BudgetControl  # the keeper's answers carried out on the tcpdumps


class Supervisor:
    def __init__(self, config_path: str, cfg: RollcapConfig, filters: dict[str, str]) -> None:
        """Opens the spool (and takes its lock): filters are the effective ones,
        checked before (rollcap.capture.exclusion)."""
        self.config_path = config_path
        self.cfg = cfg
        self.spool = Spool.at(cfg.spool.directory)
        self.wakeup = Wakeup()
        uid, switch_user = layout.tcpdump_identity(cfg.capture.user)
        self.identity = layout.Identity(uid, switch_user, layout.resolve_group(cfg.spool.group))
        self.conditions = Conditions()  # the shared parts' (spool, reload); interfaces keep theirs
        self.errors = RepeatLimiter(log)
        self.n = EventCounts()
        self.status = status.StatusPublisher(
            self.spool.state_file("capture"), capture_exporter(cfg), Notifier(), self.errors
        )
        self.interfaces = Interfaces({
            name: InterfaceCapture(cfg.capture.for_interface(name), filters[name], self)
            for name in cfg.capture.interfaces
        })  # fmt: skip
        self.session = self.open_spool()
        self.cuts = Cuts(self.interfaces, self.session, self.n, self.conditions,
                         partial(self.publish, force=True))  # fmt: skip

    # ------------------------------------------------------------------ plumbing
    @property
    def dirs(self) -> CaptureDirs:
        return self.session.dirs

    @property
    def captures(self) -> dict[str, InterfaceCapture]:
        """capture.interface's captures, in its order."""
        return self.interfaces.captures

    @property
    def paused(self) -> bool:
        return self.session.keeper.paused

    @property
    def last_error(self) -> str:
        return self.conditions.latest()

    def wake(self) -> None:
        self.wakeup.wake()

    def work_files(self, generation: int) -> list[WorkName]:
        return [w for w, _n in list_work(self.dirs.work) if w.generation == generation]

    def work_since(self) -> dict[str, float]:
        """Per interface, when its oldest file still in work/ was opened (any
        generation: a finished file whose hand-off waits counts); an interface
        with none, the whole second before the listing (a file it opens later is
        named for then or after). The offload releases a keep only once every
        interface's value has passed the window's end (rollcap.keep.shipping)."""
        listed = float(int(time.time()))
        oldest: dict[str, float] = {}
        for w, _n in list_work(self.dirs.work):
            t = w.opened.timestamp()
            oldest[w.iface] = min(oldest.get(w.iface, t), t)
        return {name: oldest.get(name, listed) for name in self.captures}

    def wrote(self, generation: int) -> bool:
        return self.session.queue.wrote(generation)

    def fenced(self, generation: int, message: str) -> bool:
        return self.session.fences.reached(generation, message)

    def count_restart(self, iface: str) -> None:
        self.n.restarts += 1
        self.session.queue.by_iface.setdefault(iface, InterfaceCounts()).restarts += 1

    def procs(self) -> list[Tcpdump]:
        return self.interfaces.procs()

    # ------------------------------------------------------------------ tcpdump
    def spawn(self, ic: InterfaceCapture, opened: float | None, switch: str = "") -> Tcpdump:
        return self.session.launcher.spawn(ic, opened, self.identity.switch_user, switch)

    def track_pids(self) -> None:
        self.session.launcher.track()

    def start_capture(self) -> None:
        self.interfaces.start(self.paused, self.wakeup.stop)

    def stop_capture(self, drain: bool = True) -> None:
        """Stop every tcpdump (one drain wait for all, then each in turn)."""
        self.interfaces.stop(drain)

    def check_quiet(self) -> float | None:
        """Cut quiet (or aligned) live files that are due; seconds until the next."""
        return self.interfaces.check_quiet()

    # ------------------------------------------------------------------ hand-off
    def process_work(self, block: bool = False, until: float | None = None) -> None:
        """Hand off every finished file, oldest first, one generation at a time.
        A file of a switch's overlap is stripped on the strip worker; block:
        wait for it (until then: a stop), else it is finished on a later pass."""
        live = {p.generation for p in self.procs() if p.alive()}

        def after_each() -> None:
            for p in self.procs():
                p.request_counters()
            self.enforce_budget()

        self.session.queue.process(live, self.enforce_budget, after_each, block, until)

    @property
    def last_handoff(self) -> dict[str, Any] | None:
        return self.session.queue.last_handoff

    # ------------------------------------------------------------------ budget
    def enforce_budget(self) -> None:
        self.session.budget.enforce(self.cfg)

    def during_switch(self, live: set[int]) -> bool:
        return self.session.budget.during_switch(self.cfg, live)

    def after_switch(self) -> None:
        self.session.budget.after_switch()

    def _fence_new(self, gen: int, argv: list[str]) -> None:
        self.session.budget.fence_new(self.cfg, gen, argv)

    # ------------------------------------------------------------------ stats & state
    def snapshot(self) -> status.Snapshot:
        return status.snapshot(self)

    def state(self) -> dict[str, Any]:
        return status.state_dict(self.snapshot())

    def status_line(self) -> str:
        return status.status_line(self.snapshot())

    def publish(self, force: bool = False) -> None:
        self.status.publish(self.snapshot, force)

    # ------------------------------------------------------------------ reload
    def reload(self) -> None:
        reload.reload(self.config_path, self)

    # ------------------------------------------------------------------ start/stop
    def stop_orphans(self) -> None:
        """Stop tcpdumps a crashed supervisor left running; they write into our work/,
        so they must end first. Only ever called holding the spool's lock."""
        self.session.launcher.stop_orphans()

    def load_switches(self) -> None:
        """Overlaps a crashed supervisor left unfinished (see rollcap.capture.switching)."""
        self.session.overlaps.load()

    def open_spool(self) -> CaptureSession:
        """Make the spool's directories right, open them, load the counters."""
        layout.prepare(self.spool, self.identity.uid, self.identity.gid)
        dirs = CaptureDirs.open(self.spool)
        # before anything in the spool is read or changed: a second capture stops here
        lock_fd = lock.take(dirs.state, self.spool.root)
        persistent = Persistent.load(dirs)
        launcher = Launcher(
            persistent, self.spool.work, self.procs, self.wake, self.errors,
            self.conditions, self._fence_new,
        )  # fmt: skip
        handoff = Handoff(
            dirs,
            persistent,
            local_hostname(self.cfg.capture.hostname),
            self.identity.gid,
            self.identity.uid,
            marker_every=self.cfg.capture.rotate_seconds,
        )
        overlaps = Overlaps(dirs.work)
        queue = HandoffQueue(
            handoff, overlaps, self.n, self.errors, self.conditions, StripWorker(self.wake)
        )  # fmt: skip
        keeper = BudgetKeeper(self.spool, dirs, self.n)
        fences = Fences(dirs.work)
        control = BudgetControl(self.spool, dirs.work, keeper, fences, queue, self.interfaces,
                                self.conditions)  # fmt: skip
        return CaptureSession(dirs, lock_fd, launcher, handoff, overlaps, queue, keeper, fences,
                              control)  # fmt: skip

    def run(self) -> int:
        self.wakeup.install_signals()
        observer = Observer()
        observer.schedule(
            _WakeHandler(self.wake),
            str(self.spool.work),
            event_filter=[FileCreatedEvent, FileMovedEvent],
        )
        observer.start()
        try:
            self.stop_orphans()
            remove_stale_fences(self.dirs.work)
            lock.remove_stale_temps(self.dirs.work)  # before any strip runs
            self.load_switches()
            # leftovers of dead generations (a stop or a crash left them): their
            # strips run on the worker while capture runs, a start waits for none
            self.process_work()
            self.enforce_budget()
            self.start_capture()
            self.publish(force=True)
            # the first textfile before READY=1: the unit's ExecStartPost= links it
            self.status.metrics.start()
            self.status.notifier.ready(self.status_line())
            self._loop()
            # no more wake-ups needed; stopping it first keeps its thread quiet
            observer.stop()
            observer.join(5)
            self.shutdown()
        finally:
            if observer.is_alive():
                observer.stop()
                observer.join(5)
            for p in self.procs():  # an exception escaped: never leave them behind
                if p.alive():
                    p.stop()
            self.status.metrics.close()  # the last values, e.g. rollcap_capture_up 0
        return 0

    def _loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.wakeup.read_fd, selectors.EVENT_READ)
        left: float | None = None
        while not self.wakeup.stop:
            sel.select(self.loop_timeout(left))
            self.wakeup.drain()
            if self.wakeup.stop:
                break
            if self.wakeup.reload:
                self.wakeup.reload = False
                self.reload()
            if self.wakeup.rotate:
                self.wakeup.rotate = False
                self.cuts.rotate("rotate requested")
            self.interfaces.check_exit()
            self.process_work()
            self.cuts.finish()
            left = self.check_quiet()
            for ic in self.captures.values():
                ic.tick()
            self.enforce_budget()
            self.cuts.for_keeps()
            self.start_capture()
            for ic in self.captures.values():
                ic.mark_capturing()
                if self.paused:
                    ic.state_name = "paused"
            self.publish()
            self.status.notifier.watchdog()

    def loop_timeout(self, quiet_left: float | None) -> float:
        """How long the loop may sleep: a tick, or less when something is due.
        A restart is due at next_start; a tcpdump whose stderr closed is exiting
        and is reaped a moment later (the EOF wake-up can come before that)."""
        timeout = TICK if quiet_left is None else max(0.05, min(TICK, quiet_left))
        now = time.monotonic()
        for ic in self.captures.values():
            p = ic.proc
            if p is None and ic.next_start > now:
                timeout = min(timeout, ic.next_start - now + 0.005)
            elif (
                p is not None
                and p.output_closed_at is not None
                # briefly: an exit stuck in the kernel (a hung NFS spool) gets ticks
                and now - p.output_closed_at < REAP_POLL_SECONDS
            ):
                timeout = min(timeout, 0.02)
        return timeout

    def shutdown(self) -> None:
        self.status.notifier.stopping()
        self.interfaces.set_states("stopping")
        self.publish(force=True)
        self.stop_capture(drain=True)
        # a strip not done by then is left, with what follows it, to the next start
        self.process_work(block=True, until=time.monotonic() + stop_strips_seconds())
        # a sidecar whose new generation has no file left (its only file was
        # empty: the killed old supervisor's tcpdump wrote nothing) is dead now
        lock.remove_stale_temps(self.dirs.work)
        self.enforce_budget()  # no tcpdump runs: removes every fence
        self.interfaces.set_states("stopped")
        self.publish(force=True)
        files, size = self.session.queue.left_in_work()
        log.info(
            "stopped: %d files handed off%s",
            self.n.handed_off_files,
            f"; {files} files ({size} bytes) left in work/ for the next start" if files else "",
            extra=fields(handed_off_files=self.n.handed_off_files, left_files=files or None),
        )


def run(config_path: str) -> int:
    cfg = load_config(config_path)
    setup_logging(cfg.log.level, "rollcap-capture")
    # no start while a rollcap user may write where root's collectors write
    nodeexporter.check_no_grants(cfg)
    # as the unit's UMask=: files others read get their mode explicitly
    os.umask(0o077)
    filters = exclusion.effective_filters(cfg)
    exclusion.validate(cfg, filters)
    return Supervisor(config_path, cfg, filters).run()
