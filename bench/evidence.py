"""Evidence of where packets are lost under load: a 100 ms timeline of the host.

A Sampler thread reads, every --interval, for each role (a named set of
processes, found afresh at each tick so tcpdumps that come and go are seen):
CPU (utime+stime of every live pid, in cores), write_bytes (/proc/PID/io), and
how many of its threads sleep in balance_dirty_pages (/proc/PID/task/*/wchan:
the dirty-page throttle). For the host: CPU busy, iowait and softirq (in
cores, /proc/stat), nr_dirty and nr_writeback (/proc/vmstat, in MB), the
stall time of /proc/pressure/{cpu,io,memory} ("some", ms per second), and the
CPU of everything that is not one of the roles ("other": the machine is
shared). A process's write_bytes includes its reaped children's, so the
capture daemon's column jumps when a tcpdump of an earlier file is reaped.
CPU comes in clock ticks (10 ms), so one sample resolves 0.1 core.
tcpdump's kernel drops come from its own counters line: the sampler
sends SIGUSR1 to every tcpdump at each tick (what rollcap itself does every
30 s; libpcap keeps the kernel's read-and-reset counters summed, so this
changes no total), and a DropSource parses the answers. Only a tcpdump that
catches SIGUSR1 is signalled: one still starting would die of it.

Why not the socket's own counters: `ss -0 -m` shows skmem d0 while tcpdump
reports hundreds of thousands of drops (TPACKET_V3 counts ring overflow in
tp_drops only, which PACKET_STATISTICS reads and resets), and /proc/net/packet
has no drops column.

DirtyTrace runs `perf record -e writeback:balance_dirty_pages -a` over a
round: each event is one throttle pause, with its length in ms, per process.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import CLK_TCK, MB

PAGE = os.sysconf("SC_PAGE_SIZE")
PRESSURE = ("cpu", "io", "memory")
# /proc/stat cpu line: user nice system idle iowait irq softirq steal
_BUSY = (0, 1, 2, 5, 6, 7)
_COUNTERS = re.compile(r"(\d+) packets? (captured|received by filter|dropped by kernel)")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        s = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return s[s.rindex(")") + 2 :].split()


def proc_cpu(pid: int, with_children: bool = False) -> float | None:
    """utime+stime (+cutime+cstime: reaped children) of pid, in seconds."""
    f = _stat_fields(pid)
    if f is None:
        return None
    ticks = int(f[11]) + int(f[12])
    if with_children:
        ticks += int(f[13]) + int(f[14])
    return ticks / CLK_TCK


def write_bytes(pid: int) -> int | None:
    """/proc/PID/io write_bytes: pages this process dirtied (incl. reaped children)."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                with contextlib.suppress(OSError):
                    kids = [int(x) for x in (task / "children").read_text().split()]
                    out += kids
                    todo += kids
    return out


def tcpdumps_of(pid: int) -> list[int]:
    return [p for p in descendants(pid) if comm(p) == "tcpdump"]


def flushers() -> list[int]:
    """The kernel's writeback workers: kworkers whose comm names flush work
    (`kworker/u4:2+flush-254:0`); their CPU is the page cache's write-out."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and "flush-" in comm(int(name)):
            out.append(int(name))
    return out


def catches(pid: int, sig: int) -> bool:
    """Whether pid has installed a handler for sig (/proc/PID/status SigCgt).
    A tcpdump signalled before it has one dies of SIGUSR1: a new aligned
    generation then "did not start", and rollcap keeps the old one."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except OSError:
        return False
    return False


def _in_dirty_throttle(pid: int) -> int:
    n = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                if "balance_dirty" in (task / "wchan").read_text():
                    n += 1
    return n


def _host_cpu() -> list[int]:
    line = Path("/proc/stat").read_text().split("\n", 1)[0]
    return [int(x) for x in line.split()[1:9]]


def _vmstat() -> dict[str, int]:
    want = {"nr_dirty", "nr_writeback"}
    out = {}
    for line in Path("/proc/vmstat").read_text().splitlines():
        k, _, v = line.partition(" ")
        if k in want:
            out[k] = int(v)
    return out


def _pressure() -> dict[str, int]:
    """Cumulative 'some' stall microseconds per resource (absent on older kernels)."""
    out = {}
    for r in PRESSURE:
        with contextlib.suppress(OSError):
            first = Path(f"/proc/pressure/{r}").read_text().split("\n", 1)[0]
            out[r] = int(first.rsplit("total=", 1)[1])
    return out


