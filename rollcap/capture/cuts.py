"""Cuts on request: the current files cut now, not at their rotation, by the
make-before-break switch of every listening interface (no packet lost):

- `rollcap rotate` (SIGUSR2) and a reload that changes nothing;
- a keep whose window ended inside the file being written, so that the
  window's end is finished and can be shipped now, not one rotation later
  (rollcap.keep.ring.due_cuts); once per keep.

A rotate is answered in capture.json's last_rotate, which `rollcap rotate`
waits for. The cut files' overlap is stripped on the strip worker, so the
answer waits for their hand-off (finish(), from the loop), not the loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rollcap.capture.conditions import Conditions
from rollcap.capture.counters import EventCounts
from rollcap.capture.interface import Interfaces, SwitchRequest, switch_all
from rollcap.capture.status import overall_error, overall_state
from rollcap.journal import fields
from rollcap.keep.ring import due_cuts
from rollcap.spool.workname import list_work

if TYPE_CHECKING:  # the supervisor builds the session, then the parts that use it
    from rollcap.capture.service import CaptureSession

log = logging.getLogger("rollcap.capture")


class Cuts:
    def __init__(
        self,
        interfaces: Interfaces,
        session: CaptureSession,
        counts: EventCounts,
        conditions: Conditions,
        publish: Callable[[], None],  # capture.json now (the answer)
    ) -> None:
        self.interfaces = interfaces
        self.session = session
        self.counts = counts
        self.conditions = conditions  # the supervisor's: why a cut failed
        self.publish = publish
        self.last: dict[str, Any] | None = None  # capture.json's last_rotate
        self._pending: tuple[int, str] | None = None  # a rotate waiting for its hand-off
        self._cut: set[str] = set()  # keeps whose window's end was cut

    def rotate(self, reason: str) -> None:
        """Cut the current files now: a make-before-break switch, so each file
        is handed off at once, no packet lost."""
        before = self.counts.handed_off_files
        captures = self.interfaces.captures
        live = [ic for ic in captures.values() if ic.listening()]
        if not live:
            result = f"nothing to cut: {overall_state(captures, self.session.keeper.paused)}"
        elif all(switch_all([SwitchRequest(ic, reason) for ic in live])):
            self._pending = (before, reason)
            self.finish()
            return
        else:
            result = f"failed: {overall_error(self.conditions.latest(), captures)}"
        self._answer(reason, result)

    def finish(self) -> None:
        """Answer a rotate whose cut files are handed off (none still on the strip worker)."""
        if self._pending is None or self.session.queue.busy:
            return
        before, reason = self._pending
        self._pending = None
        result = "handed off" if self.counts.handed_off_files > before else "no packets to hand off"
        self._answer(reason, result)

    def _answer(self, reason: str, result: str) -> None:
        last = self.session.queue.last_handoff
        handed = last["name"] if last else None
        self.last = {"at": time.time(), "result": result, "last_handoff": handed}
        log.info("%s: %s", reason, result, extra=fields(result=result))
        self.publish()

    def for_keeps(self) -> None:
        """Cut the file being written when a keep's window has ended inside it."""
        guard = self.session.keeper.guard
        keeps = [k for k in guard.current if k.id not in self._cut]
        if not keeps:
            return
        live = [int(w.opened.timestamp()) for w, _n in list_work(self.session.dirs.work)]
        for k in due_cuts(keeps, live):
            self._cut.add(k.id)
            self.rotate(f"keep {k.id}: its window ended")
            break  # one cut finishes every file: the next tick sees the rest done
        self._cut &= {k.id for k in guard.current}  # bounded by the pins there are
