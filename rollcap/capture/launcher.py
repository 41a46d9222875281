"""Starting tcpdumps and remembering them: each start takes the next generation,
and the pids of every running tcpdump are saved, both in
capture/capture-counters.json (rollcap.capture.handoff.Persistent), so that a
capture after a crash stops the tcpdumps left running (rollcap.capture.lock).

A full disk never stops capture: the memory copy stays right (and at start the
numbers are also recovered from the spool); the failure is the supervisor's
condition COUNTERS_UNSAVED until a save succeeds again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from rollcap.capture import lock
from rollcap.capture.command import tcpdump_argv
from rollcap.capture.conditions import Condition, Conditions, RepeatLimiter
from rollcap.capture.handoff import Persistent
from rollcap.capture.interface import InterfaceCapture
from rollcap.capture.switching import stamp_fds
from rollcap.capture.tcpdump import Tcpdump
from rollcap.journal import fields

log = logging.getLogger("rollcap.capture")

COUNTERS = "capture/capture-counters.json"


class Launcher:
    def __init__(
        self,
        persistent: Persistent,
        work: Path,
        procs: Callable[[], list[Tcpdump]],  # the interfaces' tcpdumps
        wake: Callable[[], None],
        errors: RepeatLimiter,
        conditions: Conditions,
        prepare: Callable[[int, list[str]], None] = lambda _gen, _argv: None,
    ) -> None:
        self.persistent = persistent
        self.work = work
        self._procs = procs
        self._wake = wake
        self._errors = errors
        self._conditions = conditions
        self._prepare = prepare  # before exec: the budget fences the new tcpdump

    def spawn(
        self, ic: InterfaceCapture, opened: float | None, switch_user: str | None, switch: str = ""
    ) -> Tcpdump:
        """A new tcpdump (the next generation) for one interface; opened: the time
        its first file is named for (rotate_align), None: now. switch: why it takes
        over from a running one ("" none), which then says so at INFO itself."""
        try:
            gen = self.persistent.next_generation()
        except OSError as e:
            # counted in memory already; work/ names stay unique (see Persistent.load)
            gen = self.persistent.generation
            self._unsaved(e)
        argv = tcpdump_argv(ic.cap, ic.effective_filter, self.work, gen, switch_user, opened)
        self._prepare(gen, argv)
        quiet = logging.DEBUG if switch else logging.INFO
        t = Tcpdump(argv, gen, ic.name, self._wake, stamp_fds(), chatter=quiet)
        self.track(t)
        log.log(
            quiet,
            "started tcpdump on %s (generation %d)%s",
            ic.name,
            gen,
            f" for a switch ({switch})" if switch else "",
            extra=fields(tcpdump_pid=t.pid, generation=gen, argv=" ".join(argv), interface=ic.name),
        )
        return t

    def track(self, *extra: Tcpdump) -> None:
        """Persist the pids of every tcpdump we run (for orphan clean-up after a crash)."""
        procs = [p for p in (*self._procs(), *extra) if p.alive()]
        self.persistent.tcpdump_pids = [p.pid for p in procs]
        self._save()

    def stop_orphans(self) -> None:
        """Stop the tcpdumps a crashed supervisor left running (holding the spool's lock)."""
        lock.stop_orphans(self.persistent.tcpdump_pids, self.work)
        self.persistent.tcpdump_pids = []
        self._save()

    def _save(self) -> None:
        """Save generation and pids; a full disk must not stop capture."""
        try:
            self.persistent.save()
        except OSError as e:
            self._unsaved(e)
        else:
            self._errors.clear("counters:", f"saving {COUNTERS}")
            self._conditions.clear(Condition.COUNTERS_UNSAVED)

    def _unsaved(self, e: OSError) -> None:
        msg = f"cannot save {COUNTERS}: {e}"
        self._conditions.set(Condition.COUNTERS_UNSAVED, msg)
        self._errors.error(f"counters:{e.strerror or e}", msg)
