"""CPU the overlap strip of one aligned switch costs the capture supervisor's
main loop, before and after it moved to the strip worker, in the same run.

The hand-off of one switch's files through a real Supervisor (tests' unit
fakes: no tcpdump), its loop simulated as in an overlap: process_work() every
0.1 s until work/ is empty. The old file holds --old-seconds + a 1.2 s overlap
at --pps, the new one the overlap + the rest of --new-seconds, the overlap's
records in both with the same stamps (as under rollcap's shared kernel stamp).
--cut-mb N cuts each side into files of N MB as tcpdump -C does (at top speed
an overlap spans several on each side).
"before" is the code at --base (default: where this branch left main),
unpacked with git archive; "after" this tree, its strip worker at nice +10;
"after-nice0" the same at nice 0. Rounds alternate the three, each in its own
process, on copies of the same two files.

Reported per variant: main-loop CPU (the loop thread's own CPU time), the
strip worker's CPU (the process's CPU minus the loop's), the longest
process_work() call (how long the loop stood still) and the largest overshoot
of a 0.1 s sleep (the GIL: how late the loop woke while the worker ran),
and the same overshoot over 20 idle ticks after it (the load alone).

    python3 -m bench.strip [--pps 200000] [--rounds 3] [--base REV] [--cut-mb N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

T0 = 1_800_000_000.0
OVERLAP = 1.2
REPO = Path(__file__).resolve().parent.parent
OLD = "g000001-20270115T080000-eth0.pcap"
NEW = "g000002-20270115T080010-eth0.pcap"


def _write(path: Path, first: int, count: int, pps: int, payloads: list[bytes],
           cut: int = 0) -> None:  # fmt: skip
    """Records first .. first + count; cut > 0: a new file (path + "1", "2" ...) once
    one holds cut bytes, as tcpdump -C does."""
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    files: list[list[bytes]] = [[header]]
    size = len(header)
    for i in range(first, first + count):
        us = i * 1_000_000 // pps  # integer: no stamp goes back at a second
        p = payloads[i % len(payloads)]
        sec, usec = int(T0) + us // 1_000_000, us % 1_000_000
        if cut and size + 16 + len(p) > cut:
            files.append([header])
            size = len(header)
        files[-1].append(struct.pack("<IIII", sec, usec, len(p), len(p)) + p)
        size += 16 + len(p)
    for n, records in enumerate(files):
        Path(f"{path}{n or ''}").write_bytes(b"".join(records))


def measure(files: Path, since: float) -> dict[str, Any]:
    """One hand-off of the switch's two files, in this process (the tree on sys.path)."""
    from rollcap.pcapfile import scan
    from tests.unit.capture.fakes import supervisor

    if "STRIP_NICE" in os.environ:  # the worker's priority, for a comparison
        from rollcap.capture import stripworker

        stripworker.NICE = int(os.environ["STRIP_NICE"])
    tmp = Path(tempfile.mkdtemp(prefix="rollcap-bench-strip-"))
    try:
        sup = supervisor(tmp)
        work = sup.spool.work
        for src in files.iterdir():
            shutil.copyfile(src, work / src.name)
        sup.session.overlaps.begin(1, 2, since)
        main0, proc0, wall0 = time.thread_time(), time.process_time(), time.monotonic()
        longest = overshoot = 0.0
        passes = 0
        while any(p.suffix.startswith(".pcap") for p in work.iterdir()):
            t = time.monotonic()
            sup.process_work()
            longest = max(longest, time.monotonic() - t)
            passes += 1
            t = time.monotonic()
            time.sleep(0.1)
            overshoot = max(overshoot, time.monotonic() - t - 0.1)
        main, proc, wall = (time.thread_time() - main0, time.process_time() - proc0,
                            time.monotonic() - wall0)  # fmt: skip
        idle = 0.0  # the same loop with nothing to do: what the load alone costs
        for _ in range(20):
            t = time.monotonic()
            sup.process_work()
            time.sleep(0.1)
            idle = max(idle, time.monotonic() - t - 0.1)
        stored = sum(scan(f).packets for f in sup.spool.ready.iterdir())
        return {
            "main_loop_cpu_s": round(main, 3), "worker_cpu_s": round(proc - main, 3),
            "wall_s": round(wall, 3), "longest_pass_s": round(longest, 3),
            "largest_tick_overshoot_s": round(overshoot, 3), "passes": passes,
            "idle_tick_overshoot_s": round(idle, 3),
            "duplicates_removed": sup.n.duplicates_removed, "stored": stored,
        }  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _tree(base: str, dest: Path) -> Path:
    arch = subprocess.run(["git", "-C", str(REPO), "archive", base, "rollcap", "tests"],
                          check=True, capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(dest)], input=arch, check=True)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pps", type=int, default=200_000)
    ap.add_argument("--old-seconds", type=float, default=10.0)
    ap.add_argument("--new-seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cut-mb", type=float, default=0.0, help="-C: files of this size "
                    "(default: one file per side)")  # fmt: skip
    ap.add_argument("--base", default="", help="git revision of 'before' (default: merge-base "
                    "of HEAD and main)")  # fmt: skip
    ap.add_argument("--measure", nargs=2, metavar=("FILES", "SINCE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), float(args.measure[1]))))
        return
    from bench.common import machine, workdir, write_result

    base = args.base or subprocess.run(
        ["git", "-C", str(REPO), "merge-base", "HEAD", "main"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    random.seed(1)
    payloads = [os.urandom(random.choice((60, 120, 600, 1400))) for _ in range(512)]
    pps = args.pps
    spawn_i = int(args.old_seconds * pps)
    old_n, new_n = int((args.old_seconds + OVERLAP) * pps), int(args.new_seconds * pps)
    state: dict[str, Any] = {"machine": machine()}
    variants = {"before": ("before", None), "after": ("after", None),
                "after-nice0": ("after", "0")}  # fmt: skip
    rounds: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    with workdir("strip") as d:
        files = d / "files"
        files.mkdir()
        cut = int(args.cut_mb * 1_000_000)
        _write(files / OLD, 0, old_n, pps, payloads, cut)
        _write(files / NEW, spawn_i, new_n, pps, payloads, cut)
        state["files"] = sorted(p.name for p in files.iterdir())
        trees = {"before": _tree(base, Path(tempfile.mkdtemp(dir=d))), "after": REPO}
        for r in range(args.rounds):
            for variant, (tree, nice) in variants.items():
                env = {**os.environ, "PYTHONPATH": str(trees[tree])}
                if nice is not None:
                    env["STRIP_NICE"] = nice
                out = subprocess.run(
                    [sys.executable, str(Path(__file__).resolve()), "--measure", str(files),
                     str(T0 + args.old_seconds)],
                    check=True, capture_output=True, text=True, env=env, cwd=trees[tree],
                ).stdout  # fmt: skip
                res = json.loads(out.strip().splitlines()[-1])
                res["loadavg"] = os.getloadavg()[0]
                rounds[variant].append(res)
                print(f"round {r + 1} {variant:6}: {res}", flush=True)
    overlap = int(OVERLAP * pps)
    for variant, rs in rounds.items():
        for k in ("main_loop_cpu_s", "worker_cpu_s", "longest_pass_s",
                  "largest_tick_overshoot_s", "idle_tick_overshoot_s"):  # fmt: skip
            vals = [x[k] for x in rs]
            print(f"{variant:6} {k}: {min(vals)}-{max(vals)}")
        per = [round(x["worker_cpu_s"] / overlap * 1e6, 2) for x in rs]
        print(f"{variant:6} worker CPU per overlap record: {min(per)}-{max(per)} µs")
        assert all(x["duplicates_removed"] == overlap for x in rs), "strip not exact"
        assert all(x["stored"] == old_n + new_n - overlap for x in rs), "stored != sent"
    write_result("strip", {
        "pps": pps, "cut_mb": args.cut_mb, "overlap_records": overlap, "old_records": old_n,
        "new_records": new_n,
        "base": base, **state, "loadavg_at_end": os.getloadavg()[0], "rounds": rounds,
    })  # fmt: skip


if __name__ == "__main__":
    main()
