"""One interface's capture: its tcpdump, restart backoff, waiting for the device,
the quiet-link (or aligned) rotation deadline and its packet counters.

The supervisor (rollcap.capture.service) owns what the interfaces share: the
spool, the generation counter, the hand-off queue, the budget, the status.
It runs one InterfaceCapture per name in capture.interface, held together by
Interfaces (at the end); one that fails backs off on its own while the others
keep capturing.

restart_delay: how long to wait before restarting a tcpdump that died.

A tcpdump that proved it runs here (listened for a while) or that was killed
from outside after it listened is restarted at once: every moment of the gap
loses traffic. One that wrote packets but died by itself soon after is
restarted after the minimum delay every time. Only one that fails by itself
before or right after it listens (missing interface, device not up, crash
loop) backs off exponentially.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from rollcap.capture import rotation
from rollcap.capture.command import DeviceUnavailable, check_filter, interface_exists
from rollcap.capture.conditions import Condition, Conditions
from rollcap.capture.counters import Counters, DropStats
from rollcap.capture.rotation import QuietClock
from rollcap.capture.switching import LISTEN_TIMEOUT, Switched, make_before_break_many
from rollcap.capture.tcpdump import Tcpdump
from rollcap.config.schema import CaptureConfig
from rollcap.errors import ConfigError
from rollcap.journal import fields
from rollcap.spool.workname import WorkName

if TYPE_CHECKING:  # the supervisor builds the parts that use these types
    from rollcap.capture.service import CaptureSession

log = logging.getLogger("rollcap.capture")

RESTART_AT_ONCE = 0.2  # not 0: whatever kills every new tcpdump gets 5 a second at most
BACKOFF_MIN = 1.0
BACKOFF_MAX = 60.0
HEALTHY_LISTEN = 5.0  # seconds listening that prove a tcpdump can run here
# Deaths by these signals come from outside (an operator, the OOM killer), not
# from tcpdump failing: a tcpdump killed 0.5 s after it listened may not have
# flushed a packet to disk yet, but it was capturing.
KILLED = frozenset({-signal.SIGKILL, -signal.SIGTERM, -signal.SIGINT, -signal.SIGHUP})
ALIGNED = "aligned rotation"  # the routine switch on rotate_align's boundary: logged at debug


def restart_delay(
    backoff: float, listened: float | None, wrote: bool, returncode: int = 1
) -> tuple[float, float]:
    """(delay before this restart, backoff for the next failure).

    listened: seconds the dead tcpdump had been listening, None if it never did;
    wrote: whether it wrote at least one packet; returncode: Popen's (-N = signal N).
    """
    if listened is not None and (listened >= HEALTHY_LISTEN or returncode in KILLED):
        return RESTART_AT_ONCE, BACKOFF_MIN
    if listened is not None and wrote:
        backoff = BACKOFF_MIN
    return backoff, min(backoff * 2, BACKOFF_MAX)



DRAIN = 1.2  # wait before SIGTERM so the last kernel block reaches the file


class Shared(Protocol):
    """What an interface needs from the supervisor."""

    session: CaptureSession

    def spawn(self, ic: InterfaceCapture, opened: float | None, switch: str = "") -> Tcpdump: ...
    def track_pids(self) -> None: ...
    def process_work(self, block: bool = False) -> None: ...
    def wrote(self, generation: int) -> bool: ...
    def fenced(self, generation: int, message: str) -> bool: ...
    def work_files(self, generation: int) -> list[WorkName]: ...
    def count_restart(self, iface: str) -> None: ...
    def during_switch(self, live: set[int]) -> bool: ...
    def after_switch(self) -> None: ...


class InterfaceCapture:
    def __init__(self, cap: CaptureConfig, effective_filter: str, shared: Shared) -> None:
        assert isinstance(cap.interface, str)
        self.name: str = cap.interface
        self.cap = cap  # capture config for this interface alone (for_interface)
        self.effective_filter = effective_filter
        self.shared = shared
        self.proc: Tcpdump | None = None
        self.state_name = "starting"
        self.backoff = BACKOFF_MIN
        self.next_start = 0.0  # monotonic
        self.waiting_logged = False
        self.conditions = Conditions()
        self.quiet = QuietClock()
        self.stats = DropStats(self.name, cap.buffer_kib)

    @property
    def last_error(self) -> str:
        return self.conditions.latest()

    def running(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def listening(self) -> bool:
        return self.running() and self.proc is not None and self.proc.listening.is_set()

    # ------------------------------------------------------------------ start/stop
    def start(self, paused: bool, stopping: bool) -> None:
        if self.proc is not None or paused or stopping:
            return
        if time.monotonic() < self.next_start:
            self.state_name = "restarting"
            return
        iface = self.name
        if not interface_exists(iface):
            self.state_name = "waiting-for-interface"
            if not self.waiting_logged:
                self.waiting_logged = True
                self.conditions.set(Condition.NO_INTERFACE, f"interface {iface} does not exist")
                log.warning(
                    "interface %s does not exist (yet); capture starts when it appears",
                    iface,
                    extra=fields(interface=iface),
                )
            return
        if self.waiting_logged:
            self.waiting_logged = False
            self.conditions.clear(Condition.NO_INTERFACE)
            log.info("interface %s appeared", iface, extra=fields(interface=iface))
            try:
                check_filter(self.cap, self.effective_filter)  # for its link type
            except DeviceUnavailable as e:
                # e.g. not up yet: tcpdump's own start reports it and backs off
                log.info("interface %s: %s", iface, e, extra=fields(interface=iface))
            except ConfigError as e:
                # validated at start already (e.g. a DNS timeout now): tcpdump's own
                # start reports a real problem and backs off; never exit 78 here
                log.warning("interface %s: %s", iface, e, extra=fields(interface=iface))
        t = self.shared.spawn(self, None)
        self.proc = t
        if t.wait_listening(LISTEN_TIMEOUT):
            self.state_name = "capturing"
        # if it died, check_exit() sees it on this tick

    def stop(self, drain: bool = True) -> None:
        t = self.proc
        if t is None:
            return
        if drain and t.alive():
            time.sleep(DRAIN)
        rc = t.stop()
        log.info(
            "stopped tcpdump on %s (generation %d, status %d)",
            self.name,
            t.generation,
            rc,
            extra=fields(tcpdump_pid=t.pid, generation=t.generation, interface=self.name),
        )
        self.stats.retire(t)
        self.proc = None
        self.shared.track_pids()
        self.shared.process_work()

    def check_exit(self) -> bool:
        """Reap a tcpdump that exited by itself; True if one did."""
        t = self.proc
        if t is None or t.alive():
            return False
        t.stop()  # reap, collect its last stderr lines
        rc = t.proc.returncode
        msg = t.exit_message()
        self.stats.retire(t)
        self.proc = None
        self.shared.track_pids()
        if self.shared.fenced(t.generation, msg):
            # the budget's fence stopped it (pause-capture): a pause, not a failure;
            # the budget check that follows pauses, or restarts it if there is room
            log.info(
                "tcpdump on %s stopped at the spool budget's fence (generation %d)",
                self.name,
                t.generation,
                extra=fields(tcpdump_pid=t.pid, generation=t.generation, interface=self.name),
            )
            self.next_start = 0.0
            self.state_name = "paused"
            self.shared.process_work()
            return True
        self.shared.count_restart(self.name)
        self.conditions.set(Condition.TCPDUMP_EXITED, f"tcpdump exited with status {rc}: {msg}")
        listened = None if t.listening_mono is None else time.monotonic() - t.listening_mono
        delay, self.backoff = restart_delay(
            self.backoff, listened, self.shared.wrote(t.generation), rc
        )
        log.error(
            "tcpdump on %s exited unexpectedly (status %d): %s; restarting in %.1f s",
            self.name,
            rc,
            msg,
            delay,
            extra=fields(
                tcpdump_pid=t.pid, generation=t.generation, exit_status=rc, interface=self.name
            ),
        )
        self.next_start = time.monotonic() + delay
        self.state_name = "restarting"
        self.shared.process_work()
        return True

    def mark_capturing(self) -> None:
        p = self.proc
        if p and p.alive() and self.state_name != "capturing" and p.listening.is_set():
            self.state_name = "capturing"
            self.waiting_logged = False
            self.conditions.clear(Condition.TCPDUMP_EXITED, Condition.NO_INTERFACE)

    # ------------------------------------------------------------------ switching
    def switch(self, reason: str, cap: CaptureConfig | None = None, effective: str | None = None,
               opened: float | None = None) -> bool:  # fmt: skip
        """Make-before-break onto (new) settings. opened: the wall-clock time the new
        file is named for (rotate_align's boundary); the old one runs until then."""
        return switch_all([SwitchRequest(self, reason, cap, effective, opened)])[0]

    def _switched(self, req: SwitchRequest, old: Tcpdump, r: Switched) -> bool:
        """Take the result of one switch over (switch_all then hands off)."""
        if r.new is None:
            self.cap, self.effective_filter = req.previous
            self.conditions.set(Condition.SWITCH_FAILED, r.error)
            log.error(
                "%s on %s: %s; keeping the running one",
                req.reason,
                self.name,
                r.error,
                extra=fields(interface=self.name),
            )
            return False
        self.stats.retire(old)
        self.proc = r.new
        self.conditions.clear(Condition.SWITCH_FAILED)
        # each rotation starts a tcpdump, which is not a restart; a routine aligned
        # one is a detail (its file's "handed off" line is the news): debug
        log.log(
            logging.DEBUG if req.reason == ALIGNED else logging.INFO,
            "switched to a new tcpdump (%s) on %s (generation %d, replacing %d%s)",
            req.reason,
            self.name,
            r.new.generation,
            old.generation,
            f", which exited with status {r.old_status}" if r.old_status else "",
            extra=fields(generation=r.new.generation, tcpdump_pid=r.new.pid, interface=self.name),
        )
        return True

    def rotation_due(self) -> SwitchRequest | None:
        """The switch that cuts a quiet (or, aligned, any) live file that is due."""
        left = self.seconds_left()
        if left is None or left > 0 or not self.quiet.may_retry():
            return None
        opened = None
        t = self.proc
        files = self.shared.work_files(t.generation) if t is not None else []
        if self.cap.rotate_align and files:
            opened = rotation.name_time(
                files[-1].opened.timestamp(), self.cap.rotate_seconds, time.time()
            )
        reason = ALIGNED if self.cap.rotate_align else "quiet link"
        return SwitchRequest(self, reason, opened=opened)

    def seconds_left(self) -> float | None:
        """Until the live file must be cut by a switch; None: nothing to cut."""
        t = self.proc
        if t is None or not t.alive() or not t.listening.is_set():
            return None
        files = self.shared.work_files(t.generation)
        if not files:
            return None
        left = self.quiet.seconds_left(t, files, self.cap.rotate_seconds)
        if self.cap.rotate_align:
            # the wall-clock boundary, started early by the switch's lead; the
            # monotonic quiet deadline stays a bound (a clock stepped back)
            left = min(left, rotation.switch_due(files[-1].opened.timestamp(),
                                              self.cap.rotate_seconds, time.time()))  # fmt: skip
        return left

    # ------------------------------------------------------------------ stats & state
    def live_size(self, size_of: Callable[[WorkName], int]) -> int | None:
        """Current size of the file the running tcpdump writes, None if none runs."""
        t = self.proc
        if t is None or not t.alive():
            return None
        files = self.shared.work_files(t.generation)
        return size_of(files[-1]) if files else 0

    def live_counters(self) -> Counters:
        return self.stats.live(self.proc)

    def tick(self) -> None:
        self.stats.tick(self.proc)

    def snapshot(self, counts: dict[str, int]) -> dict[str, Any]:
        t = self.proc
        files = self.shared.work_files(t.generation) if t is not None else []
        c = self.live_counters()
        return {
            "state": self.state_name,
            "tcpdump_pid": t.pid if t and t.alive() else None,
            "generation": t.generation if t else None,
            "filter": self.effective_filter,
            "active_file": files[-1].format() if files else None,
            "active_since": files[-1].opened.timestamp() if files else None,
            **counts,
            "packets_captured": c.captured,
            "packets_received": c.received,
            "kernel_drops": c.kernel_drops,
            "interface_drops": c.interface_drops,
            "drop_rate": self.stats.drop_rate,
            "drop_cause": self.stats.cause.cause if self.stats.cause else None,
            "drop_cause_detail": self.stats.cause.detail if self.stats.cause else None,
            "drop_cause_at": self.stats.cause_at,
            "last_error": self.last_error,
        }


@dataclass
class SwitchRequest:
    ic: InterfaceCapture
    reason: str
    cap: CaptureConfig | None = None  # new settings, None: the same
    effective: str | None = None
    opened: float | None = None  # the time the new file is named for, None: now
    previous: tuple[CaptureConfig, str] = field(init=False)


def switch_all(reqs: list[SwitchRequest]) -> list[bool]:
    """Make-before-break for several interfaces with one overlap: those due at the
    same aligned boundary are cut at the same moment. True for each that switched."""
    if not reqs:
        return []
    shared = reqs[0].ic.shared
    pairs: list[tuple[Tcpdump, Callable[[], Tcpdump]]] = []
    olds: list[Tcpdump] = []
    for r in reqs:
        ic = r.ic
        r.previous = (ic.cap, ic.effective_filter)
        if r.cap is not None and r.effective is not None:
            ic.cap, ic.effective_filter = r.cap, r.effective
        assert ic.proc is not None
        olds.append(ic.proc)
        pairs.append((ic.proc, partial(shared.spawn, ic, r.opened, r.reason)))
    untils = [r.opened for r in reqs if r.opened is not None]
    until = max(untils) if untils else None
    results = make_before_break_many(pairs, shared.session.overlaps, until, shared.during_switch)
    done = [r.ic._switched(r, old, res) for r, old, res in zip(reqs, olds, results, strict=True)]
    # only now that every interface runs its new tcpdump: the hand-off must see all
    # the live generations, or it would take a new live file for a finished one
    shared.track_pids()
    # a pause decided during the overlap stops the new tcpdumps first: handing off
    # the overlap's files takes seconds, and they would go on writing meanwhile
    shared.after_switch()
    shared.process_work()
    return done


class Interfaces:
    """Every interface captured, in capture.interface's order, and the packet
    counters of those a reload removed (their packets stay in the totals)."""

    def __init__(self, captures: dict[str, InterfaceCapture]) -> None:
        self.captures = captures
        self.retired = Counters()

    def procs(self) -> list[Tcpdump]:
        return [ic.proc for ic in self.captures.values() if ic.proc is not None]

    def live_generations(self) -> set[int]:
        return {p.generation for p in self.procs() if p.alive()}

    def start(self, paused: bool, stopping: bool) -> None:
        for ic in self.captures.values():
            ic.start(paused, stopping)

    def stop(self, drain: bool = True) -> None:
        """Stop every tcpdump (one drain wait for all, then each in turn)."""
        running = [ic for ic in self.captures.values() if ic.running()]
        if drain and running:
            time.sleep(DRAIN)
        for ic in self.captures.values():
            ic.stop(drain=False)

    def check_exit(self) -> None:
        for ic in self.captures.values():
            ic.check_exit()

    def check_quiet(self) -> float | None:
        """Cut quiet (or aligned) live files that are due; seconds until the next."""
        due = [r for ic in self.captures.values() if (r := ic.rotation_due()) is not None]
        # all due now in one switch: the interfaces' files are cut at the same moment
        for r, ok in zip(due, switch_all(due), strict=True):
            if not ok:
                r.ic.quiet.failed()
        # due but held back (a failed switch retries later): the tick, not a spin
        lefts = [x for ic in self.captures.values() if (x := ic.seconds_left()) and x > 0]
        return min(lefts) if lefts else None

    def set_states(self, name: str) -> None:
        for ic in self.captures.values():
            ic.state_name = name

    def retire(self, ic: InterfaceCapture) -> None:
        """A reload removed ic (stopped by now): its packets stay in the totals."""
        self.retired = self.retired.plus(ic.live_counters())
