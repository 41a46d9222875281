"""The daemon's counts (EventCounts, InterfaceCounts) and tcpdump's packet counters,
as printed on SIGUSR1 and at exit.

tcpdump 4.99 prints on SIGUSR1 one line::

    tcpdump: 5374 packets captured, 5374 packets received by filter, 0 packets dropped by kernel

and at exit the same counters one per line. "N packets dropped by interface"
is only printed when N is not 0, and a count of 1 says "packet".

The likely cause of kernel drops: CPU, disk or the buffer.

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

tcpdump's packet counters over the daemon's life: totals across tcpdump
restarts, the periodic counters line and a warning whenever drops grow, with
the drops' likely cause (likely_cause, above): DropStats.

The counters are asked for (SIGUSR1) every POLL_EVERY seconds, so drops show
in `rollcap status`, the metrics and the journal within seconds; the
counters line is logged every STATS_EVERY seconds only.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rollcap.dirtypages import read_dirty_level
from rollcap.journal import fields

if TYPE_CHECKING:  # tcpdump parses its counters with this module
    from rollcap.capture.tcpdump import Tcpdump

log = logging.getLogger("rollcap.capture")


@dataclass
class EventCounts:
    """What the daemon did since its start. The field names, in this order, are the
    keys of capture.json's counts and of the metrics that read them."""

    handed_off_files: int = 0
    handed_off_bytes: int = 0
    discarded_empty: int = 0
    repaired_files: int = 0
    duplicates_removed: int = 0
    quarantined_files: int = 0
    skipped_entries: int = 0
    dropped_files: int = 0
    dropped_bytes: int = 0
    quarantine_removed: int = 0
    restarts: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class InterfaceCounts:
    """The counts kept per interface too (rollcap status, metrics)."""

    handed_off_files: int = 0
    handed_off_bytes: int = 0
    restarts: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

_COUNTER_RE = re.compile(
    r"(\d+) packets? (captured|received by filter|dropped by kernel|dropped by interface)"
)
_KEYS = {
    "captured": "captured",
    "received by filter": "received",
    "dropped by kernel": "kernel_drops",
    "dropped by interface": "interface_drops",
}


def parse_counters(line: str) -> dict[str, int]:
    """The counters named in one stderr line (empty if it holds none)."""
    return {_KEYS[m[2]]: int(m[1]) for m in _COUNTER_RE.finditer(line)}


@dataclass
class Counters:
    captured: int = 0
    received: int = 0
    kernel_drops: int = 0
    interface_drops: int = 0

    def update(self, values: dict[str, int]) -> None:
        for k, v in values.items():
            setattr(self, k, v)

    def plus(self, other: Counters) -> Counters:
        return Counters(
            self.captured + other.captured,
            self.received + other.received,
            self.kernel_drops + other.kernel_drops,
            self.interface_drops + other.interface_drops,
        )

    @property
    def drops(self) -> int:
        return self.kernel_drops + self.interface_drops


@dataclass
class CounterTotals:
    """Totals across tcpdump restarts: finished processes plus the live one."""

    finished: Counters = field(default_factory=Counters)

    def total(self, live: Counters | None) -> Counters:
        return self.finished.plus(live) if live else self.finished

    def retire(self, last: Counters) -> None:
        self.finished = self.finished.plus(last)


def drop_rate(prev: Counters, now: Counters) -> float:
    """Share of packets dropped between two readings (0 when nothing arrived)."""
    drops = now.drops - prev.drops
    seen = (now.received - prev.received) + (now.interface_drops - prev.interface_drops)
    if seen <= 0 or drops <= 0:
        return 0.0
    return drops / seen


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



STATS_EVERY = 30.0
POLL_EVERY = 5.0


def _worst(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


class DropStats:
    def __init__(self, iface: str = "", buffer_kib: int = 0) -> None:
        self.iface = iface
        self.buffer_kib = buffer_kib  # tcpdump -B, named when the buffer is the cause
        self.totals = CounterTotals()
        self.drop_rate = 0.0
        self.cause: Cause | None = None  # of the latest drops
        self.cause_at: float | None = None  # wall clock
        self._logged = Counters()
        self._rate_base = Counters()
        self._next = time.monotonic() + STATS_EVERY
        self._next_poll = time.monotonic() + POLL_EVERY
        self._sampler = Sampler()
        # the evidence of the last two poll intervals: counters asked for at one
        # poll arrive after it, so drops seen now happened in either
        self._evidence = (Evidence(None, None, None, None),) * 2

    def retire(self, t: Tcpdump) -> None:
        """A tcpdump ended: its last counters join the totals."""
        self.totals.retire(t.counters)

    def live(self, running: Tcpdump | None) -> Counters:
        return self.totals.total(running.counters if running else None)

    def tick(self, running: Tcpdump | None) -> None:
        now = time.monotonic()
        if now >= self._next_poll:
            self._next_poll = now + POLL_EVERY
            ev = self._sampler.sample(running.pid if running else None, now)
            self._evidence = (self._evidence[1], ev)
            if running:
                running.request_counters()
        if now >= self._next:
            self._next = now + STATS_EVERY
            if running:
                running.request_counters()
            total = self.live(running)
            self.drop_rate = drop_rate(self._rate_base, total)
            self._rate_base = total
            log.info(
                "counters%s: %d captured, %d kernel drops, %d interface drops",
                f" on {self.iface}" if self.iface else "",
                total.captured,
                total.kernel_drops,
                total.interface_drops,
                extra=fields(
                    packets_captured=total.captured,
                    packets_received=total.received,
                    kernel_drops=total.kernel_drops,
                    interface_drops=total.interface_drops,
                    drop_rate=round(self.drop_rate, 6),
                    interface=self.iface or None,
                ),
            )
        total = self.live(running)
        if total.drops > self._logged.drops:
            self.cause = likely_cause(self._recent_evidence(), self.buffer_kib)
            self.cause_at = time.time()
            log.warning(
                "packets dropped%s: %d by the kernel, %d by the interface (+%d); "
                "likely cause: %s (%s)",
                f" on {self.iface}" if self.iface else "",
                total.kernel_drops,
                total.interface_drops,
                total.drops - self._logged.drops,
                self.cause.cause,
                self.cause.detail,
                extra=fields(
                    kernel_drops=total.kernel_drops,
                    interface_drops=total.interface_drops,
                    interface=self.iface or None,
                    drop_cause=self.cause.cause,
                ),
            )
        self._logged = total

    def _recent_evidence(self) -> Evidence:
        a, b = self._evidence
        return Evidence(
            _worst(a.tcpdump_cpu, b.tcpdump_cpu),
            _worst(a.host_cpu, b.host_cpu),
            _worst(a.io_pressure, b.io_pressure),
            _worst(a.dirty_ratio, b.dirty_ratio),
        )
