"""The capture daemon's status report: capture/capture.json and sd_notify STATUS=.

Built from a snapshot of the supervisor's state; this module only formats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rollcap.capture.budget import Usage
from rollcap.capture.counters import Counters

COUNTS = (
    "handed_off_files",
    "handed_off_bytes",
    "discarded_empty",
    "repaired_files",
    "duplicates_removed",
    "quarantined_files",
    "skipped_entries",
    "dropped_files",
    "dropped_bytes",
    "quarantine_removed",
    "restarts",
)


def new_counts() -> dict[str, int]:
    """The daemon's counters (since its start), shared by the modules that count."""
    return dict.fromkeys(COUNTS, 0)


@dataclass(frozen=True)
class Snapshot:
    state: str
    interface: str
    filter: str
    tcpdump_pid: int | None
    generation: int | None
    active_file: str | None
    active_since: float | None
    counts: dict[str, int]
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
    # the latest kernel drops' likely cause: cause, detail, at, interface (dropcause)
    last_drops: dict[str, Any] | None = None


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
        **s.counts,
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
        f"{s.counts['handed_off_files']} files handed off, {s.totals.kernel_drops} kernel drops"
        + (f" (likely {s.last_drops['cause']})" if s.last_drops else "")
        + ", "
        f"spool {pct} of budget" + (f"; error: {s.last_error}" if s.error_active else "")
    )