class DropSource:
    """tcpdump's kernel drops over time: the last counters line of each tcpdump.

    feed() takes lines as they are read (bare: its stderr; rollcap: the capture
    daemon's debug log, which echoes tcpdump's counters with tcpdump_pid=)."""

    def __init__(self) -> None:
        self.by_pid: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    def feed(self, line: str, key: str = "") -> None:
        found = {m[2]: int(m[1]) for m in _COUNTERS.finditer(line)}
        if not found:
            return
        m = re.search(r"tcpdump_pid=(\d+)", line)
        key = m[1] if m else key
        with self._lock:
            self.by_pid.setdefault(key, {}).update(found)

    def total(self, what: str = "dropped by kernel") -> int:
        with self._lock:
            return sum(c.get(what, 0) for c in self.by_pid.values())


class LogTail:
    """Reads a daemon's growing log on each poll: counters lines go to a
    DropSource, and lines containing one of `events`' texts are counted (per
    sample: hand-offs, uploads)."""

    def __init__(
        self, path: Path, sink: DropSource | None = None, events: dict[str, str] | None = None
    ) -> None:
        self.path, self.sink, self._off, self._rest = path, sink, 0, ""
        self.events = events or {}
        self.counts = dict.fromkeys(self.events, 0)

    def poll(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self._off)
                data = f.read()
        except OSError:
            return
        self._off += len(data)
        text = self._rest + data.decode("utf-8", "replace")
        *lines, self._rest = text.split("\n")
        for line in lines:
            if self.sink is not None and "packets" in line:
                self.sink.feed(line)
            for name, text in self.events.items():
                if text in line:
                    self.counts[name] += 1

    def take(self) -> dict[str, int]:
        out, self.counts = self.counts, dict.fromkeys(self.events, 0)
        return out


Roles = dict[str, Callable[[], list[int]]]


