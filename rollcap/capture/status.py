"""The capture daemon's status gathered from its parts and published: to
capture/capture.json (`rollcap status`), the metrics exporter and systemd's
STATUS= line, at most once a second unless forced.

A Snapshot of the supervisor's state is formatted by pure functions
(state_dict, status_line); snapshot() gathers one from the supervisor
(its own, called with itself) and StatusPublisher hands it out. A state file that
cannot be written (a full spool) never stops capture: it is an error, shown in
the status line, and tried again at the next publish.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollcap.capture.budget import Usage
from rollcap.capture.conditions import RepeatLimiter
from rollcap.capture.counters import Counters, EventCounts, InterfaceCounts
from rollcap.capture.interface import InterfaceCapture
from rollcap.keep.ring import RingState
from rollcap.metrics.capture import CaptureCollector
from rollcap.metrics.exporter import Exporter
from rollcap.notify import Notifier
from rollcap.spool.state import write_state

if TYPE_CHECKING:  # the supervisor gathers its status with itself
    from rollcap.capture.service import Supervisor

@dataclass(frozen=True)
class Snapshot:
    state: str
    interface: str
    filter: str
    tcpdump_pid: int | None
    generation: int | None
    active_file: str | None
    active_since: float | None
    counts: EventCounts
    totals: Counters
    drop_rate: float
    paused: bool
    pause_reason: str
    last_error: str
    error_active: bool
    usage: Usage | None
    last_handoff: dict[str, Any] | None
    last_rotate: dict[str, Any] | None
    interfaces: dict[str, dict[str, Any]] | None = None  # each interface's own counters
    rotation: str = ""  # how files are cut, e.g. "every 600 s on the UTC clock, or at 200 MB"
    timestamp_precision: str = ""
    # the latest kernel drops' likely cause: cause, detail, at, interface (likely_cause)
    last_drops: dict[str, Any] | None = None
    ring: RingState | None = None  # the flight recorder's lookback (rollcap.keep.ring)


def state_dict(s: Snapshot) -> dict[str, Any]:
    return {
        "state": s.state,
        "tcpdump_pid": s.tcpdump_pid,
        "generation": s.generation,
        "interface": s.interface,
        "filter": s.filter,
        "rotation": s.rotation,
        "timestamp_precision": s.timestamp_precision,
        "active_file": s.active_file,
        "active_since": s.active_since,
        **s.counts.as_dict(),
        "last_handoff": s.last_handoff,
        "last_rotate": s.last_rotate,
        "packets_captured": s.totals.captured,
        "packets_received": s.totals.received,
        "kernel_drops": s.totals.kernel_drops,
        "last_drops": s.last_drops,
        "interface_drops": s.totals.interface_drops,
        "drop_rate": s.drop_rate,
        "paused": s.paused,
        "pause_reason": s.pause_reason,
        "last_error": s.last_error,
        "budget": s.usage.as_dict() if s.usage else None,
        "interfaces": s.interfaces or {},
        "ring": s.ring.as_dict() if s.ring else None,
    }


def rotation(rotate_seconds: int, rotate_megabytes: int, align: bool) -> str:
    clock = " on the UTC clock" if align else ""
    return f"every {rotate_seconds} s{clock}, or at {rotate_megabytes} MB"


def status_line(s: Snapshot) -> str:
    u = s.usage
    pct = f"{100 * u.used_bytes / u.max_bytes:.0f}%" if u else "?"
    state = f"paused ({s.pause_reason})" if s.paused and s.pause_reason else s.state
    per = s.interfaces or {}
    if len(per) > 1:  # e.g. "capturing on eth0, waiting-for-interface on eth1"
        on = ", ".join(f"{st.get('state')} on {name}" for name, st in per.items())
        state = f"paused ({s.pause_reason}) on {s.interface}" if s.paused else on
    else:
        state = f"{state} on {s.interface}"
    return (
        f"{state}: "
        f"{s.counts.handed_off_files} files handed off, {s.totals.kernel_drops} kernel drops"
        + (f" (likely {s.last_drops['cause']})" if s.last_drops else "")
        + ", "
        f"spool {pct} of budget" + (f"; error: {s.last_error}" if s.error_active else "")
    )


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


def snapshot(sup: Supervisor) -> Snapshot:
    k, c = sup.session.keeper, sup.cfg.capture
    by_iface = sup.session.queue.by_iface
    since = sup.work_since()
    ifaces = {
        name: {**ic.snapshot(by_iface.get(name, InterfaceCounts()).as_dict()),
               "work_since": since[name]}
        for name, ic in sup.captures.items()
    }  # fmt: skip
    first = next(iter(ifaces.values()), {})
    return Snapshot(
        state=overall_state(sup.captures, sup.paused),
        interface=", ".join(sup.captures),
        filter=first.get("filter", "") if len(ifaces) == 1 else "",
        tcpdump_pid=first.get("tcpdump_pid") if len(ifaces) == 1 else None,
        generation=first.get("generation") if len(ifaces) == 1 else None,
        active_file=first.get("active_file") if len(ifaces) == 1 else None,
        active_since=first.get("active_since") if len(ifaces) == 1 else None,
        counts=replace(sup.n),
        totals=live_counters(sup.interfaces.retired, sup.captures),
        drop_rate=max((ic.stats.drop_rate for ic in sup.captures.values()), default=0.0),
        paused=sup.paused,
        pause_reason=k.pause_reason,
        # an error only the limiter knows (the state file itself) still has a text
        last_error=overall_error(sup.conditions.latest(), sup.captures) or sup.errors.latest(),
        error_active=bool(sup.errors.active()),
        usage=k.usage,
        last_handoff=sup.last_handoff,
        last_rotate=sup.cuts.last,
        interfaces=ifaces,
        rotation=rotation(c.rotate_seconds, c.rotate_megabytes, c.rotate_align),
        timestamp_precision=c.timestamp_precision,
        last_drops=last_drops(sup.captures),
        ring=k.ring,
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

    def publish(self, snap: Callable[[], Snapshot], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_write < 1.0:
            return
        self.last_write = now
        state = state_dict(snap())
        self.metrics.publish(state)
        try:
            write_state(self.path, state)
        except OSError as e:
            self.errors.error(f"state:{e.strerror or e}", f"cannot write the state file: {e}")
        else:
            self.errors.clear("state:", "writing the state file")
        # a new snapshot: a write that failed just now shows in the line at once
        self.notifier.status(status_line(snap()))
