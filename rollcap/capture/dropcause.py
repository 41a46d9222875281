"""The likely cause of kernel drops: CPU, disk or the buffer.

tcpdump's "dropped by kernel" grows when its socket buffer (-B) overflowed:
tcpdump did not read fast enough. Why, from evidence the supervisor reads
cheaply between two counter readings (a few /proc files):

- cpu: tcpdump itself used nearly a whole core (it cannot go faster), or the
  host's CPUs were nearly all busy (it did not get one in time);
- disk: tasks were stalled on I/O (PSI, /proc/pressure/io "some"), or the
  dirty page cache was past the point where the kernel throttles writers
  (rollcap.dirtypages): tcpdump sleeps in its write() instead of reading;
- buffer: neither, so the buffer was too small for a burst: raise
  capture.buffer_kib.

likely_cause() is the pure rule; Sampler reads the evidence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rollcap.dirtypages import read_dirty_level

# tcpdump at or above this share of one core: it is the bottleneck
TCPDUMP_CPU_BUSY = 0.9
# the host's CPUs busy at least this share of the time: no core to spare
HOST_CPU_BUSY = 0.95
# some task stalled on I/O at least this share of the interval
IO_PRESSURE_HIGH = 0.2
# dirty + writeback at least at the kernel's throttle point
DIRTY_HIGH = 1.0

CAUSES = ("cpu", "disk", "buffer")


@dataclass(frozen=True)
class Evidence:
    """Over one interval between two readings; None: not known."""

    tcpdump_cpu: float | None  # share of one core
    host_cpu: float | None  # share of all cores busy
    io_pressure: float | None  # share of time some task waited on I/O
    dirty_ratio: float | None  # dirty + writeback / the kernel's throttle point


@dataclass(frozen=True)
class Cause:
    cause: str  # one of CAUSES
    detail: str  # the evidence, for the journal and `rollcap status`


def likely_cause(e: Evidence, buffer_kib: int) -> Cause:
    if e.tcpdump_cpu is not None and e.tcpdump_cpu >= TCPDUMP_CPU_BUSY:
        return Cause("cpu", f"tcpdump used {e.tcpdump_cpu:.0%} of a core")
    if e.host_cpu is not None and e.host_cpu >= HOST_CPU_BUSY:
        return Cause("cpu", f"the host's CPUs were {e.host_cpu:.0%} busy")
    if e.io_pressure is not None and e.io_pressure >= IO_PRESSURE_HIGH:
        return Cause("disk", f"tasks were stalled on I/O {e.io_pressure:.0%} of the time")
    if e.dirty_ratio is not None and e.dirty_ratio >= DIRTY_HIGH:
        return Cause(
            "disk",
            f"dirty pages at {e.dirty_ratio:.0%} of the kernel's throttle point: "
            "writers, tcpdump too, were made to wait",
        )
    return Cause(
        "buffer",
        f"CPU and disk had room: the {buffer_kib} KiB kernel buffer overflowed in a "
        "burst; raise capture.buffer_kib",
    )


@dataclass(frozen=True)
class _Reading:
    at: float  # monotonic seconds
    tcpdump_ticks: int | None
    host_busy: int | None  # /proc/stat jiffies
    host_total: int | None
    io_stall_us: int | None  # /proc/pressure/io some total


class Sampler:
    """Reads the evidence at each counter reading and keeps the previous one,
    so evidence() covers the interval the drops happened in."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self.proc = proc
        self.tick = os.sysconf("SC_CLK_TCK")
        self._prev: _Reading | None = None

    def sample(self, pid: int | None, now: float) -> Evidence:
        cur = _Reading(now, self._tcpdump_ticks(pid), *self._host(), self._io_stall())
        prev, self._prev = self._prev, cur
        if prev is None or cur.at <= prev.at:
            return Evidence(None, None, None, self._dirty())
        wall = cur.at - prev.at
        tcpdump = host = io = None
        if cur.tcpdump_ticks is not None and prev.tcpdump_ticks is not None:
            used = cur.tcpdump_ticks - prev.tcpdump_ticks
            if used >= 0:  # else another tcpdump since: no reading
                tcpdump = used / self.tick / wall
        if None not in (cur.host_busy, prev.host_busy, cur.host_total, prev.host_total):
            assert cur.host_busy is not None and prev.host_busy is not None
            assert cur.host_total is not None and prev.host_total is not None
            total = cur.host_total - prev.host_total
            if total > 0:
                host = (cur.host_busy - prev.host_busy) / total
        if cur.io_stall_us is not None and prev.io_stall_us is not None:
            io = (cur.io_stall_us - prev.io_stall_us) / 1e6 / wall
        return Evidence(tcpdump, host, io, self._dirty())

    def _tcpdump_ticks(self, pid: int | None) -> int | None:
        if pid is None:
            return None
        try:
            raw = (self.proc / str(pid) / "stat").read_text()
        except OSError:
            return None
        # the fields after the command name, which may hold spaces and ")"
        rest = raw[raw.rfind(")") + 2 :].split()
        try:
            return int(rest[11]) + int(rest[12])  # utime, stime (fields 14, 15)
        except (IndexError, ValueError):
            return None

    def _host(self) -> tuple[int | None, int | None]:
        try:
            with open(self.proc / "stat") as f:
                first = f.readline().split()
        except OSError:
            return None, None
        if not first or first[0] != "cpu":
            return None, None
        try:
            v = [int(x) for x in first[1:9]]
        except ValueError:
            return None, None
        idle = v[3] + v[4]  # idle + iowait: a core waiting on the disk was free for tcpdump
        return sum(v) - idle, sum(v)

    def _io_stall(self) -> int | None:
        try:
            line = (self.proc / "pressure" / "io").read_text().splitlines()[0]
        except (OSError, IndexError):
            return None  # no PSI in this kernel
        for part in line.split():
            if part.startswith("total="):
                try:
                    return int(part[6:])
                except ValueError:
                    return None
        return None

    def _dirty(self) -> float | None:
        level = read_dirty_level(self.proc)
        return level.ratio if level else None
