"""`rollcap status`: what both daemons report, as a table or as JSON.

The report comes from rollcap.status; this prints it. By default one line per
daemon and per interface, then only what needs attention; -v prints every
counter in the named groups of GROUPS, then any key it does not name.
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
    ("rollcap status -v", "every counter, grouped"),
    ("rollcap status --json | jq .capture", None),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    _config.add_config_argument(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "-v", "--verbose", action="store_true",
        help="every counter, grouped and named (default: one line each, then what needs attention)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    cfg = _config.load_for_reading(args)
    report = collect(cfg)
    # 0 ok, 3 not running, 4 unknown, 5 not doing its job (rollcap.exitcodes):
    # a monitoring check can use the exit status alone, read before a pipe closes
    args.health = int(report["exit_code"])
    if args.json:
        doc = {"version": JSON_VERSION, **report}
        print(json.dumps(doc, indent=2, sort_keys=True, default=str))
    else:
        sys.stdout.write(render_table(report, verbose=args.verbose))
    return int(args.health)


# Added by write_state/collect and shown in the headline instead.
_HEADLINE_KEYS = {
    "updated", "pid", "pids", "running", "stale", "age_seconds", "verdict", "problem",
}  # fmt: skip
# `--json`'s format: raised when a key changes meaning or goes away (adding keys does not)
JSON_VERSION = 1
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


# -v: every key in a group, under the name an operator reads (the JSON key is the
# name in docs/capture.md and docs/offload.md). Keys no group names go under "other".
_PACKETS = (
    "packets (tcpdump's counters: received = matched the filter, captured = written to a file)"
)
GROUPS: dict[str, tuple[tuple[str, tuple[tuple[str, str], ...]], ...]] = {
    "capture": (
        (
            "capture",
            (
                ("state", "state"),
                ("interface", "interface"),
                ("filter", "filter"),
                ("rotation", "rotation"),
                ("timestamp_precision", "timestamp precision"),
                ("tcpdump_pid", "tcpdump pid"),
                ("generation", "tcpdump generation"),
                ("active_file", "file being written"),
                ("active_since", "written since"),
                ("paused", "paused"),
                ("pause_reason", "paused because"),
            ),
        ),
        (
            _PACKETS,
            (
                ("packets_received", "received"),
                ("packets_captured", "captured"),
                ("kernel_drops", "dropped by kernel"),
                ("interface_drops", "dropped by interface"),
                ("drop_rate", "drop rate"),
                ("last_drops", "latest drops, likely cause"),
                ("drop_cause", "drops, likely cause"),
                ("drop_cause_detail", "drops, evidence"),
                ("drop_cause_at", "drops, cause seen"),
                ("duplicates_removed", "duplicates removed (rotation overlap)"),
            ),
        ),
        (
            "files",
            (
                ("handed_off_files", "files handed off"),
                ("handed_off_bytes", "bytes handed off"),
                ("last_handoff", "last hand-off"),
                ("last_rotate", "last rotation"),
                ("discarded_empty", "empty, discarded"),
                ("repaired_files", "repaired"),
                ("quarantined_files", "quarantined"),
                ("quarantine_removed", "removed from quarantine"),
                ("skipped_entries", "skipped entries"),
                ("dropped_files", "files dropped for the budget"),
                ("dropped_bytes", "bytes dropped for the budget"),
            ),
        ),
        (
            "ring",
            (
                ("ring.lookback_seconds", "reaches back, seconds"),
                ("ring.projected_seconds", "at the current rate, seconds"),
                ("ring.rate_bytes_per_second", "capture rate, bytes/s"),
                ("ring.keeps", "keeps pinned"),
                ("ring.pinned_files", "files pinned"),
                ("ring.pinned_bytes", "bytes pinned"),
            ),
        ),
        (
            "spool budget",
            (
                ("budget.used_bytes", "used"),
                ("budget.max_bytes", "budget"),
                ("budget.percent_of_budget", "used, % of budget"),
                # the filesystem's, not the budget's: capture pauses when it falls below the minimum
                ("budget.free_percent", "filesystem free, %"),
                ("budget.min_free_percent", "filesystem free minimum, %"),
            ),
        ),
        ("problems", (("restarts", "tcpdump restarts"), ("last_error", "last error"))),
    ),
    "offload": (
        (
            "offload",
            (
                ("state", "state"),
                ("destination", "destination"),
                ("in_flight", "uploading now"),
                ("compression_level", "compression level"),
                ("compression_paused", "compression paused because"),
                ("compression_paused_seconds", "compression paused, seconds"),
            ),
        ),
        (
            "files",
            (
                ("backlog_files", "files waiting"),
                ("backlog_bytes", "bytes waiting"),
                ("uploaded_files", "files uploaded"),
                ("uploaded_bytes_in", "bytes uploaded, pcap"),
                ("uploaded_bytes_out", "bytes uploaded, as stored"),
                ("rate_mb_s", "upload rate, MB/s"),
                ("last_upload", "last upload"),
                ("quarantined", "quarantined"),
                ("dropped_by_capture", "dropped by capture for the budget"),
            ),
        ),
        ("problems", (("last_error", "last error"), ("errors", "errors"))),
    ),
}
# a file normally waits one upload; minutes mean offload falls behind capture
BACKLOG_ATTENTION_SECONDS = 300


def _get(st: dict[str, Any], key: str) -> Any:
    """st[key], or st["budget"]["used_bytes"] for "budget.used_bytes"; None: absent."""
    head, _, rest = key.partition(".")
    v = st.get(head)
    return (v.get(rest) if isinstance(v, dict) else None) if rest else v


def _verbose_lines(name: str, st: dict[str, Any], now: float, indent: str = "  ") -> list[str]:
    groups = GROUPS.get(name, ())
    named = {k.partition(".")[0] for _t, keys in groups for k, _l in keys}
    rows: list[tuple[str, list[tuple[str, str]]]] = []
    for title, keys in groups:
        shown = [(label, fmt_value(k.rpartition(".")[2], _get(st, k), now))
                 for k, label in keys if _get(st, k) is not None]  # fmt: skip
        if shown:
            rows.append((title, shown))
    per = st.get("interfaces")
    other = sorted(k for k in st if k not in named and k not in _HEADLINE_KEYS
                   and not (k == "interfaces" and isinstance(per, dict)))  # fmt: skip
    if other:
        rows.append(("other", [(clean(k), fmt_value(k, st[k], now)) for k in other]))
    width = max((len(label) for _t, shown in rows for label, _v in shown), default=0)
    lines: list[str] = []
    for title, shown in rows:
        lines.append(f"{indent}{title}")
        lines.extend(f"{indent}  {label:<{width}}  {value}" for label, value in shown)
    if isinstance(per, dict) and per:
        for iname, ist in list(per.items())[:64]:
            if isinstance(ist, dict):
                lines.append(clean(f"{indent}interface {iname}"))
                flat = {k: v for k, v in ist.items() if k != "interfaces"}  # one level only
                lines.extend(_verbose_lines(name, flat, now, indent + "  "))
    return lines


def _size(v: Any) -> str:
    return human_bytes(v) if isinstance(v, int | float) and math.isfinite(v) else "?"


def _plural(n: Any, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _capture_summary(st: dict[str, Any]) -> str:
    """state and the key numbers of capture or of one of its interfaces."""
    parts = [str(st.get("state") or "-")]
    if st.get("packets_captured") is not None:
        parts.append(f"{st['packets_captured']} packets captured")
    if st.get("handed_off_files") is not None:
        parts.append(f"{_plural(st['handed_off_files'], 'file')} handed off")
    if st.get("kernel_drops") is not None:
        parts.append(f"{st['kernel_drops']} kernel drops")
    return ", ".join(parts)


def _drops(st: dict[str, Any], cause: Any, detail: Any) -> str | None:
    k, i = st.get("kernel_drops") or 0, st.get("interface_drops") or 0
    if not (isinstance(k, int) and isinstance(i, int)) or not (k or i):
        return None
    text = ", ".join(t for t in (k and f"{k} kernel drops", i and f"{i} interface drops") if t)
    if cause:
        text += f" (likely {cause}" + (f": {detail}" if detail else "") + ")"
    return text


def _capture_short(st: dict[str, Any], now: float) -> tuple[list[str], list[str]]:
    lines, attention = [], []
    per = st.get("interfaces")
    if isinstance(per, dict) and per:
        for name, ist in list(per.items())[:64]:
            if not isinstance(ist, dict):
                continue
            lines.append(f"{name}: {_capture_summary(ist)}")
            drops = _drops(ist, ist.get("drop_cause"), ist.get("drop_cause_detail"))
            if drops:
                attention.append(f"{name}: {drops}")
            if ist.get("last_error"):
                attention.append(f"{name}: {ist['last_error']}")
    else:
        on = f" on {st['interface']}" if st.get("interface") else ""
        lines.append(_capture_summary(st).replace(",", f"{on},", 1) if on else _capture_summary(st))
        last = st.get("last_drops")
        cause = last.get("cause") if isinstance(last, dict) else None
        detail = last.get("detail") if isinstance(last, dict) else None
        drops = _drops(st, cause, detail)
        if drops:
            attention.append(drops)
    err = st.get("last_error")
    if err and not any(str(err).endswith(str(a)) for a in attention):
        attention.append(f"last error: {err}")
    if st.get("paused"):
        attention.append(f"paused: {st.get('pause_reason') or 'no reason given'}")
    ring = st.get("ring")
    ring = ring if isinstance(ring, dict) else {}
    if isinstance(ring.get("lookback_seconds"), int | float):
        lines.append(_ring_line(ring))
    n = st.get("dropped_files")
    if n and not ring.get("on_demand"):  # on demand, drops are the ring turning
        size = _size(st.get("dropped_bytes"))
        attention.append(f"{_plural(n, 'file')} ({size}) dropped to stay within the spool budget")
    if st.get("quarantined_files"):
        attention.append(f"{_plural(st['quarantined_files'], 'file')} quarantined")
    return lines, attention


def _ring_line(ring: dict[str, Any]) -> str:
    """ring: reaches back 2h13m (3h05m at the current rate); 1 keep pins 1.2 MB"""
    text = f"ring: reaches back {ago(ring['lookback_seconds'], suffix=False)}"
    projected = ring.get("projected_seconds")
    if isinstance(projected, int | float):
        text += f" ({ago(projected, suffix=False)} at the current rate)"
    keeps = ring.get("keeps")
    if keeps:
        verb = "pins" if keeps == 1 else "pin"
        text += f"; {_plural(keeps, 'keep')} {verb} {_size(ring.get('pinned_bytes'))}"
    return text


def _offload_short(st: dict[str, Any], now: float) -> tuple[list[str], list[str]]:
    parts = [str(st.get("state") or "-")]
    if st.get("backlog_files") is not None:
        size = _size(st.get("backlog_bytes"))
        parts.append(f"{_plural(st['backlog_files'], 'file')} waiting ({size})")
    if st.get("uploaded_files") is not None:
        parts.append(f"{st['uploaded_files']} uploaded")
    last = st.get("last_upload")
    at = last.get("at") if isinstance(last, dict) else None
    if isinstance(at, int | float):
        parts.append(f"last upload {ago(now - at)}")
    attention = []
    if st.get("last_error"):
        attention.append(f"last error: {st['last_error']}")
    if st.get("compression_paused"):
        attention.append(f"compression paused: {st['compression_paused']}")
    if st.get("quarantined"):
        attention.append(f"{_plural(st['quarantined'], 'file')} quarantined")
    return [", ".join(parts)], attention


def _spool_lines(sp: dict[str, Any], now: float) -> tuple[list[str], list[str]]:
    lines, attention = [f"spool: {sp['directory']}"], []
    for area in ("ready", "quarantine"):
        n, b = sp.get(f"{area}_files"), sp.get(f"{area}_bytes")
        shown = f"{_plural(n, 'file')}, {fmt_value('bytes', b, now)}"
        if n is None:  # a spool not made yet is not a permission problem
            gone = not os.path.lexists(os.path.join(sp["directory"], area))
            shown = "does not exist" if gone else "unreadable"
        lines.append(f"  {area:<10}  {shown}")
    oldest = sp.get("ready_oldest")
    waits = now - oldest if sp.get("ready_files") and isinstance(oldest, int | float) else 0
    if waits > BACKLOG_ATTENTION_SECONDS and not sp.get("ring"):  # on demand: the ring
        attention.append(f"backlog: the oldest file in ready/ waits for {ago(waits, False)}")
    return lines, attention


def render_table(report: dict[str, Any], now: float | None = None, verbose: bool = False) -> str:
    now = time.time() if now is None else now
    lines: list[str] = []
    for name in DAEMONS:
        st = report.get(name) or {}
        lines.append(_headline(name, st))
        if verbose:
            lines.extend(clean(ln) for ln in _verbose_lines(name, st, now))
            lines.append("")
            continue
        if st.get("state") is None:
            continue  # nothing reported: the headline says why
        short = _capture_short if name == "capture" else _offload_short
        body, attention = short(st, now)
        lines.extend(clean(f"  {ln}") for ln in body)
        lines.extend(clean(f"  ! {a}") for a in attention)
    sp = report.get("spool")
    if sp:
        body, attention = _spool_lines(sp, now)
        lines.extend(clean(ln) for ln in body)
        lines.extend(clean(f"  ! {a}") for a in attention)
    return "\n".join(lines).rstrip("\n") + "\n"
