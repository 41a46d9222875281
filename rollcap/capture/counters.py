"""tcpdump's packet counters, as printed on SIGUSR1 and at exit.

tcpdump 4.99 prints on SIGUSR1 one line::

    tcpdump: 5374 packets captured, 5374 packets received by filter, 0 packets dropped by kernel

and at exit the same counters one per line. "N packets dropped by interface"
is only printed when N is not 0, and a count of 1 says "packet".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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
