"""Scale: offload starting with a large backlog of small finished files.

ready/ holds N small valid captures (10 real frames each) before `rollcap
offload` starts. Measured: seconds from starting the process to the first
object appearing in the bucket (listing polled every 20 ms), and the
process's peak RSS (VmHWM) after WINDOW seconds, with the number of objects
uploaded by then. The baseline is the same run with 1,000 files: memory should
be flat in the number of files.

    python3 -m bench.scale [--files 1000,10000] [--window 15] [--quick]
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    list_keys,
    offload_config,
    rollcap_env,
    seaweedfs,
    start_rollcap,
    status_kb,
    stop,
    workdir,
    write_result,
)
from bench.datagen import START, ready_name, real_frames
from tests.support.seaweedfs import SeaweedFS


def make_backlog(ready: Path, n: int, seed: int = 2) -> int:
    rng = random.Random(seed)
    frames = real_frames()
    total = 0
    for i in range(n):
        start = START + timedelta(seconds=10 * i)
        ts = start.timestamp()
        out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for _ in range(10):
            f = rng.choice(frames)
            ts += 0.01
            out += struct.pack("<IIII", int(ts), int(ts % 1 * 1e6), len(f), len(f)) + f
        (ready / ready_name(i + 1, start)).write_bytes(out)
        total += len(out)
    return total


def run(n: int, window: float, w: SeaweedFS, work: Path) -> dict[str, Any]:
    spool = work / f"spool-{n}"
    ready = spool / "ready"
    ready.mkdir(parents=True)
    size = make_backlog(ready, n)
    prefix = f"scale-{n}"
    cfg = offload_config(work / f"scale-{n}.toml", spool, w, prefix)
    client = w.client()
    t0 = time.monotonic()
    proc = start_rollcap("offload", cfg, work / f"offload-{n}.log", rollcap_env(w.env()))
    first: float | None = None
    try:
        while time.monotonic() - t0 < window:
            if proc.poll() is not None:
                raise RuntimeError(f"offload exited with {proc.returncode}")
            if first is None:
                r = client.list_objects_v2(Bucket=w.bucket, Prefix=prefix + "/", MaxKeys=1)
                if r.get("KeyCount", 0):
                    first = time.monotonic() - t0
            time.sleep(0.02)
        peak_kb = status_kb(proc.pid, "VmHWM")
        rss_kb = status_kb(proc.pid, "VmRSS")
    finally:
        stop(proc)
    uploaded = len(list_keys(client, w.bucket, prefix + "/"))
    return {
        "files": n,
        "backlog_bytes": size,
        "first_upload_s": first,
        "window_s": window,
        "uploaded_in_window": uploaded,
        "peak_rss_mb": peak_kb / 1024,
        "rss_mb": rss_kb / 1024,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--files", default="1000,10000", help="backlog sizes; the first is the baseline"
    )
    ap.add_argument("--window", type=float, default=15.0)
    ap.add_argument("--quick", action="store_true", help="10 s window")
    a = ap.parse_args(argv)
    if a.quick:
        a.window = 10.0
    sizes = [int(x) for x in a.files.split(",")]
    res: dict[str, Any] = {"runs": []}
    with seaweedfs() as w, workdir("scale") as work:
        for n in sizes:
            r = run(n, a.window, w, work)
            res["runs"].append(r)
            print(
                f"scale {n} files: first upload after {r['first_upload_s']} s, peak RSS "
                f"{r['peak_rss_mb']:.1f} MB, {r['uploaded_in_window']} uploaded in "
                f"{a.window:.0f} s"
            )
    base, big = res["runs"][0], res["runs"][-1]
    if base["peak_rss_mb"]:
        res["peak_rss_ratio"] = big["peak_rss_mb"] / base["peak_rss_mb"]
        print(f"peak RSS {big['files']} vs {base['files']} files: {res['peak_rss_ratio']:.2f}x")
    write_result("scale", res)
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
