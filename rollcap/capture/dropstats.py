"""tcpdump's packet counters over the daemon's life: totals across tcpdump
restarts, the periodic counters line and a warning whenever drops grow, with
the drops' likely cause (rollcap.capture.dropcause).

The counters are asked for (SIGUSR1) every POLL_EVERY seconds, so drops show
in `rollcap status`, the metrics and the journal within seconds; the
counters line is logged every STATS_EVERY seconds only."""

from __future__ import annotations

import logging
import time

from rollcap.capture.counters import Counters, CounterTotals, drop_rate
from rollcap.capture.dropcause import Cause, Evidence, Sampler, likely_cause
from rollcap.capture.tcpdump import Tcpdump
from rollcap.journal import fields

log = logging.getLogger("rollcap.capture")

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
