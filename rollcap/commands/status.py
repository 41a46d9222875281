"""`rollcap status`: what both daemons report, as a table or as JSON.

The report comes from rollcap.status; this prints it. The keys an operator
looks for first are shown first; the rest follow alphabetically.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

from rollcap.commands import _config
from rollcap.commands._format import human_bytes
from rollcap.status import DAEMONS, ago, collect

HELP = (
    "what both daemons report (--json for machines); exit 0 when both run and "
    "do their job, 3 when one is not running, 4 unknown, 5 running but not working"
)
DESCRIPTION = (
    "Show what the capture and offload daemons last reported in the spool's state files, "
    "with a verdict on each, and how many files wait in ready/ and quarantine/. The exit "
    "status alone is the health a monitoring check reads: 0 both run and do their job, "
    "3 one is not running, 4 unknown (its state cannot be read), 5 running but not "
    "working."
)
# `--help` ends with these (and rollcap(8)); tests/unit/test_cli.py parses each
EXAMPLES: tuple[tuple[str, str | None], ...] = (
    ("rollcap status", "exit 0 when both daemons run and do their job"),
    ("rollcap status --json | jq .capture", None),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    _config.add_config_argument(p)
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    cfg = _config.load_for_reading(args)
    report = collect(cfg)
    # 0 ok, 3 not running, 4 unknown, 5 not doing its job (rollcap.exitcodes):
    # a monitoring check can use the exit status alone, read before a pipe closes
    args.health = int(report["exit_code"])
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True, default=str))
    else:
        sys.stdout.write(render_table(report))
    return int(args.health)


# Shown first, in this order, when present.
IMPORTANT = (
    "state",
    "interface",
    "rotation",
    "timestamp_precision",
    "destination",
    "paused",
    "active_file",
    "in_flight",
    "backlog_files",
    "backlog_bytes",
    "last_handoff",
    "last_upload",
    "handed_off_files",
    "uploaded_files",
    "kernel_drops",
    "last_drops",
    "dropped_files",
    "quarantined",
    "restarts",
    "last_error",
    "errors",
)
# Added by write_state/collect and shown in the headline instead.
_HEADLINE_KEYS = {
    "updated", "pid", "pids", "running", "stale", "age_seconds", "verdict", "problem",
}  # fmt: skip
_EPOCH_MIN = 1_000_000_000  # numbers above this under a time-like key are timestamps
_EPOCH_MAX = 2**33  # ... and below this (year 2242): beyond, just a number
# State files are written by the daemons' unprivileged users: what they say is
# shown, never obeyed. No terminal control, no endless lines, no deep nesting.
_MAX_TEXT = 300
_MAX_DEPTH = 3


def clean(text: str) -> str:
    """Printable text: control characters (C0, DEL, C1) shown as '?', length capped."""
    out = "".join("?" if (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0) else c for c in text)
    return out if len(out) <= _MAX_TEXT else out[: _MAX_TEXT - 1] + "…"


def _is_time_key(key: str) -> bool:
    return (
        key in ("at", "time", "ts", "when")
        or key.startswith("last_")
        or key.endswith(("_at", "_time", "updated", "since"))
    )


def fmt_value(key: str, v: Any, now: float, depth: int = 0) -> str:
    return clean(_fmt(key, v, now, depth))


def _fmt(key: str, v: Any, now: float, depth: int) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, int) and abs(v) > 10**30:
        return "(absurdly large)"
    if isinstance(v, int | float) and "bytes" in key.split("_"):  # bytes, max_bytes, bytes_in
        return f"{human_bytes(v)} ({v:,})" if v >= 1000 else f"{v} B"
    if isinstance(v, int | float) and _is_time_key(key) and _EPOCH_MIN < v < _EPOCH_MAX:
        stamp = datetime.fromtimestamp(v, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"{stamp} ({ago(now - v)})"
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".")
    if isinstance(v, dict | list) and depth >= _MAX_DEPTH:
        return "…"
    if isinstance(v, dict):
        return ", ".join(f"{clean(str(k))}={_fmt(str(k), x, now, depth + 1)}" for k, x in v.items())
    if isinstance(v, list):
        return ", ".join(_fmt(key, x, now, depth + 1) for x in v[:20]) or "-"
    return str(v)


def ordered_keys(st: dict[str, Any]) -> list[str]:
    keys = [k for k in st if k not in _HEADLINE_KEYS]
    first = [k for k in IMPORTANT if k in keys]
    return first + sorted(k for k in keys if k not in first)


def _headline(name: str, st: dict[str, Any]) -> str:
    verdict = st.get("verdict", "not running")
    if verdict == "running":
        pid, age = st.get("pid"), ago(st.get("age_seconds"))
        return clean(f"{name}: running (pid {pid}, updated {age})")
    if verdict == "degraded":
        pid, age = st.get("pid"), ago(st.get("age_seconds"))
        return clean(
            f"{name}: RUNNING BUT NOT WORKING (pid {pid}, updated {age}): {st.get('problem')}"
        )
    return clean(f"{name}: {str(verdict).upper()}: {st.get('problem')}")


# one line per interface of capture (capture.interface may list several)
_IFACE_SHOWN = (
    "state", "tcpdump_pid", "handed_off_files",
    "packets_captured", "kernel_drops", "drop_cause", "interface_drops", "restarts",
    "last_error",
)  # fmt: skip


def _interface_lines(per: dict[str, Any], now: float) -> list[str]:
    lines = ["  interfaces"]
    for name, ist in list(per.items())[:64]:
        if not isinstance(ist, dict):
            continue
        shown = ", ".join(
            f"{k}={fmt_value(k, ist[k], now)}" for k in _IFACE_SHOWN if ist.get(k) not in (None, "")
        )
        lines.append(clean(f"    {name}: {shown}"))
    return lines


def render_table(report: dict[str, Any], now: float | None = None) -> str:
    now = time.time() if now is None else now
    lines: list[str] = []
    for name in DAEMONS:
        st = report.get(name) or {}
        lines.append(_headline(name, st))
        per = st.get("interfaces")
        keys = [k for k in ordered_keys(st) if not (k == "interfaces" and isinstance(per, dict))]
        width = max((len(k) for k in keys), default=0)
        lines.extend(f"  {clean(k):<{width}}  {fmt_value(k, st[k], now)}" for k in keys)
        if isinstance(per, dict) and per:
            lines.extend(_interface_lines(per, now))
        lines.append("")
    sp = report.get("spool")
    if sp:
        lines.append(f"spool: {sp['directory']}")
        for area in ("ready", "quarantine"):
            n, b = sp.get(f"{area}_files"), sp.get(f"{area}_bytes")
            files = f"{n} file" + ("" if n == 1 else "s")
            shown = f"{files}, {fmt_value('bytes', b, now)}"
            if n is None:  # a spool not made yet is not a permission problem
                gone = not os.path.lexists(os.path.join(sp["directory"], area))
                shown = "does not exist" if gone else "unreadable"
            lines.append(f"  {area:<10}  {shown}")
    return "\n".join(lines).rstrip("\n") + "\n"
