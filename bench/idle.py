"""Idle cost: CPU seconds and peak RSS of each daemon over a window with no traffic.

`rollcap capture` watches a fresh veth pair nobody sends on (IPv6 off, so the
kernel sends nothing either) and `rollcap offload` watches its empty spool,
offloading to a local SeaweedFS. Both start, settle for SETTLE seconds, then
CPU time (utime+stime from /proc/PID/stat) is measured over the window; peak
RSS is VmHWM from /proc/PID/status at the end. The capture daemon's tcpdump
child is reported separately.

Baseline in the same run: `sleep` does nothing and costs nothing; the number to
compare with is the goal (< 1% of one core, < 80 MB RSS per daemon).

    python3 -m bench.idle [--seconds 60] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    children,
    cpu_seconds,
    offload_config,
    rollcap_env,
    seaweedfs,
    start_rollcap,
    status_kb,
    stop,
    workdir,
    write_result,
)
from tests.support.net import Veth

SETTLE = 5.0


def _descendants(pid: int) -> list[int]:
    out = []
    for c in children(pid):
        out += [c, *_descendants(c)]
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _sample(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            out[name] = cpu_seconds(pid)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--quick", action="store_true", help="20 s window")
    ap.add_argument("--daemons", default="capture,offload", help="which daemons to run")
    a = ap.parse_args(argv)
    if a.quick:
        a.seconds = 20.0
    if os.geteuid() != 0:
        sys.exit("bench.idle needs root (veth pair, tcpdump)")
    res: dict[str, Any] = {"window_s": a.seconds, "settle_s": SETTLE, "processes": {}}
    with seaweedfs() as w, workdir("idle") as work:
        spool = work / "spool"
        spool.mkdir()
        veth = Veth.create()
        procs = []
        try:
            cfg = offload_config(
                work / "idle.toml",
                spool,
                w,
                "idle",
                capture={"interface": veth.b, "rotate_seconds": 600},
            )
            env = rollcap_env(w.env())
            pids: dict[str, int] = {}
            for name in a.daemons.split(","):
                p = start_rollcap(name, cfg, work / f"{name}.log", env)
                procs.append(p)
                pids[name] = p.pid
            time.sleep(SETTLE)
            for name in list(pids):
                for child in _descendants(pids[name]):
                    pids[f"{name} child {_comm(child)}"] = child
            exited = {
                n: p.returncode
                for n, p in zip(a.daemons.split(","), procs, strict=True)
                if p.poll() is not None
            }
            if exited:
                logs = {n: (work / f"{n}.log").read_text(errors="replace")[-2000:] for n in exited}
                raise RuntimeError(f"daemon exited early: {exited}; {logs}")
            t0, c0 = time.monotonic(), _sample(pids)
            time.sleep(a.seconds)
            t1, c1 = time.monotonic(), _sample(pids)
            for name, pid in pids.items():
                if name not in c0 or name not in c1:
                    res["processes"][name] = {"error": "exited during the window"}
                    continue
                cpu = c1[name] - c0[name]
                res["processes"][name] = {
                    "cpu_seconds": cpu,
                    "cpu_percent": 100 * cpu / (t1 - t0),
                    "peak_rss_mb": status_kb(pid, "VmHWM") / 1024,
                    "rss_mb": status_kb(pid, "VmRSS") / 1024,
                }
        finally:
            for p in reversed(procs):
                stop(p)
            veth.delete()
    for name, r in res["processes"].items():
        if "cpu_seconds" in r:
            print(
                f"idle {name}: {r['cpu_seconds']:.2f} CPU s in {a.seconds:.0f} s "
                f"({r['cpu_percent']:.2f}%), peak RSS {r['peak_rss_mb']:.1f} MB"
            )
    write_result("idle", res)
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