class Sampler:
    """The timeline of one round; start() ... stop(), then rows / write_csv()."""

    def __init__(
        self,
        roles: Roles,
        drops: DropSource | None = None,
        signal_tcpdumps: Callable[[], list[int]] | None = None,
        log_tails: list[LogTail] | None = None,
        interval: float = 0.1,
    ) -> None:
        self.roles, self.drops, self.interval = roles, drops, interval
        self.signal_tcpdumps, self.log_tails = signal_tcpdumps, log_tails or []
        self.rows: list[dict[str, Any]] = []
        self.marks: list[tuple[float, str]] = []
        # pid -> last seen cpu seconds / write_bytes (kept after it exits)
        self.cpu_last: dict[int, float] = {}
        self.wb_first: dict[int, int] = {}
        self.wb_last: dict[int, int] = {}
        self.role_of: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.t0 = 0.0

    def mark(self, what: str) -> None:
        self.marks.append((time.monotonic() - self.t0, what))

    def start(self) -> Sampler:
        self.t0 = time.monotonic()
        self._prev = self._read()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for lt in self.log_tails:
            lt.poll()

    def _read(self) -> dict[str, Any]:
        snap: dict[str, Any] = {"t": time.monotonic(), "host": _host_cpu(), "psi": _pressure()}
        roles: dict[str, dict[str, float]] = {}
        for role, find in self.roles.items():
            cpu = 0.0
            wb = 0
            throttled = 0
            pids = find()
            for pid in pids:
                c = proc_cpu(pid)
                w = write_bytes(pid)
                if c is None:
                    continue
                self.role_of[pid] = role
                cpu_prev = self.cpu_last.get(pid, c)
                self.cpu_last[pid] = c
                cpu += c - cpu_prev
                if w is not None:
                    self.wb_first.setdefault(pid, w)
                    wb += w - self.wb_last.get(pid, w)
                    self.wb_last[pid] = w
                throttled += _in_dirty_throttle(pid)
            roles[role] = {"cpu_s": cpu, "write_b": wb, "dirty_throttled": throttled,
                           "pids": len(pids)}  # fmt: skip
        snap["roles"] = roles
        snap.update(_vmstat())
        return snap

    def _loop(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            next_t += self.interval
            if self.signal_tcpdumps:
                for pid in self.signal_tcpdumps():
                    if not catches(pid, signal.SIGUSR1):
                        continue  # still starting: the default action would kill it
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGUSR1)
            for lt in self.log_tails:
                lt.poll()
            cur = self._read()
            self._row(self._prev, cur)
            self._prev = cur
            self._stop.wait(max(0.0, next_t - time.monotonic()))

    def _row(self, a: dict[str, Any], b: dict[str, Any]) -> None:
        dt = b["t"] - a["t"]
        if dt <= 0:
            return
        h = [y - x for x, y in zip(a["host"], b["host"], strict=True)]
        tick = CLK_TCK * dt
        busy = sum(h[i] for i in _BUSY) / tick
        row: dict[str, Any] = {
            "t_s": round(b["t"] - self.t0, 3),
            "host_busy_cores": round(busy, 3),
            "host_iowait_cores": round(h[4] / tick, 3),
            "host_softirq_cores": round(h[6] / tick, 3),
            "nr_dirty_mb": round(b.get("nr_dirty", 0) * PAGE / MB, 1),
            "nr_writeback_mb": round(b.get("nr_writeback", 0) * PAGE / MB, 1),
        }
        for r in PRESSURE:
            if r in a["psi"] and r in b["psi"]:
                row[f"psi_{r}_some_ms_per_s"] = round((b["psi"][r] - a["psi"][r]) / 1000 / dt, 1)
        ours = 0.0
        for role, v in b["roles"].items():
            cores = v["cpu_s"] / dt
            ours += cores
            row[f"{role}_cpu_cores"] = round(cores, 3)
            row[f"{role}_write_mb_s"] = round(v["write_b"] / MB / dt, 1)
            row[f"{role}_dirty_throttled"] = v["dirty_throttled"]
        row["other_cpu_cores"] = round(max(0.0, busy - ours), 3)
        for lt in self.log_tails:
            row.update(lt.take())
        if self.drops is not None:
            row["kernel_drops"] = self.drops.total()
            row["received"] = self.drops.total("received by filter")
        self.rows.append(row)

    def role_totals(self) -> dict[str, dict[str, float]]:
        """Per role over the round: CPU seconds and MB written (from the samples)."""
        out: dict[str, dict[str, float]] = {}
        for role in self.roles:
            cpu = sum(r.get(f"{role}_cpu_cores", 0) for r in self.rows) * self.interval
            wb = sum(
                self.wb_last[p] - self.wb_first[p] for p, rr in self.role_of.items()
                if rr == role and p in self.wb_last
            )  # fmt: skip
            out[role] = {"cpu_s_sampled": round(cpu, 2), "write_mb": round(wb / MB, 1)}
        return out

    def drop_seconds(self) -> list[dict[str, Any]]:
        """The samples in which the drop counter grew, with what the host did then."""
        out = []
        prev = 0
        for r in self.rows:
            d = r.get("kernel_drops", 0)
            if d > prev:
                out.append({**r, "new_drops": d - prev})
            prev = d
        return out

    def write_csv(self, path: Path) -> None:
        if not self.rows:
            return
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=[*keys, "mark"])
            w.writeheader()
            marks = list(self.marks)
            for r in self.rows:
                here = [m for t, m in marks if t <= r["t_s"]]
                marks = [(t, m) for t, m in marks if t > r["t_s"]]
                w.writerow({**r, "mark": ";".join(here)})


