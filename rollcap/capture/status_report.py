"""The capture daemon's status gathered from its parts and published: to
capture/capture.json (`rollcap status`), the metrics exporter and systemd's
STATUS= line, at most once a second unless forced.

rollcap.capture.report formats a snapshot; this module gathers one from the
supervisor (Reported names what it reads) and hands it out. A state file that
cannot be written (a full spool) never stops capture: it is an error, shown in
the status line, and tried again at the next publish.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from rollcap.capture import report
from rollcap.capture.counters import Counters
from rollcap.capture.interface import InterfaceCapture
from rollcap.capture.keeper import BudgetKeeper
from rollcap.capture.queue import IFACE_COUNTS, HandoffQueue
from rollcap.capture.ratelimit import RepeatLimiter
from rollcap.config.schema import RollcapConfig
from rollcap.metrics.capture import CaptureCollector
from rollcap.metrics.exporter import Exporter
from rollcap.notify import Notifier
from rollcap.spool.state import write_state


class Reported(Protocol):
    """What the status shows of the supervisor (rollcap.capture.service)."""

    cfg: RollcapConfig
    captures: dict[str, InterfaceCapture]  # capture.interface, in order
    queue: HandoffQueue | None
    keeper: BudgetKeeper | None
    n: dict[str, int]
    retired: Counters  # counters of interfaces removed by a reload
    last_error: str  # the shared parts' (spool, reload); interfaces keep theirs
    last_rotate: dict[str, Any] | None
    errors: RepeatLimiter

    @property
    def paused(self) -> bool: ...
    @property
    def last_handoff(self) -> dict[str, Any] | None: ...


def overall_state(captures: Mapping[str, InterfaceCapture], paused: bool) -> str:
    """capturing when every interface captures; else the first one's that does not."""
    if paused:
        return "paused"
    states = [ic.state_name for ic in captures.values()]
    return next((s for s in states if s != "capturing"), "capturing")


def overall_error(last_error: str, captures: Mapping[str, InterfaceCapture]) -> str:
    if last_error:
        return last_error
    many = len(captures) > 1
    for ic in captures.values():
        if ic.last_error:
            return f"{ic.name}: {ic.last_error}" if many else ic.last_error
    return ""


def live_counters(retired: Counters, captures: Mapping[str, InterfaceCapture]) -> Counters:
    total = retired
    for ic in captures.values():
        total = total.plus(ic.live_counters())
    return total


def last_drops(captures: Mapping[str, InterfaceCapture]) -> dict[str, Any] | None:
    """The likely cause of the latest kernel drops of any interface, None: none."""
    latest = max(
        (ic for ic in captures.values() if ic.stats.cause is not None),
        key=lambda ic: ic.stats.cause_at or 0.0,
        default=None,
    )
    if latest is None or latest.stats.cause is None:
        return None
    c = latest.stats.cause
    return {"cause": c.cause, "detail": c.detail, "at": latest.stats.cause_at,
            "interface": latest.name}  # fmt: skip


def snapshot(sup: Reported) -> report.Snapshot:
    k, c = sup.keeper, sup.cfg.capture
    by_iface = sup.queue.by_iface if sup.queue else {}
    ifaces = {
        name: ic.snapshot(dict(by_iface.get(name, dict.fromkeys(IFACE_COUNTS, 0))))
        for name, ic in sup.captures.items()
    }
    first = next(iter(ifaces.values()), {})
    return report.Snapshot(
        state=overall_state(sup.captures, sup.paused),
        interface=", ".join(sup.captures),
        filter=first.get("filter", "") if len(ifaces) == 1 else "",
        tcpdump_pid=first.get("tcpdump_pid") if len(ifaces) == 1 else None,
        generation=first.get("generation") if len(ifaces) == 1 else None,
        active_file=first.get("active_file") if len(ifaces) == 1 else None,
        active_since=first.get("active_since") if len(ifaces) == 1 else None,
        counts=dict(sup.n),
        totals=live_counters(sup.retired, sup.captures),
        drop_rate=max((ic.stats.drop_rate for ic in sup.captures.values()), default=0.0),
        paused=sup.paused,
        pause_reason=k.pause_reason if k else "",
        # an error only the limiter knows (the state file itself) still has a text
        last_error=overall_error(sup.last_error, sup.captures) or sup.errors.latest(),
        error_active=bool(sup.errors.active()),
        usage=k.usage if k else None,
        last_handoff=sup.last_handoff,
        last_rotate=sup.last_rotate,
        interfaces=ifaces,
        rotation=report.rotation(c.rotate_seconds, c.rotate_megabytes, c.rotate_align),
        timestamp_precision=c.timestamp_precision,
        last_drops=last_drops(sup.captures),
    )


class StatusPublisher:
    def __init__(
        self,
        path: Path,
        metrics: Exporter[CaptureCollector],
        notifier: Notifier,
        errors: RepeatLimiter,
    ) -> None:
        self.path = path  # capture/capture.json
        self.metrics = metrics
        self.notifier = notifier
        self.errors = errors  # the supervisor's: a failed write is one of its errors
        self.last_write = 0.0  # monotonic

    def publish(self, snap: Callable[[], report.Snapshot], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_write < 1.0:
            return
        self.last_write = now
        state = report.state_dict(snap())
        self.metrics.publish(state)
        try:
            write_state(self.path, state)
        except OSError as e:
            self.errors.error(f"state:{e.strerror or e}", f"cannot write the state file: {e}")
        else:
            self.errors.clear("state:", "writing the state file")
        # a new snapshot: a write that failed just now shows in the line at once
        self.notifier.status(report.status_line(snap()))
