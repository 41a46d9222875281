"""`rollcap status`: what the two daemons last wrote into the spool's state/.

Generic over the state files' keys: each daemon decides what it reports
(``spool/capture/capture.json``, ``spool/state/offload.json``, written with
``rollcap.state.write_state``, which adds ``updated`` and ``pid``). The keys an
operator looks for first are shown first; the rest follow alphabetically.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rollcap import exitcodes
from rollcap.config import RollcapConfig
from rollcap.spool import Spool

DAEMONS = ("capture", "offload")
# A daemon that has not refreshed its state file for this long is reported stale.
STALE_SECONDS = 90
# See stall_seconds().
STALL_MIN_SECONDS = 900
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
# a pid whose command line lacks this is a recycled pid, not our daemon
PROCESS_MARKER = b"rollcap"
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


class _Unreadable(Exception):
    """The state exists (or may) but this user may not read it: status unknown."""


def _read(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(state, problem): problem says why there is no usable state."""
    try:
        with path.open() as f:
            data = json.load(f)
    except FileNotFoundError:
        return None, f"no state file {path} (never started with this spool?)"
    except PermissionError:
        raise _Unreadable(
            f"cannot read {path}: permission denied (run as root or a spool group member)"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, f"{path} is not valid JSON"
    except OSError as e:
        return None, f"cannot read {path}: {e.strerror}"
    if not isinstance(data, dict):
        return None, f"{path} is not a JSON object"
    return data, None


def _pid_alive(pid: Any) -> bool | None:
    """True/False when we can tell, None when the state has no usable pid."""
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, belongs to another user
    # a recycled pid that is not rollcap at all does not count
    with contextlib.suppress(OSError):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        return PROCESS_MARKER in cmdline
    return True


def daemon_processes(name: str, proc: Path = Path("/proc")) -> list[int]:
    """Pids of `rollcap NAME` processes (``.../rollcap NAME`` or ``-m rollcap NAME``):
    what a user who may not read the state can still see."""
    pids = []
    with contextlib.suppress(OSError):
        for d in proc.iterdir():
            if not d.name.isdigit():
                continue
            try:
                argv = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(
                os.path.basename(a) == b"rollcap" and argv[i + 1 : i + 2] == [name.encode()]
                for i, a in enumerate(argv)
            ):
                pids.append(int(d.name))
    return sorted(pids)


def daemon_report(path: Path, now: float | None = None) -> dict[str, Any]:
    """One daemon's state plus running/stale/age_seconds/verdict."""
    now = time.time() if now is None else now
    try:
        st, problem = _read(path)
    except _Unreadable as e:
        pids = daemon_processes(path.stem)
        seen = (
            f"; a rollcap {path.stem} process runs (pid {', '.join(map(str, pids))})"
            if pids
            else f"; no rollcap {path.stem} process is visible"
        )
        return {"running": None, "stale": False, "verdict": "unknown",
                "problem": f"{e}{seen}", "pids": pids}  # fmt: skip
    if st is None:
        return {"running": False, "stale": False, "verdict": "not running", "problem": problem}
    updated = st.get("updated")
    age = now - float(updated) if isinstance(updated, int | float) else None
    alive = _pid_alive(st.get("pid"))
    out = dict(st)
    out["age_seconds"] = None if age is None else round(age, 1)
    out["stale"] = age is None or age > STALE_SECONDS
    out["running"] = alive is not False
    if alive is False:
        out["verdict"] = "not running"
        out["problem"] = f"process {st.get('pid')} has exited; last update {_ago(age)}"
    elif out["stale"]:
        out["verdict"] = "stale"
        out["problem"] = (
            f"no update for {_ago(age, suffix=False)} (more than {STALE_SECONDS}s): "
            "stuck or stopped? see journalctl"
        )
    else:
        out["verdict"] = "running"
    return out


def _spool_usage(spool: Spool) -> dict[str, Any]:
    """Measured from the directories themselves, independent of the daemons."""
    out: dict[str, Any] = {"directory": str(spool.root)}
    for name, d in (("ready", spool.ready), ("quarantine", spool.quarantine)):
        files = size = 0
        oldest: float | None = None
        try:
            with os.scandir(d) as it:
                for e in it:
                    if e.is_file(follow_symlinks=False) and not e.name.startswith("."):
                        st = e.stat(follow_symlinks=False)
                        files += 1
                        size += st.st_size
                        # ctime: when capture renamed it in (the hand-off)
                        oldest = st.st_ctime if oldest is None else min(oldest, st.st_ctime)
        except OSError:
            out[f"{name}_files"] = None
            out[f"{name}_bytes"] = None
            continue
        out[f"{name}_files"] = files
        out[f"{name}_bytes"] = size
        if name == "ready":
            out["ready_oldest"] = oldest
    return out


def stall_seconds(cfg: RollcapConfig) -> int:
    """Files waiting this long with no upload meanwhile: offload is not doing its job.
    Twice the rotation (a new file arrives at least that often), at least 15 min."""
    return max(STALL_MIN_SECONDS, 2 * cfg.capture.rotate_seconds)


def _process_started(pid: Any) -> float | None:
    """Wall-clock start of a process, from /proc (None when unknown)."""
    if not isinstance(pid, int):
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        btime = next(
            int(ln.split()[1]) for ln in Path("/proc/stat").read_text().splitlines()
            if ln.startswith("btime ")
        )  # fmt: skip
    except (OSError, StopIteration, ValueError):
        return None
    ticks = int(stat.rsplit(")", 1)[1].split()[19])
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def _job_problem(name: str, st: dict[str, Any], spool: dict[str, Any], now: float,
                 stall: int) -> str | None:  # fmt: skip
    """Why a running daemon is not doing its job, None when it is."""
    state = st.get("state")
    err = st.get("last_error") or ""
    detail = f": {err}" if err else ""
    if name == "capture":
        return None if state == "capturing" else f"{state}{detail}"
    if state == "destination-down":
        return f"destination down{detail}"
    if state != "running":
        return f"{state}{detail}"
    oldest = spool.get("ready_oldest")
    if not spool.get("ready_files") or oldest is None or now - oldest < stall:
        return None
    last = st.get("last_upload")
    last_at = last.get("at") if isinstance(last, dict) else None
    if not isinstance(last_at, int | float):
        last_at = _process_started(st.get("pid"))
    if last_at is not None and now - last_at < stall:
        return None  # uploading, just behind: the oldest file's turn comes
    return (
        f"{spool['ready_files']} files waiting, the oldest for {_ago(now - oldest, suffix=False)}, "
        f"and no upload for more than {_ago(stall, suffix=False)}"
    )


def collect(cfg: RollcapConfig, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    spool = Spool.at(cfg.spool.directory)
    report: dict[str, Any] = {name: daemon_report(spool.state_file(name), now) for name in DAEMONS}
    report["spool"] = _spool_usage(spool)
    for name in DAEMONS:
        r = report[name]
        if r["verdict"] == "running":
            problem = _job_problem(name, r, report["spool"], now, stall_seconds(cfg))
            if problem:
                r["verdict"], r["problem"] = "degraded", problem
    report["exit_code"] = exit_code(report)
    report["ok"] = report["exit_code"] == exitcodes.OK
    return report


def exit_code(report: dict[str, Any]) -> int:
    """The worst of both, a known problem before uncertainty: not running (3),
    degraded (5), unknown (4), else 0."""
    verdicts = {report[n]["verdict"] for n in DAEMONS}
    if verdicts & {"not running"}:
        return exitcodes.NOT_RUNNING
    if verdicts & {"degraded", "stale"}:
        return exitcodes.DEGRADED
    if "unknown" in verdicts:
        return exitcodes.STATUS_UNKNOWN
    return exitcodes.OK


# -- rendering -----------------------------------------------------------------------


def _ago(age: float | None, suffix: bool = True) -> str:
    if age is None:
        return "never"
    if not isinstance(age, int | float) or not math.isfinite(age) or abs(age) > 1e12:
        return "?"
    s = int(max(age, 0))
    if s < 60:
        text = f"{s}s"
    elif s < 3600:
        text = f"{s // 60}m {s % 60:02d}s"
    elif s < 86400:
        text = f"{s // 3600}h {s % 3600 // 60:02d}m"
    else:
        text = f"{s // 86400}d {s % 86400 // 3600}h"
    return text + " ago" if suffix else text


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


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
        return f"{stamp} ({_ago(now - v)})"
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
        pid, age = st.get("pid"), _ago(st.get("age_seconds"))
        return clean(f"{name}: running (pid {pid}, updated {age})")
    if verdict == "degraded":
        pid, age = st.get("pid"), _ago(st.get("age_seconds"))
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
            shown = "unreadable" if n is None else f"{files}, {fmt_value('bytes', b, now)}"
            lines.append(f"  {area:<10}  {shown}")
    return "\n".join(lines).rstrip("\n") + "\n"
