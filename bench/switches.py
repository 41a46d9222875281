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

--offload: instead of the consumer, a real `rollcap offload` (at the shipped
unit's Nice= and IOSchedulingClass=) stores the files in a local SeaweedFS;
stored = the sum of the objects' rollcap-packets metadata, counted after the
offload has drained ready/. Its RSS is sampled beside the capture's.

    python -m bench.switches [--switches 20] [--pps 21000] [--frames 20] [--senders 3]
    python -m bench.switches --repo /tmp/main-tree --out /tmp/old.json  # the earlier code
    python -m bench.switches --soak-minutes 60   # RSS at warm-up and end, growth per hour
    python -m bench.switches --offload --soak-minutes 60 --sample 15

The soak's warm-up is the first --warmup-minutes (default: a tenth of the run,
at least 1 minute): growth per hour is the least-squares slope of the samples
after it. Each sample also records the 1-minute load average. At the end, the
daemons' RSS by kind of mapping (bench.common.rss_by_kind: the main malloc
arena, other threads' arenas, other anonymous memory). MALLOC_* variables in
the bench's environment reach the daemons, and are recorded. Results go to
bench/results/switches.json, switches-soak.json, switches-soak-offload.json
(or --out); a soak rewrites its file with the samples so far every 5 minutes.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    list_keys,
    machine,
    object_counts,
    rollcap_env,
    rss_by_kind,
    s3_offload,
    seaweedfs,
    start_rollcap,
    status_kb,
    stop,
    wait_drained,
    workdir,
)
from bench.live import Scheduling
from rollcap.spool.readyname import ReadyName
from tests.integration import capture_daemon
from tests.integration.capture_daemon import CaptureDaemon
from tests.support.net import TEST_PCAPS, Veth, count_packets


def looped_capture(dest: Path, frames: int) -> Path:
    out = dest / f"loop{frames}.pcap"
    subprocess.run(["editcap", "-F", "pcap", "-r", str(TEST_PCAPS / "ssh.pcap"), str(out),
                    f"1-{frames}"], check=True, capture_output=True)  # fmt: skip
    return out


PREFIX = "switches"
STOP_TIMEOUT = 900.0
_FINISHED = re.compile(r"^g\d+-.*\.pcap\d*$")  # a tcpdump's file in work/ (not the live one)


def finished_in_work(spool: Path) -> int:
    """Capture files in work/ beyond each generation's live one: finished files
    waiting for their hand-off (behind the strip worker)."""
    with contextlib.suppress(OSError):
        names = [n for n in os.listdir(spool / "work") if _FINISHED.match(n)]
        return max(0, len(names) - 1)
    return 0
_KEY_START = re.compile(r"-(\d{8}T\d{6}Z)-\d{6,}\.pcap(?:\.zst|\.gz)?$")  # the default key_template


def aligned_switches(starts: list[datetime], rotate: int) -> int:
    """Files opened on a multiple of rotate_seconds, the first file apart: one per switch."""
    return sum(1 for t in sorted(starts)[1:] if t.timestamp() % rotate == 0)


class Consumer:
    """Counts (capinfos) and deletes every file in ready/, as the offload would."""

    def __init__(self, ready: Path) -> None:
        self.ready = ready
        self.stored = 0
        self.files = 0
        self.starts: list[datetime] = []
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
            if r is not None:
                self.starts.append(r.start)
            p.unlink()


