"""Live capture: kernel drops and hand-off-to-object latency at fixed packet rates.

For each rate, the merged shared captures are replayed with tcpreplay onto a
fresh veth pair for ~DURATION seconds, twice:

- bare:    `tcpdump -i vethB -w FILE` and nothing else running (the baseline);
- rollcap: `rollcap capture` (rotate_seconds=10) and `rollcap offload` to a
           local SeaweedFS, both running.

Drops are counted two ways: what tcpdump reports ("dropped by kernel", for
rollcap as the capture daemon records it), and end to end: packets sent by
tcpreplay minus packets stored (capinfos of the bare file; for rollcap the sum
of the objects' rollcap-packets metadata, i.e. what reached S3).

Latency per file: hand-off = the ctime of the file in ready/ (set by the
rename that hands it off; a 20 ms poller records it before offload deletes
the file), object = the first bucket listing (polled every 100 ms) that shows
its key. Both are wall-clock times on this machine.

    python3 -m bench.live [--rates 50000,150000,250000] [--duration 25] [--quick]

--top-speed: tcpreplay as fast as it goes (preloaded, looping) of the synthetic
mix of bench.datagen (TLS-like frames of random payload: incompressible, as
encrypted traffic is), onto a fresh veth pair, in --rounds rounds per side
(alternating):

- bare:    `tcpdump -i vethB -B N -w FILE`, N = capture.buffer_kib's default;
- rollcap: capture and offload at their units' shipped scheduling (Nice=,
           CPUSchedulingPolicy=, IOSchedulingClass= read from units/; cgroup
           settings such as CPUWeight= cannot be applied here and are named),
           rotating every --rotate-mb so the offload works from the start.

SeaweedFS runs at nice 19, standing in for a remote server. Lost = tcpdump's
kernel (and interface) drops; the worst round of each side counts.

    python3 -m bench.live --top-speed [--rounds 3] [--duration 20]

--load (issue 24): bare `tcpdump -B 32768 -w` against the rollcap daemons at
the units' scheduling (rotate_megabytes 50, rotate_seconds 10, aligned;
SeaweedFS at nice 19), alternating, on --mix tls (bench.datagen's TLS/HTTP
mix) or small (frames <= 128 B). Phases: top (--rounds, default 6, at the
generator's top speed), fixed (90 % of bare's median top rate, tcpreplay
--pps), bisect (the highest zero-loss offered rate of each side, at most
--bisect-rounds rounds), drain (a fixed-rate round, then the time until the
offload has stored the backlog). Each round writes a 100 ms timeline CSV
(bench.evidence) and reports capture CPU per packet (supervisor and
tcpdumps, /proc utime+stime incl. reaped children) and disk bytes written
per captured byte (/proc/PID/io of tcpdump, supervisor and offload;
SeaweedFS apart). Results: bench/results/live-load-MIX.json, merged across
phases; --render writes the README block. Defaults for --load: --rounds 6,
--rotate-mb 50, --duration 20.

    python3 -m bench.live --load --mix tls --phases top
    python3 -m bench.live --load --mix small --phases fixed,bisect,drain
    python3 -m bench.evidence bench/results/live-timeline/tls-top*-rollcap-*.csv

--load --sched shipped,weights,nice19 (issue 24): top-speed rounds of rollcap
at each scheduling variant (and bare tcpdump as the reference, unless
--no-bare), the order rotating every round: shipped = the units' Nice= and
I/O class; weights = shipped plus their CPUWeight= as cgroup v1 cpu.shares
(the capture daemon and its tcpdumps in one group, the offload in another,
/sys/fs/cgroup/cpu/rollcap-bench-*, removed after); nice19 = offload at
Nice=19 + batch + idle I/O class, no weights. Per variant: worst and median
lost, the generator's rate, capture CPU per packet, offload CPU, load
averages, and where each process was scheduled (cgroup, autogroup).
Results: bench/results/live-sched-MIX.json; --render prints them. With
--phases top,drain each rollcap round also waits (up to --drain-timeout) for
the offload to store the backlog, still at the variant's scheduling:
live-sched-MIX-drain.json.

    python3 -m bench.live --load --mix tls --phases top --rounds 4 \
        --sched shipped,weights,nice19
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import evidence as ev
from bench.common import (
    MB,
    REPO,
    RESULTS,
    children,
    cpu_seconds,
    list_keys,
    object_counts,
    offload_config,
    rollcap_env,
    seaweedfs,
    start_rollcap,
    stop,
    wait_drained,
    workdir,
    write_result,
)
from rollcap.spool.readyname import ReadyName
from rollcap.spool.state import read_state
from tests.support.net import Veth, count_packets, merged_pcaps
from tests.support.seaweedfs import SeaweedFS

STOP_TIMEOUT = 120.0  # the load bench's capture stop: see load_rollcap
SETTLE = 1.5  # tcpdump loses its last partial kernel block if stopped sooner
_SEQ_KEY = re.compile(r"-(\d{6,})\.pcap(?:\.zst|\.gz)?$")


def replay(veth: Veth, pcap: Path, pps: int, seconds: float) -> dict[str, Any]:
    """tcpreplay at pps for about `seconds`; returns what it says it sent."""
    per_loop = count_packets(pcap)
    loops = max(1, math.ceil(pps * seconds / per_loop))
    out = subprocess.run(
        ["tcpreplay", "-q", f"--intf1={veth.a}", f"--pps={pps}", f"--loop={loops}", str(pcap)],
        check=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ).stdout
    sent = re.search(r"Actual: (\d+) packets .* sent in ([\d.]+) seconds", out)
    rated = re.search(r"Rated: .*?([\d.]+) pps", out)
    if not sent:
        raise RuntimeError(f"cannot parse tcpreplay output: {out!r}")
    return {
        "sent": int(sent[1]),
        "seconds": float(sent[2]),
        "achieved_pps": float(rated[1]) if rated else None,
    }


def _tcpdump_stats(stderr: str) -> dict[str, int]:
    stats = {}
    for key, pat in (
        ("captured", r"(\d+) packets? captured"),
        ("received", r"(\d+) packets? received by filter"),
        ("kernel_drops", r"(\d+) packets? dropped by kernel"),
    ):
        m = re.search(pat, stderr)
        if m:
            stats[key] = int(m[1])
    return stats


def run_bare(pcap: Path, pps: int, seconds: float, work: Path) -> dict[str, Any]:
    out_dir = work / f"bare-{pps}"
    out_dir.mkdir()
    os.chmod(out_dir, 0o1777)  # tcpdump drops to its own user before opening the file
    out = out_dir / "bare.pcap"
    veth = Veth.create()
    try:
        td = subprocess.Popen(
            ["tcpdump", "-i", veth.b, "-w", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert td.stderr is not None
        td.stderr.readline()  # "listening on ..."
        r = replay(veth, pcap, pps, seconds)
        time.sleep(SETTLE)
        td.terminate()
        _, err = td.communicate(timeout=20)
    finally:
        veth.delete()
    stored = count_packets(out)
    return {**r, **_tcpdump_stats(err), "stored": stored, "lost": r["sent"] - stored}


class _Watcher:
    """Records when each file appears in ready/ (its ctime) and when its object is listed."""

    def __init__(self, ready: Path, w: SeaweedFS, prefix: str) -> None:
        self.ready, self.w, self.prefix = ready, w, prefix
        self.handoff: dict[int, float] = {}
        self.objects: dict[int, float] = {}
        self.keys: dict[int, str] = {}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._ready_loop, daemon=True),
            threading.Thread(target=self._bucket_loop, daemon=True),
        ]

    def __enter__(self) -> _Watcher:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)

    def _ready_loop(self) -> None:
        while not self._stop.is_set():
            try:
                with os.scandir(self.ready) as it:
                    for e in it:
                        n = ReadyName.parse(e.name)
                        if n is not None and n.seq not in self.handoff:
                            with contextlib.suppress(FileNotFoundError):
                                self.handoff[n.seq] = e.stat().st_ctime
            except FileNotFoundError:
                pass
            time.sleep(0.02)

    def _bucket_loop(self) -> None:
        client = self.w.client()
        while not self._stop.is_set():
            now = time.time()
            for key in list_keys(client, self.w.bucket, self.prefix):
                m = _SEQ_KEY.search(key)
                if m and int(m[1]) not in self.objects:
                    self.objects[int(m[1])] = now
                    self.keys[int(m[1])] = key
            time.sleep(0.1)


def _pct(xs: list[float], q: int) -> float | None:
    if not xs:
        return None
    if len(xs) == 1:
        return xs[0]
    return statistics.quantiles(xs, n=100, method="inclusive")[q - 1] if q < 100 else max(xs)


_UPLOADED = re.compile(r"uploaded (\S+) as \S+: \d+ -> \d+ bytes in ([\d.]+) s")


def _offload_seconds(log: Path) -> dict[int, float]:
    """seq -> seconds the offload reports for the file (open to verified upload)."""
    out: dict[int, float] = {}
    for m in _UPLOADED.finditer(log.read_text(errors="replace")):
        name = ReadyName.parse(m[1])
        if name is not None:
            out[name.seq] = float(m[2])
    return out


def _s(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f} s"


def run_rollcap(
    pcap: Path, pps: int, seconds: float, work: Path, w: SeaweedFS, offload_nice: int = 0
) -> dict[str, Any]:
    spool = work / f"spool-{pps}"
    spool.mkdir()
    prefix = f"live-{work.name}-{pps}"
    veth = Veth.create()
    cfg = offload_config(
        work / f"live-{pps}.toml",
        spool,
        w,
        prefix,
        capture={"interface": veth.b, "rotate_seconds": 10},
    )
    env = rollcap_env(w.env())
    off = cap = None
    try:
        off = start_rollcap("offload", cfg, work / f"offload-{pps}.log", env, nice=offload_nice)
        cap = start_rollcap("capture", cfg, work / f"capture-{pps}.log", env)
        _wait_capturing(cap, spool)
        with _Watcher(spool / "ready", w, prefix) as watch:
            r = replay(veth, pcap, pps, seconds)
            time.sleep(SETTLE)
            stop(cap)
            # the capture's last file is handed off at stop; wait for offload to ship it
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and off.poll() is None:
                pending = [s for s in watch.handoff if s not in watch.objects]
                if watch.handoff and not pending and not any((spool / "ready").iterdir()):
                    break
                time.sleep(0.2)
            time.sleep(0.3)
        state = read_state(spool / "capture" / "capture.json") or {}
        client = w.client()
        stored = 0
        sizes = []
        for seq, key in sorted(watch.keys.items()):
            n = object_counts(client, w.bucket, key)
            stored += n["packets"]
            sizes.append({"seq": seq, "pcap_mb": n["pcap_bytes"] / 1e6,
                          "object_mb": n["object_bytes"] / 1e6})  # fmt: skip
    finally:
        for p in (cap, off):
            if p is not None:
                stop(p)
        veth.delete()
    lat = sorted(watch.objects[s] - watch.handoff[s] for s in watch.handoff if s in watch.objects)
    # the offload's own time per file (open to verified), from its log: what is
    # left of the latency is waiting to be noticed/dispatched plus our 0.1 s poll
    work_s = _offload_seconds(work / f"offload-{pps}.log")
    waits = sorted(
        watch.objects[s] - watch.handoff[s] - work_s[s]
        for s in watch.handoff
        if s in watch.objects and s in work_s
    )
    counters = ("packets_captured", "kernel_drops", "interface_drops")
    drops = {k: state.get(k) for k in counters}
    return {
        **r,
        "stored": stored,
        "lost": r["sent"] - stored,
        "files": len(watch.handoff),
        "objects": len(watch.objects),
        "capture_state": drops,
        "object_sizes": sizes,
        "latency_s": lat,
        "latency_p50_s": _pct(lat, 50),
        "latency_p99_s": _pct(lat, 99),
        "offload_seconds": [work_s.get(s) for s in sorted(watch.handoff)],
        "latency_minus_offload_work_s": waits,
    }


def _wait_capturing(cap: subprocess.Popen[bytes], spool: Path, timeout: float = 30) -> None:
    """Until the capture daemon says it is capturing (tcpdump is listening)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cap.poll() is not None:
            raise RuntimeError(f"rollcap capture exited with {cap.returncode}")
        state = read_state(spool / "capture" / "capture.json") or {}
        if state.get("state") == "capturing":
            time.sleep(0.5)
            return
        time.sleep(0.1)
    raise TimeoutError("rollcap capture did not report capturing")


