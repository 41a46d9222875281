"""How long `rollcap capture` takes to stop, and to capture again after a
restart, right after a round at the generator's top speed (issue 24).

Each round is bench.live --load's rollcap round without its sampler: a fresh
veth pair, `rollcap offload` to the bench's SeaweedFS (nice 19) and `rollcap
capture` at the units' scheduling (rotate_megabytes 50, rotate_seconds 10,
aligned), bench.datagen's TLS/HTTP mix replayed with tcpreplay --topspeed -K
for --duration s, then SIGTERM to the capture daemon (as systemd's
KillMode=mixed sends it):

- stop_s:     SIGTERM to exit (the unit's TimeoutStopSec=30 SIGKILLs after that);
- left_files: capture files still in work/ after the stop (the next start
              hands them off);
- restart_s:  a new `rollcap capture` on the same spool, start to "capturing";
- settled_s:  from that start until work/ holds no file of the first run.

Rounds alternate between this tree and --repo (another rollcap tree, e.g.
`git archive main` unpacked: the earlier code), so both meet the same load.

    python3 -m bench.stop --repo /tmp/base [--rounds 3] [--duration 20]

Results: bench/results/stop.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import common
from bench.common import offload_config, rollcap_env, seaweedfs, start_rollcap, stop, workdir
from bench.live import Scheduling, _Replay, _wait_capturing, load_pcap, renice_tree
from rollcap.spool.state import read_state
from tests.support.net import Veth
from tests.support.seaweedfs import SeaweedFS

SETTLE = 1.5  # as bench.live: tcpdump's last partial kernel block
STOP_TIMEOUT = 120.0  # longer than the unit's 30 s: measure, do not kill


def _left(spool: Path) -> list[Path]:
    return [p for p in (spool / "work").iterdir() if p.name.startswith("g")]


def _capturing(cap: subprocess.Popen[bytes], spool: Path) -> float:
    """When (time.monotonic()) the daemon first says it is capturing."""
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline and cap.poll() is None:
        if (read_state(spool / "capture" / "capture.json") or {}).get("state") == "capturing":
            return time.monotonic()
        time.sleep(0.05)
    raise RuntimeError(f"rollcap capture did not capture again: exit {cap.poll()}")


def one_round(tree: Path, pcap: Path, work: Path, w: SeaweedFS, a: argparse.Namespace,
              sched: dict[str, Scheduling]) -> dict[str, Any]:  # fmt: skip
    common.REPO = tree  # start_rollcap and rollcap_env run this tree's daemons
    spool = work / "spool"
    spool.mkdir()
    veth = Veth.create()
    cfg = offload_config(
        work / "stop.toml", spool, w, f"stop-{work.name}",
        capture={"interface": veth.b, "rotate_megabytes": 50, "rotate_seconds": 10},
        spool_settings={"max_megabytes": 20000},
    )  # fmt: skip
    env = rollcap_env(w.env())
    log = work / "capture.log"
    s_off, s_cap = sched["offload"], sched["capture"]
    off = cap = None
    load0 = os.getloadavg()
    try:
        off = start_rollcap("offload", cfg, work / "offload.log", env,
                            preexec=s_off.preexec, prefix=s_off.prefix())  # fmt: skip
        cap = start_rollcap("capture", cfg, log, env, preexec=s_cap.preexec,
                            prefix=s_cap.prefix())  # fmt: skip
        _wait_capturing(cap, spool)
        r = _Replay(veth, pcap, a.duration, None).result()
        time.sleep(SETTLE)
        t0 = time.monotonic()
        rc = stop(cap, timeout=STOP_TIMEOUT)
        stop_s = time.monotonic() - t0
        state = read_state(spool / "capture" / "capture.json") or {}
        left = _left(spool)
        left_mb = sum(p.stat().st_size for p in left) / 1e6
        (spool / "capture" / "capture.json").unlink(missing_ok=True)  # the first one's
        t0 = time.monotonic()
        cap = start_rollcap("capture", cfg, log, env, preexec=s_cap.preexec,
                            prefix=s_cap.prefix())  # fmt: skip
        restart_s = _capturing(cap, spool) - t0
        while set(left) & set(_left(spool)) and time.monotonic() - t0 < STOP_TIMEOUT:
            time.sleep(0.1)
        settled_s = time.monotonic() - t0 if not set(left) & set(_left(spool)) else None
        rc2 = stop(cap, timeout=STOP_TIMEOUT)
    finally:
        for p in (cap, off):
            if p is not None:
                stop(p)
        veth.delete()
        shutil.rmtree(spool, ignore_errors=True)
    return {
        "tree": str(tree), "sent": r["sent"], "achieved_pps": r["achieved_pps"],
        "captured": state.get("packets_captured"), "kernel_drops": state.get("kernel_drops"),
        "handed_off_files": state.get("handed_off_files"),
        "stop_s": round(stop_s, 1), "exit": rc, "left_files": len(left),
        "left_mb": round(left_mb, 1),
        "restart_s": round(restart_s, 1),
        "settled_s": None if settled_s is None else round(settled_s, 1),
        "second_exit": rc2,
        "loadavg_start": load0, "loadavg_end": os.getloadavg(),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repo", type=Path, required=True, help="the other rollcap tree")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per tree, alternating")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of top speed")
    ap.add_argument("--mix-mb", type=int, default=64, help="size of the TLS/HTTP mix")
    ap.add_argument("--out", type=Path, default=common.RESULTS / "stop.json")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench.stop needs root (veth pairs, tcpdump)")
    this, other = common.REPO, a.repo.resolve()
    sched = {"capture": Scheduling.of_unit("rollcap-capture.service"),
             "offload": Scheduling.of_unit("rollcap-offload.service")}  # fmt: skip
    pcap = load_pcap("tls", 1, a.mix_mb, 16)
    runs: dict[str, list[dict[str, Any]]] = {"this": [], "other": []}
    print(f"stop after {a.duration:.0f} s at top speed; this {this}, other {other}; "
          f"load average {os.getloadavg()}", flush=True)  # fmt: skip
    with workdir("stop") as work, seaweedfs() as w:
        assert w.proc is not None
        renice_tree(w.proc.pid, 19)  # stands in for a remote server
        n = 0
        for i in range(a.rounds):
            for kind in ("this", "other") if i % 2 == 0 else ("other", "this"):
                n += 1
                rnd = work / f"r{n}"
                rnd.mkdir()
                r = one_round(this if kind == "this" else other, pcap, rnd, w, a, sched)
                runs[kind].append(r)
                print(f"{kind}: {r['achieved_pps'] or 0:.0f} pps, captured {r['captured']}; "
                      f"stopped in {r['stop_s']} s (exit {r['exit']}), {r['left_files']} files "
                      f"({r['left_mb']} MB) left in work/; capturing again {r['restart_s']} s "
                      f"after the start, work/ settled after {r['settled_s']} s; load "
                      f"{r['loadavg_start'][0]:.2f}->{r['loadavg_end'][0]:.2f}",
                      flush=True)  # fmt: skip
    common.REPO = this
    res = {"benchmark": "stop", "machine": common.machine(), "duration_s": a.duration,
           "rotate_megabytes": 50, "rotate_seconds": 10, "rounds": runs}  # fmt: skip
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {a.out}")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