class DirtyTrace:
    """Every balance_dirty_pages pause over a round (perf's tracepoint, system-wide)."""

    _EVENT = re.compile(r"^\s*(\S.*?)\s+(\d+)\s+\[\d+\]\s+([\d.]+):.*?paused=(\d+) pause=(-?\d+)")

    def __init__(self, out: Path) -> None:
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None
        self.t_start = 0.0

    def __enter__(self) -> DirtyTrace:
        with contextlib.suppress(OSError):
            self.proc = subprocess.Popen(
                ["perf", "record", "-q", "-e", "writeback:balance_dirty_pages", "-a",
                 "-o", str(self.out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def pauses(self) -> dict[str, Any]:
        """ms paused per process name, and event count; None if perf was not there."""
        if self.proc is None or not self.out.exists():
            return {"available": False}
        try:
            text = subprocess.run(
                ["perf", "script", "-i", str(self.out)],
                capture_output=True, text=True, timeout=120, check=False,
            ).stdout  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return {"available": False}
        by: dict[str, dict[str, float]] = {}
        for line in text.splitlines():
            m = self._EVENT.match(line)
            if not m:
                continue
            d = by.setdefault(m[1], {"events": 0, "pause_ms": 0.0})
            d["events"] += 1
            d["pause_ms"] += max(0, int(m[5]))
        with contextlib.suppress(OSError):
            self.out.unlink()
        return {"available": True, "by_process": by}


def others_snapshot(exclude: set[int], top: int = 8) -> list[str]:
    """The busiest other processes right now (ps's lifetime %CPU: a hint, not a rate)."""
    try:
        out = subprocess.run(
            ["ps", "-eo", "pid=,pcpu=,etimes=,args=", "--sort=-pcpu"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return []
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and int(parts[0]) not in exclude and float(parts[1]) >= 1.0:
            rows.append(f"{parts[1]}% {parts[3][:100]}")
        if len(rows) >= top:
            break
    return rows


# -- which candidate coincides with the drops ----------------------------------
# Each candidate cause is "active" in a sample by a threshold on the timeline;
# a sample "drops" when tcpdump's drop counter grew in it or in the next
# WINDOW samples (the counter is read up to a tick late). A cause that
# coincides is active in most drop samples and clearly less often otherwise.
CANDIDATES: dict[str, Callable[[dict[str, float]], bool]] = {
    "hand-off (supervisor >= 0.2 core)": lambda r: r.get("supervisor_cpu_cores", 0) >= 0.2,
    "offload writing (>= 20 MB/s: temp copy)": lambda r: r.get("offload_write_mb_s", 0) >= 20,
    "offload busy (>= 0.5 core)": lambda r: r.get("offload_cpu_cores", 0) >= 0.5,
    "SeaweedFS writing (>= 20 MB/s)": lambda r: r.get("seaweedfs_write_mb_s", 0) >= 20,
    "CPU saturated (host busy >= 1.9 of 2 cores)": lambda r: r.get("host_busy_cores", 0) >= 1.9,
    "other work >= 0.5 core": lambda r: r.get("other_cpu_cores", 0) >= 0.5,
    "tcpdump starved (< 0.1 core while traffic runs)": lambda r: (
        r.get("tcpdump_cpu_cores", 0) < 0.1 and r.get("tcpreplay_cpu_cores", 0) > 0.2
    ),
    "dirty pages >= 1 GB": lambda r: r.get("nr_dirty_mb", 0) >= 1000,
    "I/O stall (PSI io some >= 100 ms/s)": lambda r: r.get("psi_io_some_ms_per_s", 0) >= 100,
}
WINDOW = 2


def read_csv(path: Path) -> list[dict[str, float]]:
    with path.open() as f:
        return [
            {k: float(v) for k, v in r.items() if k != "mark" and v not in ("", None)}
            for r in csv.DictReader(f)
        ]


def coincidence(rows: list[dict[str, float]]) -> dict[str, Any]:
    """Per candidate: share of drop samples and of the other traffic samples it is active in."""
    drops = [0.0] * len(rows)
    prev = 0.0
    for i, r in enumerate(rows):
        d = r.get("kernel_drops", 0.0)
        if d > prev:
            for j in range(max(0, i - WINDOW), i + 1):
                drops[j] = 1.0
        prev = d
    traffic = [r.get("tcpreplay_cpu_cores", 0) > 0.2 for r in rows]
    hot = [i for i, r in enumerate(rows) if drops[i]]
    cold = [i for i, r in enumerate(rows) if not drops[i] and traffic[i]]
    out: dict[str, Any] = {"drop_samples": len(hot), "other_traffic_samples": len(cold)}
    for name, active in CANDIDATES.items():
        a = sum(1 for i in hot if active(rows[i])) / len(hot) if hot else None
        b = sum(1 for i in cold if active(rows[i])) / len(cold) if cold else None
        out[name] = {"when_dropping": a, "otherwise": b}
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse
    import sys

    ap = argparse.ArgumentParser(description="Which candidate cause coincides with the drops")
    ap.add_argument("timelines", nargs="+", type=Path, help="CSV timelines of bench.live --load")
    a = ap.parse_args(argv if argv is not None else sys.argv[1:])
    rows: list[dict[str, float]] = []
    for p in a.timelines:
        part = read_csv(p)
        # keep each file's drop counter separate: offset by what came before
        base = rows[-1].get("kernel_drops", 0.0) if rows else 0.0
        rows += [{**r, "kernel_drops": r.get("kernel_drops", 0.0) + base} for r in part]
    c = coincidence(rows)
    print(
        f"{len(a.timelines)} timeline(s): {c['drop_samples']} samples with drops (±{WINDOW}), "
        f"{c['other_traffic_samples']} other samples with traffic"
    )
    for name in CANDIDATES:
        v = c[name]

        def pct(x: float | None) -> str:
            return "  n/a" if x is None else f"{100 * x:4.0f}%"

        print(f"  {name:50} {pct(v['when_dropping'])} of drop samples, "
              f"{pct(v['otherwise'])} of the others")  # fmt: skip


if __name__ == "__main__":
    main()
