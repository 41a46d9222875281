"""Aligned switches on repetitive traffic: packets lost per switch, and capture RSS.

A small real capture (the first --frames frames of ssh.pcap, so a frame
recurs every frames/pps seconds) is replayed in a loop by --senders tcpreplays
at --pps in all onto a fresh veth pair, into a real `rollcap capture` with rotate_align = true
and rotate_seconds = --rotate-seconds, across --switches aligned switches. A
consumer thread counts every file handed off to ready/ (capinfos) and deletes
it, so a long run needs no disk. At the end: sent (tcpreplay's count), stored,
lost = sent - stored, and tcpdump's kernel + interface drops (expected: lost =
drops = 0). The capture daemon's RSS (VmRSS of `rollcap capture`, tcpdump not
included) is sampled every --sample seconds.

    python -m bench.switches [--switches 20] [--pps 21000] [--frames 20] [--senders 3]
    python -m bench.switches --repo /tmp/main-tree --out /tmp/old.json  # the earlier code
    python -m bench.switches --soak-minutes 60   # RSS at warm-up and end, growth per hour

The soak's warm-up is the first --warmup-minutes (default 2, or a tenth of the
run): growth per hour is the least-squares slope of the samples after it.
Results go to bench/results/switches.json (or --out).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import machine, status_kb, workdir
from rollcap.spool.readyname import ReadyName
from tests.integration import capture_daemon
from tests.integration.capture_daemon import CaptureDaemon
from tests.support.net import TEST_PCAPS, Veth, count_packets


def looped_capture(dest: Path, frames: int) -> Path:
    out = dest / f"loop{frames}.pcap"
    subprocess.run(["editcap", "-F", "pcap", "-r", str(TEST_PCAPS / "ssh.pcap"), str(out),
                    f"1-{frames}"], check=True, capture_output=True)  # fmt: skip
    return out


class Consumer:
    """Counts (capinfos) and deletes every file in ready/, as the offload would."""

    def __init__(self, ready: Path, rotate: int) -> None:
        self.ready = ready
        self.rotate = rotate
        self.stored = 0
        self.files = 0
        self.aligned = 0  # files opened on a multiple of rotate_seconds (one per switch)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.sweep()
            self.stop.wait(1.0)

    def sweep(self) -> None:
        if not self.ready.is_dir():
            return
        for p in sorted(self.ready.iterdir()):
            if p.name.startswith("."):
                continue
            r = ReadyName.parse(p.name)
            self.stored += count_packets(p)
            self.files += 1
            if r is not None and self.files > 1 and r.start.timestamp() % self.rotate == 0:
                self.aligned += 1
            p.unlink()


def run(args: argparse.Namespace) -> dict[str, Any]:
    seconds = args.soak_minutes * 60 if args.soak_minutes else args.rotate_seconds * (
        args.switches + 1) + 4  # fmt: skip
    if args.repo:  # another rollcap tree, e.g. `git archive main` unpacked: the earlier code
        capture_daemon.REPO = args.repo.resolve()
    with workdir("switches") as tmp:
        looped = looped_capture(tmp, args.frames)
        veth = Veth.create()
        d = CaptureDaemon(tmp / "capture", veth.b, rotate_seconds=args.rotate_seconds,
                          rotate_align=True)  # fmt: skip
        samples: list[tuple[float, int]] = []
        consumer = Consumer(d.spool / "ready", args.rotate_seconds)
        try:
            d.start()
            d.wait_capturing()
            assert d.proc is not None
            pid = d.proc.pid
            consumer.thread.start()
            loops = math.ceil(args.pps * seconds / args.frames)
            t0 = time.monotonic()
            argv = ["tcpreplay", "-q", f"--intf1={veth.a}", f"--pps={args.pps // args.senders}",
                    f"--loop={loops // args.senders}", str(looped)]  # fmt: skip
            reps = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
                    for _ in range(args.senders)]  # fmt: skip
            while live := [r for r in reps if r.poll() is None]:
                samples.append((time.monotonic() - t0, status_kb(pid, "VmRSS")))
                with contextlib.suppress(subprocess.TimeoutExpired):
                    live[0].wait(args.sample)
            sent = 0
            for r in reps:
                m = re.search(r"Successful packets:\s+(\d+)", r.stdout.read() if r.stdout else "")
                sent += int(m.group(1)) if m else 0
            time.sleep(1.5)  # tcpdump's last partially filled kernel block
            d.stop()
            consumer.stop.set()
            consumer.thread.join()
            consumer.sweep()
            st = d.state()
        finally:
            d.kill()
            veth.delete()
    drops = int(st.get("kernel_drops", 0)) + int(st.get("interface_drops", 0))
    result: dict[str, Any] = {
        "pps": args.pps, "senders": args.senders, "frames_in_loop": args.frames,
        "rollcap_tree": str(capture_daemon.REPO), "rotate_seconds": args.rotate_seconds,
        "seconds": round(seconds), "sent": sent, "stored": consumer.stored,
        "lost": sent - consumer.stored, "drops": drops, "files": consumer.files,
        "aligned_switches": consumer.aligned,
        "duplicates_removed": st.get("duplicates_removed"),
        "capture_rss_kb": samples,
    }  # fmt: skip
    result.update(rss_summary(samples, args.warmup_minutes * 60 if args.warmup_minutes else
                              max(60.0, seconds / 10)))  # fmt: skip
    return result


def rss_summary(samples: list[tuple[float, int]], warmup: float) -> dict[str, Any]:
    after = [(t, kb) for t, kb in samples if t >= warmup]
    if len(after) < 3:
        return {"rss_note": "too short for a growth rate"}
    n = len(after)
    mt = sum(t for t, _ in after) / n
    mk = sum(kb for _, kb in after) / n
    slope = sum((t - mt) * (kb - mk) for t, kb in after) / sum((t - mt) ** 2 for t, _ in after)
    return {
        "rss_start_mb": round(samples[0][1] / 1024, 1),
        "rss_warm_mb": round(after[0][1] / 1024, 1),
        "rss_end_mb": round(after[-1][1] / 1024, 1),
        "rss_max_mb": round(max(kb for _, kb in samples) / 1024, 1),
        "warmup_seconds": round(warmup),
        "rss_growth_mb_per_hour": round(slope * 3600 / 1024, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.switches", description=__doc__.split("\n")[0])
    p.add_argument("--switches", type=int, default=20)
    p.add_argument("--pps", type=int, default=21_000)
    p.add_argument("--frames", type=int, default=20, help="frames in the looped capture")
    p.add_argument("--senders", type=int, default=3,
                   help="tcpreplays at pps/senders each (as tests/integration/test_capture_align)")
    p.add_argument("--repo", type=Path, default=None, help="run this rollcap tree's capture")
    p.add_argument("--rotate-seconds", type=int, default=10)
    p.add_argument("--soak-minutes", type=float, default=0.0)
    p.add_argument("--warmup-minutes", type=float, default=0.0)
    p.add_argument("--sample", type=float, default=10.0, help="seconds between RSS samples")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    at_start = machine()
    r = run(args)
    r = {"benchmark": "switches", "machine": at_start, **r,
         "loadavg_at_end": os.getloadavg()[0]}  # fmt: skip
    out = args.out or Path(__file__).parent / "results" / (
        "switches-soak.json" if args.soak_minutes else "switches.json")  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=2) + "\n")
    print(json.dumps({k: v for k, v in r.items() if k != "capture_rss_kb"}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
