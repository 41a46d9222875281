"""rollcap-capture's metrics, from the state dict it writes for `rollcap status`.

Every counter is the daemon's own number (tcpdump's counters summed over its
restarts, hand-offs counted by the supervisor); all of them start at 0 when
rollcap-capture starts, which Prometheus' rate() and increase() handle.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rollcap.metrics.families import counter, gauge, number
from rollcap.spool import Spool
from rollcap.spool.fs import tree_bytes

# spool areas counted against the budget (state/ holds only small JSON files)
AREAS = ("work", "ready", "quarantine")  # tmp/ is the offload's, unreadable here

# (metric name without _total, state key, help)
_IFACE_COUNTERS = (
    ("rollcap_capture_packets", "packets_captured",
     "Packets tcpdump wrote to its files (tcpdump's 'packets captured', summed over "
     "restarts; the hand-off no longer reads the files to count them). A make-before-break "
     "switch's overlap is counted by both tcpdumps; the hand-off removes those duplicates."),
    ("rollcap_capture_kernel_drops", "kernel_drops",
     "Packets the kernel dropped (tcpdump's 'dropped by kernel', summed over restarts)."),
    ("rollcap_capture_interface_drops", "interface_drops",
     "Packets the interface dropped (tcpdump's 'dropped by interface', summed over restarts)."),
    ("rollcap_capture_handoff_files", "handed_off_files",
     "Finished capture files handed off to the spool's ready/."),
    ("rollcap_capture_handoff_bytes", "handed_off_bytes",
     "Bytes of the capture files handed off to the spool's ready/."),
    ("rollcap_capture_tcpdump_restarts", "restarts",
     "Times tcpdump exited unexpectedly and was started again."),
)  # fmt: skip


class CaptureCollector(Collector):
    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._state: Mapping[str, Any] | None = None
        self._lock = threading.Lock()

    def update(self, state: Mapping[str, Any]) -> None:
        with self._lock:
            self._state = dict(state)

    def collect(self) -> Iterator[Metric]:
        # a value the state does not have yet (or no longer) is no series at all
        return (f for f in self._families() if f.samples)

    def _families(self) -> Iterator[Metric]:
        with self._lock:
            st = self._state
        if st is None:
            return
        per = st.get("interfaces")
        # one series per interface (capture.interface may list several)
        ifaces: dict[str, Mapping[str, Any]] = (
            {str(k): v for k, v in per.items() if isinstance(v, Mapping)}
            if isinstance(per, Mapping) and per
            else {str(st.get("interface", "")): st}
        )
        for name, key, doc in _IFACE_COUNTERS:
            fam: Metric | None = None
            for iface, ist in ifaces.items():
                one = counter(name, doc, number(ist, key), {"interface": iface})
                if fam is None:
                    fam = one
                else:
                    fam.samples.extend(one.samples)
            if fam is not None:
                yield fam
        up_fam: Metric | None = None
        paused_fam: Metric | None = None
        for iface, ist in ifaces.items():
            labels = {"interface": iface}
            up = 1.0 if ist.get("state") == "capturing" else 0.0
            g = gauge(
                "rollcap_capture_up", "1 while tcpdump is capturing, else 0 (starting, waiting "
                "for the interface, restarting, paused by the spool budget, stopped).", up, labels,
            )  # fmt: skip
            p = gauge(
                "rollcap_capture_paused", "1 while spool.on_full = pause-capture holds capture.",
                1.0 if st.get("paused") else 0.0, labels,
            )  # fmt: skip
            if up_fam is None or paused_fam is None:
                up_fam, paused_fam = g, p
            else:
                up_fam.samples.extend(g.samples)
                paused_fam.samples.extend(p.samples)
        if up_fam is not None and paused_fam is not None:
            yield up_fam
            yield paused_fam
        area = GaugeMetricFamily(
            "rollcap_spool_bytes", "Bytes in each spool area (what the spool budget counts).",
            labels=["area"],
        )  # fmt: skip
        for name in AREAS:
            area.add_metric([name], float(tree_bytes(self.spool.root / name)))
        yield area
        budget = st.get("budget")
        max_bytes = number(budget, "max_bytes") if isinstance(budget, Mapping) else None
        yield gauge("rollcap_spool_budget_bytes", "spool.max_megabytes in bytes.", max_bytes)
        free = number(budget, "free_percent") if isinstance(budget, Mapping) else None
        yield gauge(
            "rollcap_spool_filesystem_free_ratio",
            "Free share of the spool's filesystem (spool.min_free_percent is checked on it).",
            None if free is None else free / 100,
        )
        yield counter(
            "rollcap_capture_duplicates_removed", "Records both tcpdumps of a make-before-break "
            "switch captured, removed from the new one's files at hand-off: "
            "rollcap_capture_packets_total minus this is what was handed off.",
            number(st, "duplicates_removed"),
        )  # fmt: skip
        ring = st.get("ring")
        ring = ring if isinstance(ring, Mapping) else {}
        yield gauge(
            "rollcap_ring_lookback_seconds", "How far back the spool's finished files reach "
            "now: the time since the oldest one started (offload.mode = on-demand: the "
            "flight recorder's lookback).", number(ring, "lookback_seconds"),
        )  # fmt: skip
        yield gauge(
            "rollcap_ring_projected_seconds", "How far back the ring would reach at the "
            "current capture rate: the spool budget less what keeps pin, over the rate "
            "(size spool.max_megabytes with it; docs/capture.md).",
            number(ring, "projected_seconds"),
        )  # fmt: skip
        yield gauge(
            "rollcap_ring_pinned_bytes", "Bytes of finished files keeps pin (never dropped; "
            "capped by keep.pinned_percent).", number(ring, "pinned_bytes"),
        )  # fmt: skip
        yield gauge(
            "rollcap_ring_pinned_over_cap", "1 when keeps pin more than keep.pinned_percent "
            "of the budget (the rate grew after they were filed): less lookback until they "
            "are released.", _flag(ring.get("pinned_over_cap")),
        )  # fmt: skip
        yield gauge("rollcap_ring_keeps", "Keeps pinned in the spool now (`rollcap keep`).",
                    number(ring, "keeps"))  # fmt: skip
        yield counter(
            "rollcap_spool_dropped_files", "Finished files deleted unsent to keep the spool "
            "budget (spool.on_full = drop-oldest).", number(st, "dropped_files"),
        )  # fmt: skip
        yield counter(
            "rollcap_spool_dropped_bytes", "Bytes of the files deleted unsent to keep the "
            "spool budget.", number(st, "dropped_bytes"),
        )  # fmt: skip


def _flag(v: object) -> float | None:
    """A status bool as a gauge: 1/0, None when the state has none."""
    return float(v) if isinstance(v, bool) else None