class Offload:
    """A real `rollcap offload` of the capture's spool into SeaweedFS."""

    def __init__(self, config: Path, log: Path, env: dict[str, str]) -> None:
        self.sched = Scheduling.of_unit("rollcap-offload.service")
        self.proc = start_rollcap("offload", config, log, env, preexec=self.sched.preexec,
                                  prefix=self.sched.prefix())  # fmt: skip
        # RSS from its start is the started daemon's, not an interpreter's half-way through imports
        deadline = time.monotonic() + 60
        while "offload started" not in log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"rollcap offload did not start; see {log}")
            time.sleep(0.2)

    def stored(self, client: Any, bucket: str) -> dict[str, Any]:
        """stored (packets), files and the files' start times, from the bucket."""
        packets, starts = 0, []
        for key in list_keys(client, bucket, PREFIX):
            m = _KEY_START.search(key)
            if m is None:
                continue
            packets += object_counts(client, bucket, key)["packets"]
            starts.append(datetime.strptime(m[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC))
        return {"stored": packets, "files": len(starts), "starts": starts}


def run(args: argparse.Namespace) -> dict[str, Any]:
    seconds = args.soak_minutes * 60 if args.soak_minutes else args.rotate_seconds * (
        args.switches + 1) + 4  # fmt: skip
    warmup = args.warmup_minutes * 60 if args.warmup_minutes else max(60.0, seconds / 10)
    if args.repo:  # another rollcap tree, e.g. `git archive main` unpacked: the earlier code
        capture_daemon.REPO = args.repo.resolve()
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(workdir("switches"))
        w = stack.enter_context(seaweedfs()) if args.offload else None
        looped = looped_capture(tmp, args.frames)
        veth = Veth.create()
        over = {"offload": s3_offload(w, PREFIX)} if w else {}
        d = CaptureDaemon(tmp / "capture", veth.b, rotate_seconds=args.rotate_seconds,
                          rotate_align=True, **over)  # fmt: skip
        samples: list[tuple[float, int]] = []
        off_samples: list[tuple[float, int]] = []
        loads: list[tuple[float, float]] = []
        waiting: list[tuple[float, int]] = []
        consumer = Consumer(d.spool / "ready")
        off: Offload | None = None
        smaps: dict[str, dict[str, int]] = {}
        drained: float | None = None
        try:
            d.start()
            d.wait_capturing()
            assert d.proc is not None
            pid = d.proc.pid
            if w:
                off = Offload(d.config, tmp / "offload.log", rollcap_env(w.env()))
            else:
                consumer.thread.start()
            loops = math.ceil(args.pps * seconds / args.frames)
            load0 = os.getloadavg()
            t0 = time.monotonic()
            argv = ["tcpreplay", "-q", f"--intf1={veth.a}", f"--pps={args.pps // args.senders}",
                    f"--loop={loops // args.senders}", str(looped)]  # fmt: skip
            reps = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
                    for _ in range(args.senders)]  # fmt: skip
            next_note = 300.0
            while live := [r for r in reps if r.poll() is None]:
                t = time.monotonic() - t0
                samples.append((t, status_kb(pid, "VmRSS")))
                if off:
                    off_samples.append((t, status_kb(off.proc.pid, "VmRSS")))
                loads.append((t, os.getloadavg()[0]))
                waiting.append((t, finished_in_work(d.spool)))
                if args.soak_minutes and t >= next_note:
                    next_note += 300
                    note = {"partial": True, "capture_rss_kb": samples,
                            "offload_rss_kb": off_samples, "loadavg_1min": loads,
                            "waiting_in_work": waiting}  # fmt: skip
                    args.out_path.write_text(json.dumps(note) + "\n")
                    print(f"{t / 60:.0f} min: capture {samples[-1][1] / 1024:.1f} MB, "
                          + (f"offload {off_samples[-1][1] / 1024:.1f} MB, " if off else "")
                          + f"load {loads[-1][1]:.1f}, {waiting[-1][1]} files waiting in work/",
                          flush=True)  # fmt: skip
                with contextlib.suppress(subprocess.TimeoutExpired):
                    live[0].wait(args.sample)
            sent = 0
            for r in reps:
                m = re.search(r"Successful packets:\s+(\d+)", r.stdout.read() if r.stdout else "")
                sent += int(m.group(1)) if m else 0
            smaps["capture"] = rss_by_kind(pid)
            if off:
                smaps["offload"] = rss_by_kind(off.proc.pid)
            time.sleep(1.5)  # tcpdump's last partially filled kernel block
            t_stop = time.monotonic()
            # a stop waits for the strip worker (nice +10), which a loaded
            # machine can leave minutes behind: see "waiting" in the samples
            d.stop(STOP_TIMEOUT)
            stop_s = round(time.monotonic() - t_stop, 1)
            st = d.state()
            if off and w:
                drained = wait_drained(d.spool, off.proc, 600)
                stop(off.proc)
                got = off.stored(w.client(), w.bucket)
            else:
                consumer.stop.set()
                consumer.thread.join()
                consumer.sweep()
                got = {"stored": consumer.stored, "files": consumer.files,
                       "starts": consumer.starts}  # fmt: skip
        finally:
            d.kill()
            if off:
                stop(off.proc)
            veth.delete()
    drops = int(st.get("kernel_drops", 0)) + int(st.get("interface_drops", 0))
    result: dict[str, Any] = {
        "pps": args.pps, "senders": args.senders, "frames_in_loop": args.frames,
        "rollcap_tree": str(capture_daemon.REPO), "rotate_seconds": args.rotate_seconds,
        "stored_by": "rollcap offload to SeaweedFS (rollcap-packets metadata)" if off
        else "capinfos of ready/ (consumer thread)",
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "GLIBC_"))},
        "seconds": round(seconds), "sent": sent, "stored": got["stored"],
        "lost": sent - got["stored"], "drops": drops, "files": got["files"],
        "aligned_switches": aligned_switches(got["starts"], args.rotate_seconds),
        "duplicates_removed": st.get("duplicates_removed"),
        "stop_seconds": stop_s,
        "waiting_in_work_max": max((n for _, n in waiting), default=None),
        "drained_seconds_after_stop": drained,
        "loadavg_at_run_start": load0,
        "loadavg_1min": {"min": min(x for _, x in loads), "max": max(x for _, x in loads),
                         "mean": round(sum(x for _, x in loads) / len(loads), 2)} if loads else {},
        "rss_by_kind_kb_at_end": smaps,
        "capture_rss_kb": samples,
    }  # fmt: skip
    if off:
        result["offload_scheduling"] = off.sched.describe()
        result["offload_rss_kb"] = off_samples
        result["offload_rss"] = rss_summary(off_samples, warmup)
    result["loadavg_1min_samples"] = loads
    result["waiting_in_work_samples"] = waiting
    result.update(rss_summary(samples, warmup))
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
    p.add_argument("--offload", action="store_true",
                   help="a real rollcap offload to a local SeaweedFS instead of the consumer")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    name = "switches" + "-soak" * bool(args.soak_minutes) + "-offload" * args.offload
    args.out_path = args.out or Path(__file__).parent / "results" / f"{name}.json"
    args.out_path.parent.mkdir(parents=True, exist_ok=True)
    at_start = machine()
    r = run(args)
    r = {"benchmark": "switches", "machine": at_start, **r,
         "loadavg_at_end": os.getloadavg()}  # fmt: skip
    args.out_path.write_text(json.dumps(r, indent=2) + "\n")
    print(json.dumps({k: v for k, v in r.items() if not k.endswith(("_kb", "_samples"))},
                     indent=2))  # fmt: skip
    print(f"wrote {args.out_path}")


if __name__ == "__main__":
    main()
