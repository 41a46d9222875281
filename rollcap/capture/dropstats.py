"""tcpdump's packet counters over the daemon's life: totals across tcpdump
restarts, the periodic counters line and a warning whenever drops grow."""

from __future__ import annotations

import logging
import time

from rollcap.capture.counters import Counters, CounterTotals, drop_rate
from rollcap.capture.tcpdump import Tcpdump
from rollcap.journal import fields

log = logging.getLogger("rollcap.capture")

STATS_EVERY = 30.0


class DropStats:
    def __init__(self, iface: str = "") -> None:
        self.iface = iface
        self.totals = CounterTotals()
        self.drop_rate = 0.0
        self._logged = Counters()
        self._rate_base = Counters()
        self._next = time.monotonic() + STATS_EVERY

    def retire(self, t: Tcpdump) -> None:
        """A tcpdump ended: its last counters join the totals."""
        self.totals.retire(t.counters)

    def live(self, running: Tcpdump | None) -> Counters:
        return self.totals.total(running.counters if running else None)

    def tick(self, running: Tcpdump | None) -> None:
        now = time.monotonic()
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
            log.warning(
                "packets dropped%s: %d by the kernel, %d by the interface (+%d)",
                f" on {self.iface}" if self.iface else "",
                total.kernel_drops,
                total.interface_drops,
                total.drops - self._logged.drops,
                extra=fields(
                    kernel_drops=total.kernel_drops,
                    interface_drops=total.interface_drops,
                    interface=self.iface or None,
                ),
            )
        self._logged = total