def rollcap_available() -> bool:
    import importlib.util

    return all(
        importlib.util.find_spec(m) is not None
        for m in ("rollcap.capture.service", "rollcap.offload.service")
    )


def unit_nice() -> int:
    """The Nice= the shipped offload unit runs with: measure what is installed."""
    unit = REPO / "units" / "rollcap-offload.service"
    for line in unit.read_text().splitlines():
        if line.startswith("Nice="):
            return int(line.split("=", 1)[1])
    return 0


# -- top speed ---------------------------------------------------------------
# The generator as fast as it goes, an incompressible mix, both services at the
# units' shipped scheduling and the S3 server at nice 19 (a remote server costs
# this host nothing): does rollcap lose more packets than bare tcpdump with the
# same -B? Lost = tcpdump's "dropped by kernel" (+ "by interface"): at top speed
# the offload cannot drain in the run (the spool holds the backlog), so the
# bucket's packet counts would measure the drain, not the capture.

SCHEDULING_KEYS = ("Nice", "CPUSchedulingPolicy", "IOSchedulingClass", "IOSchedulingPriority")
# cgroup settings need systemd; the bench says so instead of pretending
CGROUP_KEYS = ("CPUWeight", "StartupCPUWeight", "CPUQuota", "IOWeight", "AllowedCPUs")
IO_CLASSES = {"realtime": "1", "best-effort": "2", "idle": "3", "1": "1", "2": "2", "3": "3"}
CPU_POLICIES = {"batch": os.SCHED_BATCH, "idle": os.SCHED_IDLE}


@dataclass
class Scheduling:
    """What a unit's [Service] says about CPU and I/O scheduling."""

    unit: str
    settings: dict[str, str] = field(default_factory=dict)
    not_applied: dict[str, str] = field(default_factory=dict)
    # --sched weights: the unit's CPUWeight= as cgroup v1 cpu.shares, and the
    # group the process joins before exec (set while cpu_cgroups() holds it)
    shares: int | None = None
    cgroup: Path | None = None

    @classmethod
    def of_unit(cls, name: str) -> Scheduling:
        s = cls(name)
        for line in (REPO / "units" / name).read_text().splitlines():
            key, sep, value = line.partition("=")
            if not sep or line.lstrip().startswith("#"):
                continue
            if key in SCHEDULING_KEYS:
                s.settings[key] = value.strip()
            elif key in CGROUP_KEYS:
                s.not_applied[key] = value.strip()
        return s

    def preexec(self) -> None:
        """In the child before exec: the cgroup, Nice= and CPUSchedulingPolicy=,
        as systemd does. The child joins its group before it execs, so the
        daemon and every tcpdump it starts later are in it from their first
        instruction (children inherit the group): no window in which a fresh
        tcpdump runs outside it, as writing the pid after spawn would leave."""
        if self.cgroup is not None:
            fd = os.open(self.cgroup / "cgroup.procs", os.O_WRONLY)
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)
        nice = int(self.settings.get("Nice", "0"))
        if nice:
            os.nice(nice)
        policy = CPU_POLICIES.get(self.settings.get("CPUSchedulingPolicy", ""))
        if policy is not None:
            os.sched_setscheduler(0, policy, os.sched_param(0))

    def prefix(self) -> list[str]:
        """IOSchedulingClass=/IOSchedulingPriority= through ionice (no Python API)."""
        cls = IO_CLASSES.get(self.settings.get("IOSchedulingClass", ""))
        if cls is None:
            return []
        prio = self.settings.get("IOSchedulingPriority")
        return ["ionice", "-c", cls, *(["-n", prio] if prio and cls != "3" else [])]

    def describe(self) -> str:
        text = " ".join(f"{k}={v}" for k, v in self.settings.items()) or "default scheduling"
        if self.shares is not None:
            text += f" cpu.shares={self.shares} (own cgroup)"
        if self.not_applied:
            text += (
                " (not applied here: "
                + " ".join(f"{k}={v}" for k, v in self.not_applied.items())
                + ")"
            )
        return text


# -- scheduling variants (--sched, issue 24) -----------------------------------
# shipped: the units' Nice=/CPUSchedulingPolicy=/IOSchedulingClass= (the weights
#          not applied: the bench has no systemd);
# weights: shipped plus each unit's CPUWeight= as cgroup v1 cpu.shares, the
#          capture daemon (and so its tcpdumps) in one group, the offload in
#          another; the generator, SeaweedFS and everything else stay where they
#          are, as other services would;
# nice19:  offload at Nice=19 + CPUSchedulingPolicy=batch + IOSchedulingClass=idle
#          (the run the offload unit's comment recorded), no weights.
# IOWeight= stays unapplied in all three: on cgroup v1 it is blkio.weight, which
# only BFQ (or the old CFQ) honours, and this machine's disks offer
# none/mq-deadline/kyber.
# Nice= across units: systemd setsid()s every service, and with
# kernel.sched_autogroup_enabled=1 a task in the root cpu group is scheduled in
# its session's autogroup, so Nice= then ranks a service's threads against each
# other only, not against other services; the daemons here start in their own
# sessions too (start_rollcap), so "shipped" and "nice19" see what such a host
# sees. A task in a cpu cgroup other than the root is not in an autogroup: with
# "weights" the shares decide between the units.

SCHED_VARIANTS = ("shipped", "weights", "nice19")
CPU_CGROUP = Path("/sys/fs/cgroup/cpu")  # the cgroup v1 cpu hierarchy (hybrid host)
NICE19 = {"Nice": "19", "CPUSchedulingPolicy": "batch", "IOSchedulingClass": "idle"}


