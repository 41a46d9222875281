"""`rollcap status`'s report: what the two daemons last wrote into the spool's
state/, and the verdict on each (rollcap.commands.status prints it).

Generic over the state files' keys: each daemon decides what it reports
(``spool/capture/capture.json``, ``spool/state/offload.json``, written with
``rollcap.spool.state.write_state``, which adds ``updated`` and ``pid``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
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
# a pid whose command line lacks this is a recycled pid, not our daemon
PROCESS_MARKER = b"rollcap"


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
        out["problem"] = f"process {st.get('pid')} has exited; last update {ago(age)}"
    elif out["stale"]:
        out["verdict"] = "stale"
        out["problem"] = (
            f"no update for {ago(age, suffix=False)} (more than {STALE_SECONDS}s): "
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
    if spool.get("ring"):
        return None  # offload.mode = on-demand: ready/ is the ring, not a backlog
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
        f"{spool['ready_files']} files waiting, the oldest for {ago(now - oldest, suffix=False)}, "
        f"and no upload for more than {ago(stall, suffix=False)}"
    )


def collect(cfg: RollcapConfig, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    spool = Spool.at(cfg.spool.directory)
    report: dict[str, Any] = {name: daemon_report(spool.state_file(name), now) for name in DAEMONS}
    report["spool"] = _spool_usage(spool)
    if cfg.offload.mode == "on-demand":
        report["spool"]["ring"] = True
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


def ago(age: float | None, suffix: bool = True) -> str:
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