def cpu_shares(weight: int) -> int:
    """CPUWeight= as systemd writes it on a cgroup v1 host: cpu.shares =
    weight x 1024 / 100, clamped to [2, 262144] (systemd's src/core/cgroup.c,
    cgroup_cpu_weight_to_shares: 1024 shares and weight 100 are the defaults)."""
    return max(2, min(262144, weight * 1024 // 100))


def variant_scheduling(variant: str) -> dict[str, Scheduling]:
    """Capture's and offload's scheduling for one --sched variant."""
    sched = {
        "capture": Scheduling.of_unit("rollcap-capture.service"),
        "offload": Scheduling.of_unit("rollcap-offload.service"),
    }
    if variant == "weights":
        for s in sched.values():
            weight = s.not_applied.pop("CPUWeight", None)
            if weight is not None:
                s.shares = cpu_shares(int(weight))
    elif variant == "nice19":
        off = sched["offload"]
        off.settings = {k: v for k, v in off.settings.items() if k not in NICE19} | NICE19
    elif variant != "shipped":
        raise ValueError(f"--sched: unknown variant {variant!r}; allowed: {SCHED_VARIANTS}")
    for s in sched.values():
        if "IOWeight" in s.not_applied:
            s.not_applied["IOWeight"] += " (blkio.weight: BFQ only)"
    return sched


@contextlib.contextmanager
def cpu_cgroups(sched: dict[str, Scheduling], tag: str) -> Iterator[None]:
    """A cgroup v1 cpu group per role with shares, directly under the root
    (/sys/fs/cgroup/cpu/rollcap-bench-TAG-ROLE): siblings of the other tasks,
    as systemd's services are of each other. Not nested in one parent: a
    parent of 1024 shares would weigh the whole of rollcap as one nice-0 task
    against the generator. Removed afterwards, any straggler moved back to the
    root first."""
    made: list[Path] = []
    try:
        for role, s in sched.items():
            if s.shares is None:
                continue
            path = CPU_CGROUP / f"rollcap-bench-{tag}-{role}"
            path.mkdir()
            made.append(path)
            (path / "cpu.shares").write_text(str(s.shares))
            s.cgroup = path
        yield
    finally:
        for s in sched.values():
            s.cgroup = None
        for path in made:
            _remove_cgroup(path)


def _remove_cgroup(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            for pid in (path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (CPU_CGROUP / "cgroup.procs").write_text(pid)
        try:
            path.rmdir()
            return
        except OSError as e:
            # EBUSY while an exiting task is still being torn down
            if time.monotonic() > deadline:
                print(f"cannot remove {path}: {e}", file=sys.stderr)
                return
            time.sleep(0.1)


def cpu_cgroup_of(pid: int) -> str | None:
    """The process's group in the cgroup v1 cpu hierarchy ("/" = the root)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "cpu" in controllers.split(","):
                return path
    return None


def autogroup_of(pid: int) -> str | None:
    """/proc/PID/autogroup ("/autogroup-N nice 0"): the session group the
    scheduler uses while the process is in the root cpu group."""
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/autogroup").read_text().strip()
    return None


def _placed(pid: int) -> dict[str, Any]:
    return {"pid": pid, "cpu_cgroup": cpu_cgroup_of(pid), "autogroup": autogroup_of(pid)}


def autogroup_enabled() -> bool | None:
    with contextlib.suppress(OSError):
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    return None


def renice_tree(pid: int, nice: int) -> None:
    """Every thread of pid and of its children to `nice` (setpriority is per
    thread on Linux; threads created later inherit it)."""
    for p in [pid, *children(pid)]:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, int(task.name), nice)


def replay_top(veth: Veth, pcap: Path, seconds: float) -> dict[str, Any]:
    """tcpreplay as fast as it can (preloaded, looping) for `seconds`."""
    out = subprocess.run(
        ["tcpreplay", "-q", "-K", "--topspeed", f"--intf1={veth.a}", "--loop=0",
         f"--duration={max(1, round(seconds))}", str(pcap)],
        check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    ).stdout  # fmt: skip
    sent = re.search(r"Actual: (\d+) packets .* sent in ([\d.]+) seconds", out)
    rated = re.search(r"Rated: .*?([\d.]+) pps", out)
    if not sent:
        raise RuntimeError(f"cannot parse tcpreplay output: {out!r}")
    return {"sent": int(sent[1]), "seconds": float(sent[2]),
            "achieved_pps": float(rated[1]) if rated else None}  # fmt: skip


def top_bare(pcap: Path, seconds: float, work: Path, buffer_kib: int) -> dict[str, Any]:
    out_dir = work / "bare-top"
    out_dir.mkdir()
    os.chmod(out_dir, 0o1777)  # tcpdump drops to its own user before opening the file
    veth = Veth.create()
    try:
        td = subprocess.Popen(
            ["tcpdump", "-i", veth.b, "-B", str(buffer_kib), "-w", str(out_dir / "bare.pcap")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
        assert td.stderr is not None
        td.stderr.readline()  # "listening on ..."
        r = replay_top(veth, pcap, seconds)
        time.sleep(SETTLE)
        td.terminate()
        _, err = td.communicate(timeout=60)
    finally:
        veth.delete()
        shutil.rmtree(out_dir, ignore_errors=True)  # GBs at top speed; the counters suffice
    st = _tcpdump_stats(err)
    lost = st.get("kernel_drops", 0)
    return {**r, **st, "lost": lost}


def top_rollcap(
    pcap: Path, seconds: float, work: Path, w: SeaweedFS, sched: dict[str, Scheduling],
    rotate_mb: int, spool_mb: int,
) -> dict[str, Any]:  # fmt: skip
    spool = work / "spool-top"
    spool.mkdir()
    veth = Veth.create()
    cfg = offload_config(
        work / "live-top.toml", spool, w, f"top-{work.name}",
        capture={"interface": veth.b, "rotate_megabytes": rotate_mb},
        spool_settings={"max_megabytes": spool_mb},
    )  # fmt: skip
    env = rollcap_env(w.env())
    off = cap = None
    try:
        s_off, s_cap = sched["offload"], sched["capture"]
        off = start_rollcap("offload", cfg, work / "offload-top.log", env,
                            preexec=s_off.preexec, prefix=s_off.prefix())  # fmt: skip
        cap = start_rollcap("capture", cfg, work / "capture-top.log", env,
                            preexec=s_cap.preexec, prefix=s_cap.prefix())  # fmt: skip
        _wait_capturing(cap, spool)
        off_cpu0 = cpu_seconds(off.pid)
        r = replay_top(veth, pcap, seconds)
        off_cpu = cpu_seconds(off.pid) - off_cpu0
        time.sleep(SETTLE)
        stop(cap)
        state = read_state(spool / "capture" / "capture.json") or {}
        offload = read_state(spool / "state" / "offload.json") or {}
    finally:
        for p in (cap, off):
            if p is not None:
                stop(p)
        veth.delete()
        shutil.rmtree(spool, ignore_errors=True)
    lost = (state.get("kernel_drops") or 0) + (state.get("interface_drops") or 0)
    return {
        **r,
        "captured": state.get("packets_captured"),
        "kernel_drops": state.get("kernel_drops"),
        "interface_drops": state.get("interface_drops"),
        "lost": lost,
        "offload_cpu_s": off_cpu,
        "offload_uploaded_files": offload.get("uploaded_files"),
        "offload_uploaded_mb": (offload.get("uploaded_bytes_in") or 0) / 1e6,
        "backlog_files": offload.get("backlog_files"),
    }


def _top_line(kind: str, i: int, r: dict[str, Any]) -> str:
    line = (
        f"top speed round {i + 1} {kind}: sent {r['sent']} at {r['achieved_pps'] or 0:.0f} pps, "
        f"lost {r['lost']} (kernel drops {r.get('kernel_drops')})"
    )
    if kind == "rollcap":
        line += (
            f"; offload: {r['offload_cpu_s']:.1f} CPU s during the replay, "
            f"{r['offload_uploaded_files']} files ({r['offload_uploaded_mb']:.0f} MB) uploaded "
            f"and {r['backlog_files']} waiting when capture had stopped"
        )
    return line


def main_top_speed(a: argparse.Namespace) -> dict[str, Any]:
    from bench.datagen import dataset, zstd_ratio
    from rollcap.config.schema import CaptureConfig

    if a.quick:
        a.rounds, a.duration = 1, 10.0
    buffer_kib = a.buffer_kib or CaptureConfig.model_fields["buffer_kib"].default
    sched = {
        "capture": Scheduling.of_unit("rollcap-capture.service"),
        "offload": Scheduling.of_unit("rollcap-offload.service"),
    }
    pcap = dataset(1, a.mix_mb, seed=a.seed)[0]
    ratio = zstd_ratio([pcap])
    print(
        f"top speed: {a.rounds} round(s) of {a.duration:.0f} s per side; synthetic mix "
        f"{pcap.stat().st_size / 1e6:.0f} MB (seed {a.seed}, zstd -3 stores {ratio:.2f}), "
        f"-B {buffer_kib} for both; capture unit: {sched['capture'].describe()}; "
        f"offload unit: {sched['offload'].describe()}; SeaweedFS at nice 19"
    )
    res: dict[str, Any] = {
        "mode": "top-speed",
        "duration_s": a.duration,
        "rounds": a.rounds,
        "buffer_kib": buffer_kib,
        "mix": {"file_mb": pcap.stat().st_size / 1e6, "seed": a.seed, "zstd3_ratio": ratio},
        "scheduling": {k: {**s.settings, **s.not_applied} for k, s in sched.items()},
        "not_applied": {k: s.not_applied for k, s in sched.items() if s.not_applied},
        "rotate_megabytes": a.rotate_mb,
        "spool_megabytes": a.spool_mb,
    }
    runs: dict[str, list[dict[str, Any]]] = {"bare": [], "rollcap": []}
    with workdir("live-top") as work, seaweedfs() as w:
        assert w.proc is not None
        renice_tree(w.proc.pid, 19)  # stands in for a remote server
        for i in range(a.rounds):
            rnd = work / f"round{i}"
            rnd.mkdir()
            # alternate the order, so a noisy spell does not always hit one side
            for kind in ("bare", "rollcap") if i % 2 == 0 else ("rollcap", "bare"):
                if kind == "bare":
                    r = top_bare(pcap, a.duration, rnd, buffer_kib)
                else:
                    r = top_rollcap(pcap, a.duration, rnd, w, sched, a.rotate_mb, a.spool_mb)
                runs[kind].append(r)
                print(_top_line(kind, i, r))
    for kind, rs in runs.items():
        worst = dict(max(rs, key=lambda r: r["lost"]))  # worst of the rounds counts
        worst["all_lost"] = [r["lost"] for r in rs]
        worst["all_pps"] = [r["achieved_pps"] for r in rs]
        res[kind] = worst
    b, rc = res["bare"], res["rollcap"]
    verdict = "no more than" if rc["lost"] <= b["lost"] else "MORE than"
    print(
        f"top speed, worst of {a.rounds}: bare tcpdump -B {buffer_kib} lost {b['lost']} "
        f"(rounds {b['all_lost']}, generator {_pps(b['all_pps'])}); rollcap lost {rc['lost']} "
        f"(rounds {rc['all_lost']}, generator {_pps(rc['all_pps'])}): rollcap loses "
        f"{verdict} bare tcpdump"
    )
    write_result("live-topspeed", res)
    return res


def _pps(xs: list[float | None]) -> str:
    vals = [x for x in xs if x is not None]
    if not vals:
        return "n/a"
    return f"{min(vals) / 1e3:.0f}k-{max(vals) / 1e3:.0f}k pps"


# -- load: where are packets lost, and at what rate does each side stop losing --
# Both sides replay the same mix onto a fresh veth pair, alternating; each
# round runs the evidence sampler (bench.evidence) and a perf trace of the
# dirty-page throttle. rollcap runs as `python -m rollcap capture|offload`,
# the daemons' own code path, at the units' scheduling.

LOAD_MIXES = ("tls", "small")


def load_pcap(mix: str, seed: int, tls_mb: int, small_mb: int) -> Path:
    from bench.datagen import dataset, small_dataset

    return dataset(1, tls_mb, seed=seed)[0] if mix == "tls" else small_dataset(small_mb, seed)


class _Replay:
    """tcpreplay preloaded (-K), looping for `seconds`, at top speed or at pps."""

    def __init__(self, veth: Veth, pcap: Path, seconds: float, pps: int | None) -> None:
        rate = ["--topspeed"] if pps is None else [f"--pps={pps}"]
        self.proc = subprocess.Popen(
            ["tcpreplay", "-q", "-K", *rate, f"--intf1={veth.a}", "--loop=0",
             f"--duration={max(1, round(seconds))}", str(pcap)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc.poll() is None else []

    def result(self) -> dict[str, Any]:
        out, _ = self.proc.communicate(timeout=120)
        sent = re.search(r"Actual: (\d+) packets .* sent in ([\d.]+) seconds", out)
        rated = re.search(r"Rated: .*?([\d.]+) pps", out)
        if not sent:
            raise RuntimeError(f"cannot parse tcpreplay output: {out!r}")
        return {"sent": int(sent[1]), "seconds": float(sent[2]),
                "achieved_pps": float(rated[1]) if rated else None}  # fmt: skip


def _weed_pids(w: SeaweedFS) -> Callable[[], list[int]]:
    root = w.proc.pid if w.proc is not None else None
    return lambda: [] if root is None else [root, *ev.descendants(root)]


def _rel(p: Path) -> str:
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)


def _per_packet_us(cpu_s: float | None, packets: int | None) -> float | None:
    return None if cpu_s is None or not packets else round(cpu_s / packets * 1e6, 3)


def _summarise(sampler: ev.Sampler, trace: ev.DirtyTrace) -> dict[str, Any]:
    rows = sampler.rows
    drops = sampler.drop_seconds()
    keep = ("t_s", "new_drops", "host_busy_cores", "host_iowait_cores", "host_softirq_cores",
            "other_cpu_cores", "tcpdump_cpu_cores", "supervisor_cpu_cores",
            "offload_cpu_cores", "seaweedfs_cpu_cores", "tcpreplay_cpu_cores", "nr_dirty_mb",
            "nr_writeback_mb", "psi_cpu_some_ms_per_s", "psi_io_some_ms_per_s",
            "handoffs", "uploads", "tcpdump_dirty_throttled")  # fmt: skip

    def mean(key: str, rs: list[dict[str, Any]]) -> float | None:
        xs = [r[key] for r in rs if key in r]
        return round(statistics.fmean(xs), 3) if xs else None

    quiet = [r for r in rows if r not in drops]
    cols = [k for k in keep if k not in ("t_s", "new_drops") and any(k in r for r in rows)]
    return {
        "samples": len(rows),
        "drop_samples": [{k: r[k] for k in keep if k in r} for r in drops[:40]],
        "drop_sample_count": len(drops),
        # the host in the samples where drops grew vs the others: the contrast
        "mean_when_dropping": {k: mean(k, drops) for k in cols},
        "mean_otherwise": {k: mean(k, quiet) for k in cols},
        "max_nr_dirty_mb": max((r.get("nr_dirty_mb", 0) for r in rows), default=0),
        "tcpdump_dirty_throttled_samples": sum(1 for r in rows if r.get("tcpdump_dirty_throttled")),
        "roles": sampler.role_totals(),
        "dirty_throttle": trace.pauses(),
    }


def load_bare(
    pcap: Path, work: Path, seconds: float, pps: int | None, buffer_kib: int, w: SeaweedFS,
    timeline: Path, interval: float,
) -> dict[str, Any]:  # fmt: skip
    out_dir = work / "bare"
    out_dir.mkdir()
    os.chmod(out_dir, 0o1777)  # tcpdump drops to its own user before opening the file
    veth = Veth.create()
    drops = ev.DropSource()
    load0 = os.getloadavg()
    try:
        td = subprocess.Popen(
            ["tcpdump", "-i", veth.b, "-B", str(buffer_kib), "-w", str(out_dir / "bare.pcap")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
        assert td.stderr is not None
        td.stderr.readline()  # "listening on ..."
        lines: list[str] = []

        def read() -> None:
            assert td.stderr is not None
            for line in td.stderr:
                lines.append(line)
                drops.feed(line, str(td.pid))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        rp: _Replay | None = None
        roles: ev.Roles = {
            "tcpdump": lambda: [td.pid] if td.poll() is None else [],
            "tcpreplay": lambda: rp.pids() if rp else [],
            "seaweedfs": _weed_pids(w),
            "flush": ev.flushers,
            "bench": lambda: [os.getpid()],  # this process, with the sampler
        }
        sampler = ev.Sampler(roles, drops, signal_tcpdumps=roles["tcpdump"], interval=interval)
        with ev.DirtyTrace(work / "bare-perf.data") as trace:
            sampler.start()
            cpu0 = ev.proc_cpu(td.pid) or 0.0
            sampler.mark("replay start")
            rp = _Replay(veth, pcap, seconds, pps)
            r = rp.result()
            sampler.mark("replay end")
            time.sleep(SETTLE)
            cpu = (ev.proc_cpu(td.pid) or 0.0) - cpu0
            wb = ev.write_bytes(td.pid) or 0
            sampler.stop()
            td.terminate()
            td.wait(60)
            reader.join(10)
        others = ev.others_snapshot({os.getpid(), td.pid})
    finally:
        veth.delete()
        shutil.rmtree(out_dir, ignore_errors=True)  # GBs at top speed; the counters suffice
    final = _tcpdump_stats("".join(lines[-6:]))
    sampler.write_csv(timeline)
    captured = final.get("captured")
    return {
        **r, **final, "lost": final.get("kernel_drops", 0),
        "capture_cpu_s": round(cpu, 2), "capture_us_per_packet": _per_packet_us(cpu, captured),
        "tcpdump_write_mb": round(wb / MB, 1), "disk_bytes_per_captured_byte": 1.0 if wb else None,
        "loadavg_start": load0, "loadavg_end": os.getloadavg(), "others": others,
        "timeline": _rel(timeline),
        "evidence": _summarise(sampler, trace),
    }  # fmt: skip


def _capture_tree_cpu(cap: int) -> float:
    """The capture daemon's CPU: its own, its reaped tcpdumps', and its live ones'."""
    own = ev.proc_cpu(cap, with_children=True) or 0.0
    return own + sum(ev.proc_cpu(p) or 0.0 for p in ev.tcpdumps_of(cap))


def load_rollcap(
    pcap: Path, work: Path, seconds: float, pps: int | None, w: SeaweedFS,
    sched: dict[str, Scheduling], a: argparse.Namespace, timeline: Path, drain_s: float,
    variant: str = "shipped",
) -> dict[str, Any]:  # fmt: skip
    spool = work / "spool"
    spool.mkdir()
    veth = Veth.create()
    cfg = offload_config(
        work / "live-load.toml", spool, w, f"load-{work.parent.name}-{work.name}",
        capture={"interface": veth.b, "rotate_megabytes": a.rotate_mb,
                 "rotate_seconds": a.rotate_seconds},
        spool_settings={"max_megabytes": a.spool_mb},
    )  # fmt: skip
    # capture logs at debug: it echoes each tcpdump counters line (with
    # tcpdump_pid=), which the sampler asks for by SIGUSR1 every tick
    cap_cfg = work / "live-load-capture.toml"
    cap_cfg.write_text(cfg.read_text().replace('level = "info"', 'level = "debug"'))
    env = rollcap_env(w.env())
    drops = ev.DropSource()
    cap_log, off_log = work / "capture.log", work / "offload.log"
    off = cap = None
    load0 = os.getloadavg()
    res: dict[str, Any] = {}
    try:
        s_off, s_cap = sched["offload"], sched["capture"]
        off = start_rollcap("offload", cfg, off_log, env,
                            preexec=s_off.preexec, prefix=s_off.prefix())  # fmt: skip
        cap = start_rollcap("capture", cap_cfg, cap_log, env,
                            preexec=s_cap.preexec, prefix=s_cap.prefix())  # fmt: skip
        _wait_capturing(cap, spool)
        cap_pid, off_pid = cap.pid, off.pid
        # where the scheduler put them: the proof that a variant acted
        placement = {
            "capture": _placed(cap_pid), "offload": _placed(off_pid),
            "tcpdumps": [_placed(p) for p in ev.tcpdumps_of(cap_pid)],
        }  # fmt: skip
        rp: _Replay | None = None
        roles: ev.Roles = {
            "tcpdump": lambda: ev.tcpdumps_of(cap_pid),
            "supervisor": lambda: [cap_pid],
            "offload": lambda: [off_pid, *ev.descendants(off_pid)],
            "seaweedfs": _weed_pids(w),
            "tcpreplay": lambda: rp.pids() if rp else [],
            "flush": ev.flushers,
            "bench": lambda: [os.getpid()],  # this process, with the sampler
        }
        tails = [ev.LogTail(cap_log, drops, {"handoffs": "handed off "}),
                 ev.LogTail(off_log, None, {"uploads": "stored and verified"})]  # fmt: skip
        sampler = ev.Sampler(roles, drops, signal_tcpdumps=roles["tcpdump"],
                             log_tails=tails, interval=a.interval)  # fmt: skip
        with ev.DirtyTrace(work / "rollcap-perf.data") as trace:
            sampler.start()
            cpu0 = _capture_tree_cpu(cap_pid)
            off_cpu0 = ev.proc_cpu(off_pid, with_children=True) or 0.0
            cap_wb0 = ev.write_bytes(cap_pid) or 0
            off_wb0 = ev.write_bytes(off_pid) or 0
            sampler.mark("replay start")
            rp = _Replay(veth, pcap, seconds, pps)
            r = rp.result()
            sampler.mark("replay end")
            time.sleep(SETTLE)
            cpu = _capture_tree_cpu(cap_pid) - cpu0
            off_cpu = (ev.proc_cpu(off_pid, with_children=True) or 0.0) - off_cpu0
            live_td = ev.tcpdumps_of(cap_pid)
            # the daemon's write_bytes holds its reaped tcpdumps'; add the live ones'
            cap_tree_wb = (
                (ev.write_bytes(cap_pid) or 0)
                - cap_wb0
                + sum((ev.write_bytes(p) or 0) - sampler.wb_first.get(p, 0) for p in live_td)
            )
            off_wb = (ev.write_bytes(off_pid) or 0) - off_wb0
            # SIGTERM hands off the last files (overlap strips for at most 5 s,
            # then left for the next start): time it; killed (the unit's
            # TimeoutStopSec= is 30 s), its state is stale
            t_stop = time.monotonic()
            sampler.mark("capture stopping")
            stop_rc = stop(cap, timeout=STOP_TIMEOUT)
            stop_s = round(time.monotonic() - t_stop, 1)
            sampler.mark("capture stopped")
            drained = wait_drained(spool, off, drain_s) if drain_s > 0 else None
            if drain_s > 0:
                sampler.mark("drained" if drained is not None else "drain timed out")
            off_wb_all = (ev.write_bytes(off_pid) or 0) - off_wb0
            sampler.stop()
        others = ev.others_snapshot({os.getpid(), cap_pid, off_pid})
        state = read_state(spool / "capture" / "capture.json") or {}
        offload = read_state(spool / "state" / "offload.json") or {}
    finally:
        for p in (cap, off):
            if p is not None:
                stop(p)
        veth.delete()
        shutil.rmtree(spool, ignore_errors=True)
    sampler.write_csv(timeline)
    td_wb = sum(
        sampler.wb_last[p] - sampler.wb_first[p]
        for p, role in sampler.role_of.items() if role == "tcpdump" and p in sampler.wb_last
    )  # fmt: skip
    captured = state.get("packets_captured")
    summary = _summarise(sampler, trace)
    # the daemon's write_bytes includes its reaped tcpdumps': its own is the rest
    summary["roles"]["supervisor"]["write_mb"] = round((cap_tree_wb - td_wb) / MB, 1)
    weed_mb = summary["roles"].get("seaweedfs", {}).get("write_mb")
    lost: int | None = (state.get("kernel_drops") or 0) + (state.get("interface_drops") or 0)
    if stop_rc is None or stop_rc < 0:
        lost = None  # killed: its last counters never reached the state file
    res = {
        **r, "sched": variant, "placement": placement,
        "captured": captured, "kernel_drops": state.get("kernel_drops"),
        "interface_drops": state.get("interface_drops"), "lost": lost,
        "handed_off_files": state.get("handed_off_files"),
        "capture_stop_s": stop_s, "capture_exit": stop_rc,
        "capture_cpu_s": round(cpu, 2), "capture_us_per_packet": _per_packet_us(cpu, captured),
        "offload_cpu_s": round(off_cpu, 2),
        "tcpdump_write_mb": round(td_wb / MB, 1),
        "capture_tree_write_mb": round(cap_tree_wb / MB, 1),
        "supervisor_write_mb": round((cap_tree_wb - td_wb) / MB, 1),
        "offload_write_mb_during_replay": round(off_wb / MB, 1),
        "offload_write_mb_incl_drain": round(off_wb_all / MB, 1),
        "seaweedfs_write_mb": weed_mb,
        # every byte the capture host's daemons put on disk per byte tcpdump wrote
        # (the offload's share counts what it wrote while capture ran; drain: below)
        "disk_bytes_per_captured_byte": round((cap_tree_wb + off_wb) / td_wb, 3) if td_wb else None,
        "disk_bytes_per_captured_byte_incl_drain":
            round((cap_tree_wb + off_wb_all) / td_wb, 3) if td_wb and drain_s > 0 else None,
        "offload_uploaded_files": offload.get("uploaded_files"),
        "offload_uploaded_mb": round((offload.get("uploaded_bytes_in") or 0) / 1e6, 1),
        "backlog_files_at_end": offload.get("backlog_files"),
        "drain_s": drained, "drain_timeout_s": drain_s if drain_s > 0 else None,
        "loadavg_start": load0, "loadavg_end": os.getloadavg(), "others": others,
        "timeline": _rel(timeline),
        "evidence": summary,
    }  # fmt: skip
    return res


def _load_line(what: str, kind: str, r: dict[str, Any]) -> str:
    e = r["evidence"]
    line = (
        f"{what} {kind}: sent {r['sent']} at {r['achieved_pps'] or 0:.0f} pps, lost {r['lost']}, "
        f"capture {r['capture_us_per_packet']} CPU us/packet, disk bytes per captured byte "
        f"{r['disk_bytes_per_captured_byte']}; drops grew in {e['drop_sample_count']} of "
        f"{e['samples']} samples; max dirty {e['max_nr_dirty_mb']} MB; load "
        f"{r['loadavg_start'][0]:.2f}->{r['loadavg_end'][0]:.2f}"
    )
    if kind.startswith("rollcap"):
        line += f"; capture stopped in {r['capture_stop_s']} s (exit {r['capture_exit']})"
    if kind.startswith("rollcap") and r.get("drain_timeout_s"):
        line += f"; drained in {r['drain_s']} s" if r["drain_s"] is not None else "; NOT drained"
    pauses = e["dirty_throttle"].get("by_process") or {}
    if pauses:
        line += "; dirty-throttle ms: " + ", ".join(
            f"{k} {v['pause_ms']:.0f}" for k, v in sorted(pauses.items())
        )
    return line


def main_load(a: argparse.Namespace) -> dict[str, Any]:
    from rollcap.config.schema import CaptureConfig

    buffer_kib = a.buffer_kib or CaptureConfig.model_fields["buffer_kib"].default
    phases = a.phases.split(",")
    variants = a.sched.split(",")
    for v in variants:
        if v not in SCHED_VARIANTS:
            sys.exit(f"--sched: unknown variant {v!r}; allowed: {', '.join(SCHED_VARIANTS)}")
    # any variant but the shipped one alone: the variants' comparison, top speed
    # only, in a result of its own (live-load-MIX.json keeps bare vs shipped)
    compare = variants != ["shipped"]
    # drain: each round then also times the offload's drain of the backlog
    drain = compare and phases == ["top", "drain"]
    if compare and phases != ["top"] and not drain:
        sys.exit(f"--sched {a.sched}: --phases top or top,drain, not {a.phases}")
    if "weights" in variants and not (CPU_CGROUP / "cpu.shares").is_file():
        sys.exit(f"--sched weights: no cgroup v1 cpu controller at {CPU_CGROUP}")
    scheds = {v: variant_scheduling(v) for v in variants}
    sched = scheds.get("shipped") or variant_scheduling("shipped")
    pcap = load_pcap(a.mix, a.seed, a.mix_mb, a.small_mb)
    result_name = f"live-sched-{a.mix}" if compare else f"live-load-{a.mix}"
    if drain:
        result_name += "-drain"
    prev_path = RESULTS / f"{result_name}.json"
    res: dict[str, Any] = (
        json.loads(prev_path.read_text()) if prev_path.exists() and not compare else {}
    )
    res.pop("benchmark", None)
    res.pop("machine", None)
    res.update({
        "mode": "load", "mix": a.mix,
        "mix_file": {"file_mb": round(pcap.stat().st_size / 1e6, 1),
                     "packets": count_packets(pcap), "seed": a.seed},
        "buffer_kib": buffer_kib, "rotate_megabytes": a.rotate_mb,
        "rotate_seconds": a.rotate_seconds, "spool_megabytes": a.spool_mb,
        "sched": variants if compare else "shipped",
        "scheduling": {k: {**s.settings, **s.not_applied} for k, s in sched.items()},
        "seaweedfs_nice": 19, "sample_interval_s": a.interval,
        "sched_autogroup_enabled": autogroup_enabled(),
    })  # fmt: skip
    if compare:
        res["variants"] = {
            v: {role: {**s.settings, **({"cpu.shares": s.shares} if s.shares else {}),
                       "not_applied": s.not_applied}
                for role, s in sc.items()}
            for v, sc in scheds.items()
        }  # fmt: skip
    tl = Path(a.timeline_dir)
    print(
        f"load on the {a.mix} mix ({pcap.stat().st_size / 1e6:.0f} MB), phases {phases}; "
        f"-B {buffer_kib}; rotate every {a.rotate_seconds} s or {a.rotate_mb} MB; SeaweedFS "
        f"nice 19; autogroup {autogroup_enabled()}; load average {os.getloadavg()}"
    )
    for v, sc in scheds.items():
        print(f"  {v}: capture {sc['capture'].describe()}; offload {sc['offload'].describe()}")
    with workdir("live-load") as work, seaweedfs() as w:
        assert w.proc is not None
        renice_tree(w.proc.pid, 19)  # stands in for a remote server
        n = 0

        def one(kind: str, what: str, pps: int | None, seconds: float,
                drain_s: float = 0.0, variant: str = "shipped") -> dict[str, Any]:  # fmt: skip
            nonlocal n
            n += 1
            rnd = work / f"r{n}"
            rnd.mkdir()
            # the variant in the round's name whenever variants are compared
            label = kind if kind == "bare" or not compare else f"{kind}-{variant}"
            t = tl / f"{a.mix}-{what}-{label}-{n}.csv"
            if kind == "bare":
                r = load_bare(pcap, rnd, seconds, pps, buffer_kib, w, t, a.interval)
            else:
                sc = scheds.get(variant) or sched
                with cpu_cgroups(sc, f"{os.getpid()}-{n}"):
                    r = load_rollcap(pcap, rnd, seconds, pps, w, sc, a, t, drain_s, variant)
            r["offered_pps"] = pps
            print(_load_line(what, label, r), flush=True)
            return r

        if compare:
            # every label takes every place in the order once per len(labels)
            # rounds, so a noisy spell does not always hit the same variant
            labels = ([] if a.no_bare else ["bare"]) + variants
            vruns: dict[str, list[dict[str, Any]]] = {k: [] for k in labels}
            for i in range(a.rounds):
                first = i % len(labels)
                for label in labels[first:] + labels[:first]:
                    if label == "bare":
                        r = one("bare", f"top{i + 1}", None, a.duration)
                    else:
                        d_s = a.drain_timeout if drain else 0.0
                        r = one("rollcap", f"top{i + 1}", None, a.duration, d_s, label)
                    vruns[label].append(r)
            summary = {label: _variant_summary(rs) for label, rs in vruns.items()}
            res["top"] = {"duration_s": a.duration, "rounds": vruns, "by_variant": summary}
            for label, sm in summary.items():
                print(_variant_line(label, sm))
            write_result(result_name, res)
            return res
        if "top" in phases:
            runs: dict[str, list[dict[str, Any]]] = {"bare": [], "rollcap": []}
            for i in range(a.rounds):
                for kind in ("bare", "rollcap") if i % 2 == 0 else ("rollcap", "bare"):
                    runs[kind].append(one(kind, f"top{i + 1}", None, a.duration))
            res["top"] = {"duration_s": a.duration, "rounds": runs, **_worst(runs), **_when()}
            tops = [r["achieved_pps"] for r in runs["bare"] if r["achieved_pps"]]
            res["bare_top_pps"] = round(statistics.median(tops)) if tops else None
        base = a.base_pps or res.get("bare_top_pps")
        if base is None and ("fixed" in phases or "bisect" in phases):
            sys.exit("no bare top rate: run the top phase first or give --base-pps")
        if "fixed" in phases:
            assert base is not None
            pps = round(base * a.fixed_share)
            runs = {"bare": [], "rollcap": []}
            for i in range(a.fixed_rounds):
                for kind in ("bare", "rollcap") if i % 2 == 0 else ("rollcap", "bare"):
                    runs[kind].append(one(kind, f"fixed{i + 1}", pps, a.duration))
            res["fixed"] = {"offered_pps": pps, "share_of_bare_top": a.fixed_share,
                            "base_pps": base, "duration_s": a.duration, "rounds": runs,
                            **_worst(runs), **_when()}  # fmt: skip
        if "bisect" in phases:
            assert base is not None
            res["bisect"] = {**{k: _bisect(k, base, a, one) for k in ("bare", "rollcap")},
                             **_when()}  # fmt: skip
        if "drain" in phases:
            assert base is not None
            pps = round(base * a.fixed_share)
            r = one("rollcap", "drain", pps, a.duration, drain_s=a.drain_timeout)
            res["drain"] = {**r, **_when()}
    write_result(result_name, res)
    return res


def _when() -> dict[str, Any]:
    """When a phase ended and the load then: phases of one results file may come
    from different runs (they are merged), each names its own machine state."""
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "loadavg_end": os.getloadavg()[0]}  # fmt: skip


def _loads(t: dict[str, Any]) -> str:
    """'2026-12-08 01:27 UTC, load 0.6-3.9' of a phase (its rounds' 1-minute load
    averages), or 'an earlier run' for a phase written before phases were dated."""
    rounds = [r for rs in (t.get("rounds") or {}).values() for r in rs]
    if "loadavg_start" in t:
        rounds.append(t)
    ends = [(r.get("loadavg_start", [None])[0], r.get("loadavg_end", [None])[0]) for r in rounds]
    la = [x for pair in ends for x in pair if x is not None]
    when = t.get("date", "an earlier run")
    return f"{when}, load {min(la):.1f}-{max(la):.1f}" if la else when


def _worst(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, rs in runs.items():
        if not rs:
            continue
        out[f"{kind}_lost"] = [r["lost"] for r in rs]
        out[f"{kind}_pps"] = [r["achieved_pps"] for r in rs]
        known = [r["lost"] for r in rs if r["lost"] is not None]
        out[f"{kind}_worst_lost"] = max(known) if known else None
        out[f"{kind}_unknown_rounds"] = len(rs) - len(known)
        us = [r["capture_us_per_packet"] for r in rs if r["capture_us_per_packet"]]
        out[f"{kind}_us_per_packet_median"] = round(statistics.median(us), 3) if us else None
        db = [r["disk_bytes_per_captured_byte"] for r in rs if r["disk_bytes_per_captured_byte"]]
        out[f"{kind}_disk_bytes_per_byte_median"] = round(statistics.median(db), 3) if db else None
    return out


def _median(xs: list[Any]) -> float | None:
    vals = [x for x in xs if x is not None]
    return round(statistics.median(vals), 3) if vals else None


def _variant_summary(rs: list[dict[str, Any]]) -> dict[str, Any]:
    """One --sched variant's rounds: the worst and the median loss, the
    generator's rate, capture CPU per packet, the offload's CPU, the load."""
    lost = [r["lost"] for r in rs]
    known = [x for x in lost if x is not None]
    out: dict[str, Any] = {
        "lost": lost,
        "worst_lost": max(known) if known else None,
        "median_lost": _median(known),
        "unknown_rounds": len(lost) - len(known),
        "pps": [r["achieved_pps"] for r in rs],
        "pps_median": _median([r["achieved_pps"] for r in rs]),
        "us_per_packet": [r.get("capture_us_per_packet") for r in rs],
        "us_per_packet_median": _median([r.get("capture_us_per_packet") for r in rs]),
        "loadavg_1min_start": [round(r["loadavg_start"][0], 2) for r in rs],
        "loadavg_1min_end": [round(r["loadavg_end"][0], 2) for r in rs],
    }
    if any("offload_cpu_s" in r for r in rs):
        # capture_us_per_packet counts the replay only: work a starved
        # supervisor defers to its stop falls outside it, so the whole
        # round's sampled CPU is the fair per-packet figure
        out["us_per_packet_whole_round"] = [_whole_round_us(r) for r in rs]
        out["us_per_packet_whole_round_median"] = _median(out["us_per_packet_whole_round"])
        out["capture_stop_s"] = [r.get("capture_stop_s") for r in rs]
        out["offload_cpu_s"] = [r.get("offload_cpu_s") for r in rs]
        out["offload_cpu_s_median"] = _median(out["offload_cpu_s"])
        out["offload_uploaded_mb"] = [r.get("offload_uploaded_mb") for r in rs]
        out["backlog_files_at_end"] = [r.get("backlog_files_at_end") for r in rs]
        if any(r.get("drain_timeout_s") for r in rs):
            # None: not drained within --drain-timeout
            out["drain_s"] = [r.get("drain_s") for r in rs]
            out["drain_timeout_s"] = rs[0].get("drain_timeout_s")
    return out


def _whole_round_us(r: dict[str, Any]) -> float | None:
    """tcpdump's and the supervisor's CPU over the sampler's whole round
    (replay, settle and stop) per captured packet."""
    roles = r["evidence"]["roles"]
    cpu = sum((roles.get(k) or {}).get("cpu_s_sampled", 0.0) for k in ("tcpdump", "supervisor"))
    return _per_packet_us(cpu, r.get("captured"))


def _variant_line(label: str, sm: dict[str, Any]) -> str:
    def f(xs: list[Any]) -> str:
        return ", ".join("?" if x is None else f"{x:g}" for x in xs)

    line = (
        f"{label}: lost worst {sm['worst_lost']}, median {sm['median_lost']} ({f(sm['lost'])}); "
        f"generator median {(sm['pps_median'] or 0) / 1e3:.0f}k pps "
        f"({f([round((x or 0) / 1e3) for x in sm['pps']])}k); capture "
        f"{sm['us_per_packet_median']} CPU us/packet; load {f(sm['loadavg_1min_start'])}"
    )
    if "offload_cpu_s" in sm:
        line += (
            f"; whole round {sm['us_per_packet_whole_round_median']} us/packet; capture "
            f"stop s {f(sm['capture_stop_s'])}; offload CPU s {f(sm['offload_cpu_s'])}, "
            f"uploaded MB {f(sm['offload_uploaded_mb'])}, backlog files "
            f"{f(sm['backlog_files_at_end'])}"
        )
    return line


def _bisect(
    kind: str, base: int, a: argparse.Namespace,
    one: Callable[..., dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    """The highest offered rate with zero loss, within [lo, base], in at most
    --bisect-rounds rounds of --bisect-duration s (one round per rate: a
    noisy spell makes a rate look worse, never better)."""
    lo, hi = 0, base
    steps = []
    pps = round(base * a.fixed_share)
    for _ in range(a.bisect_rounds):
        r = one(kind, f"bisect{pps}", pps, a.bisect_duration)
        ok = r["lost"] == 0  # unknown (killed at stop) counts as lossy
        steps.append({"offered_pps": pps, "achieved_pps": r["achieved_pps"], "lost": r["lost"],
                      "capture_us_per_packet": r["capture_us_per_packet"]})  # fmt: skip
        if ok:
            lo = pps
        else:
            hi = pps
        pps = (lo + hi) // 2
        if hi - lo < base * 0.02:
            break
    return {"highest_zero_loss_pps": lo or None, "lowest_lossy_pps": hi if hi < base else None,
            "steps": steps}  # fmt: skip


def render_load() -> str:
    """The README block of the load figures, from bench/results/live-load-*.json."""
    rows = ["| Mix | Phase | rollcap lost (rounds) | bare tcpdump lost (rounds) | Notes |",
            "| --- | --- | --- | --- | --- |"]  # fmt: skip
    dates = []

    def n(xs: list[int | None]) -> str:
        return ", ".join("?" if x is None else str(x) for x in xs)

    def k(xs: list[Any]) -> str:
        return ", ".join(f"{x / 1e3:.0f}k" for x in xs if x)

    for path in sorted(RESULTS.glob("live-load-*.json")):
        d = json.loads(path.read_text())
        m = d["machine"]
        run = path.stem.removeprefix("live-load-")
        dates.append(f"{run} last run {m['date']}")
        label = f"{run} ({d['mix_file']['file_mb']:.0f} MB, {d['mix_file']['packets']} packets)"
        if d.get("label_note"):
            label += f"; {d['label_note']}"
        for phase in ("top", "fixed"):
            t = d.get(phase)
            if not t:
                continue
            what = ("top speed" if phase == "top" else
                    f"{t['offered_pps'] / 1e3:.0f}k pps offered (90% of bare's top)")  # fmt: skip
            rows.append(
                f"| {label} | {what}, {len(t['bare_lost'])} × {t['duration_s']:.0f} s | "
                f"**{t['rollcap_worst_lost']}** ({n(t['rollcap_lost'])}; "
                + ("? = killed at stop, loss unknown; " if None in t["rollcap_lost"] else "")
                + f"generator {k(t['rollcap_pps'])} pps) | {t['bare_worst_lost']} "
                f"({n(t['bare_lost'])}; generator {k(t['bare_pps'])} pps) | "
                f"capture CPU {t['rollcap_us_per_packet_median']} vs "
                f"{t['bare_us_per_packet_median']} µs/packet; disk bytes per captured byte "
                f"{t['rollcap_disk_bytes_per_byte_median']} (while capturing); {_loads(t)} |"
            )
        b = d.get("bisect")
        if b:

            def z(x: dict[str, Any]) -> str:
                hz = x["highest_zero_loss_pps"]
                return f"{hz / 1e3:.0f}k pps" if hz else "none found"

            def steps(x: dict[str, Any]) -> str:
                return ", ".join(
                    f"{st['offered_pps'] / 1e3:.0f}k ({(st['achieved_pps'] or 0) / 1e3:.0f}k)"
                    for st in x["steps"]
                )

            rows.append(
                f"| {label} | highest zero-loss rate, bisection "
                f"({len(b['rollcap']['steps'])}/{len(b['bare']['steps'])} rounds) | "
                f"{z(b['rollcap'])} | {z(b['bare'])} | offered (reached) pps: rollcap "
                f"{steps(b['rollcap'])}; bare {steps(b['bare'])}; no lossy rate found below "
                f"bare's top, the generator being short of CPU; {_loads(b)} |"
            )
        dr = d.get("drain")
        if dr:
            drained = (f"drained in {dr['drain_s']} s" if dr["drain_s"] is not None
                       else f"not drained in {dr['drain_timeout_s']:.0f} s")  # fmt: skip
            rows.append(
                f"| {label} | backlog after {dr['seconds']:.0f} s at "
                f"{(dr['achieved_pps'] or 0) / 1e3:.0f}k pps | lost {dr['lost']}; {drained} | | "
                f"disk bytes per captured byte incl. the drain "
                f"{dr['disk_bytes_per_captured_byte_incl_drain']}; {_loads(dr)} |"
            )
    head = ("`python3 -m bench.live --load --mix tls|small` (as root): " + "; ".join(dates)
            + ". Each row names when it ran and the 1-minute load average over its rounds "
            "(2 cores; above 2, other work shared them).")  # fmt: skip
    return head + "\n\n" + "\n".join(rows) + "\n"


SCHED_WHAT = {
    "bare": "bare `tcpdump -B 32768 -w` (reference)",
    "shipped": "units' Nice=/IOSchedulingClass=, no weights",
    "weights": "shipped + CPUWeight= as cgroup v1 cpu.shares",
    "nice19": "offload Nice=19 + batch + idle I/O, no weights",
}


def render_sched() -> str:
    """The --sched comparison, from bench/results/live-sched-*.json."""
    rows = ["| Mix | rollcap scheduling | lost: worst, median (rounds) | generator pps: median "
            "(rounds) | capture CPU µs/packet, median: replay / whole round | capture stop s "
            "| offload CPU s in the replay (MB uploaded by the round's end) | backlog "
            "drained in s (? = not in --drain-timeout) | load average (1 min) at each "
            "round's start |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    dates = []

    def g(xs: list[Any]) -> str:
        return ", ".join("?" if x is None else f"{x:g}" for x in xs)

    for path in sorted(RESULTS.glob("live-sched-*.json")):
        d = json.loads(path.read_text())
        m, top = d["machine"], d["top"]
        what = dict(SCHED_WHAT)
        if "weights" in d.get("variants", {}):
            v = d["variants"]["weights"]
            what["weights"] = (
                f"shipped + CPUWeight= as cpu.shares (capture {v['capture'].get('cpu.shares')}, "
                f"offload {v['offload'].get('cpu.shares')})"
            )
        mix = path.stem.removeprefix("live-sched-")
        rounds = max(len(sm["lost"]) for sm in top["by_variant"].values())
        dates.append(f"{mix} {m['date']}, {rounds} rounds of {top['duration_s']:.0f} s per variant")
        # from the rounds, so a result written before a summary figure existed has it too
        for label, sm in ((k, _variant_summary(rs)) for k, rs in top["rounds"].items()):
            cpu_mb = zip(
                sm.get("offload_cpu_s", []), sm.get("offload_uploaded_mb", []), strict=True
            )
            whole = sm.get("us_per_packet_whole_round_median", "n/a")
            off = ", ".join(f"{c:g} ({u:g})" for c, u in cpu_mb if c is not None and u is not None)
            rows.append(
                f"| {mix} | {label}: {what.get(label, label)} | **{sm['worst_lost']}**, "
                f"{sm['median_lost']} ({g(sm['lost'])}) | "
                f"{(sm['pps_median'] or 0) / 1e3:.0f}k "
                f"({g([round((x or 0) / 1e3) for x in sm['pps']])}k) | "
                f"{sm['us_per_packet_median']} / {whole}"
                f" | {g(sm.get('capture_stop_s', []))} | {off} | {g(sm.get('drain_s', []))} | "
                f"{g(sm['loadavg_1min_start'])} |"
            )
    head = ("`python3 -m bench.live --load --mix tls|small --phases top --sched "
            "shipped,weights,nice19` (as root, top speed, rounds alternating): "
            + "; ".join(dates) + ". Lost = tcpdump's kernel drops.")  # fmt: skip
    return head + "\n\n" + "\n".join(rows) + "\n"


def _write_block(name: str, text: str) -> None:
    """Between <!-- NAME:start --> and <!-- NAME:end --> in README.md, if both are there."""
    readme = REPO / "README.md"
    start, end = f"<!-- {name}:start -->\n", f"<!-- {name}:end -->"
    doc = readme.read_text()
    if start in doc and end in doc:
        head, rest = doc.split(start, 1)
        readme.write_text(head + start + text + end + rest.split(end, 1)[1])
        print(f"wrote the {name} block of {readme.relative_to(REPO)}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rates", default="50000,150000,250000", help="packets/s, comma-separated")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of traffic per run")
    ap.add_argument("--quick", action="store_true", help="50k and 150k pps for 12 s")
    ap.add_argument("--reps", type=int, default=2, help="runs per rate; fewest lost counts")
    ap.add_argument(
        "--offload-nice", type=int, default=unit_nice(),
        help="run offload under nice -n N (default: Nice= of units/rollcap-offload.service)",
    )  # fmt: skip
    top = ap.add_argument_group("--top-speed: the generator as fast as it goes")
    top.add_argument("--top-speed", action="store_true", help="the top-speed mode (see below)")
    top.add_argument("--rounds", type=int, default=3, help="rounds per side; the worst counts")
    top.add_argument("--mix-mb", type=int, default=64, help="size of the replayed synthetic mix")
    top.add_argument("--seed", type=int, default=1, help="seed of the synthetic mix")
    top.add_argument(
        "--buffer-kib",
        type=int,
        default=0,
        help="-B for both sides (default: capture.buffer_kib's default)",
    )
    top.add_argument("--rotate-mb", type=int, default=200, help="capture.rotate_megabytes")
    top.add_argument("--spool-mb", type=int, default=20000, help="spool.max_megabytes")
    ld = ap.add_argument_group("--load: bare vs rollcap at top speed, a fixed rate, bisection")
    ld.add_argument("--load", action="store_true", help="the load mode (bench.evidence timelines)")
    ld.add_argument("--mix", choices=LOAD_MIXES, default="tls",
                    help="tls: bench.datagen's TLS/HTTP mix; small: frames <= 128 B")  # fmt: skip
    ld.add_argument("--small-mb", type=int, default=16, help="size of the small-packet mix")
    ld.add_argument("--phases", default="top,fixed,bisect,drain",
                    help="comma-separated subset of top,fixed,bisect,drain")  # fmt: skip
    ld.add_argument("--rotate-seconds", type=int, default=10, help="capture.rotate_seconds")
    ld.add_argument("--base-pps", type=int, default=0,
                    help="bare's top rate, when the top phase is not run (default: the "
                         "last live-load-MIX.json)")  # fmt: skip
    ld.add_argument("--fixed-share", type=float, default=0.9, help="fixed rate / bare's top")
    ld.add_argument("--fixed-rounds", type=int, default=1, help="rounds per side at that rate")
    ld.add_argument("--bisect-rounds", type=int, default=4, help="rounds per side, at most")
    ld.add_argument("--bisect-duration", type=float, default=12.0, help="seconds per round")
    ld.add_argument("--drain-timeout", type=float, default=300.0,
                    help="drain phase: seconds to wait for the backlog to be stored")  # fmt: skip
    ld.add_argument(
        "--sched",
        default="shipped",
        help="comma-separated scheduling variants of rollcap: shipped (the units' "
        "Nice= etc.), weights (plus their CPUWeight= as cgroup v1 cpu.shares), "
        "nice19 (offload at Nice=19 + batch + idle I/O); any but shipped alone: "
        "--phases top or top,drain, rounds alternating, bench/results/live-sched-MIX.json",
    )
    ld.add_argument(
        "--no-bare",
        action="store_true",
        help="with --sched variants: leave out bare tcpdump (the reference)",
    )
    ld.add_argument("--interval", type=float, default=0.1, help="sampling interval, seconds")
    ld.add_argument("--timeline-dir", default=str(RESULTS / "live-timeline"),
                    help="where each round's timeline CSV goes")  # fmt: skip
    ld.add_argument(
        "--render", action="store_true", help="write the README's live-load block and exit"
    )
    a = ap.parse_args(argv)
    if a.render:
        text = render_load()
        _write_block("live-load", text)
        print(text, end="")
        if any(RESULTS.glob("live-sched-*.json")):
            text = render_sched()
            _write_block("live-sched", text)
            print("\n" + text, end="")
        return {}
    if os.geteuid() != 0:
        sys.exit("bench.live needs root (veth pairs, tcpdump)")
    if a.load:
        if not argv or "--rounds" not in " ".join(argv):
            a.rounds = 6
        if not argv or "--rotate-mb" not in " ".join(argv):
            a.rotate_mb = 50
        if not argv or "--duration" not in " ".join(argv):
            a.duration = 20.0
        return main_load(a)
    if a.top_speed:
        return main_top_speed(a)
    rates = [int(x) for x in a.rates.split(",")]
    if a.quick:
        rates, a.duration, a.reps = [50000, 150000], 12.0, 1
    res: dict[str, Any] = {
        "duration_s": a.duration,
        "rotate_seconds": 10,
        "offload_nice": a.offload_nice,
        "reps": a.reps,
        "rates": {},
    }
    with workdir("live") as work:
        pcap = merged_pcaps(work)
        res["replayed_file_packets"] = count_packets(pcap)
        have_rollcap = rollcap_available()
        with seaweedfs() as w:
            for pps in rates:
                runs: dict[str, list[dict[str, Any]]] = {"bare": [], "rollcap": []}
                for i in range(a.reps):
                    rep = work / f"rep{i}"
                    rep.mkdir(exist_ok=True)
                    # alternate the order, so a noisy spell does not always hit one side
                    order = ["bare", "rollcap"] if i % 2 == 0 else ["rollcap", "bare"]
                    for kind in order:
                        if kind == "bare":
                            b = run_bare(pcap, pps, a.duration, rep)
                            runs["bare"].append(b)
                            print(
                                f"{pps} pps bare tcpdump: sent {b['sent']} at "
                                f"{b['achieved_pps']:.0f} pps, stored {b['stored']}, "
                                f"lost {b['lost']} (kernel drops {b.get('kernel_drops')})"
                            )
                        elif have_rollcap:
                            rc = run_rollcap(pcap, pps, a.duration, rep, w, a.offload_nice)
                            runs["rollcap"].append(rc)
                            print(
                                f"{pps} pps rollcap: sent {rc['sent']} at "
                                f"{rc['achieved_pps']:.0f} pps, stored {rc['stored']}, "
                                f"lost {rc['lost']}; latency p50 {_s(rc['latency_p50_s'])}, "
                                f"p99 {_s(rc['latency_p99_s'])} over {len(rc['latency_s'])} files; "
                                f"without the offload's own work p99 "
                                f"{_s(_pct(sorted(rc['latency_minus_offload_work_s']), 99))}"
                            )
                row: dict[str, Any] = {}
                for kind, rs in runs.items():
                    if not rs:
                        row[kind] = {"error": "capture/offload not on this branch yet"}
                        continue
                    # fewest lost counts: the machine's other tenants only ever add drops
                    best = dict(min(rs, key=lambda r: r["lost"]))
                    best["all_lost"] = [r["lost"] for r in rs]
                    best["all_sent"] = [r["sent"] for r in rs]
                    if kind == "rollcap":
                        lat = sorted(x for r in rs for x in r["latency_s"])
                        wait = sorted(x for r in rs for x in r["latency_minus_offload_work_s"])
                        best.update(
                            latency_s=lat,
                            latency_p50_s=_pct(lat, 50),
                            latency_p99_s=_pct(lat, 99),
                            latency_minus_offload_work_s=wait,
                            wait_p50_s=_pct(wait, 50),
                            wait_p99_s=_pct(wait, 99),
                        )
                    row[kind] = best
                res["rates"][str(pps)] = row
    lat = [x for r in res["rates"].values() for x in r["rollcap"].get("latency_s", [])]
    res["all_rates"] = {
        "files": len(lat),
        "latency_p50_s": _pct(sorted(lat), 50),
        "latency_p99_s": _pct(sorted(lat), 99),
    }
    write_result("live", res)
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
