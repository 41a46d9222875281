"""rollcap-offload's metrics: its state dict (what `rollcap status` shows) plus
each file's outcome, which the state dict only keeps the last of.

All counters start at 0 when rollcap-offload starts (as in `rollcap status`).
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rollcap.metrics.families import counter, gauge, number
from rollcap.spool import Spool

RESULTS = ("stored", "exists", "quarantined", "failed")
# rollcap.offload.pipeline.Outcome.kind -> result label; "dropped" (capture deleted the
# file first) is rollcap_spool_dropped_files_total, "cancelled" (stopping) is nothing
_RESULT_OF = {
    "uploaded": "stored",
    "exists": "exists",
    "quarantined": "quarantined",
    "failed": "failed",
    "ignored": "failed",  # refused and could not even be quarantined
}
# seconds from picking a file up to its verified object: compression included
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


def oldest_ready_mtime(ready: str) -> float | None:
    """mtime of the oldest file waiting in ready/ (lstat: no symlinks). Not parsed as
    ReadyNames: that took most of the time with a big backlog; capture renames only
    ReadyNames into ready/, and anything else there waits (for quarantine) too."""
    oldest: float | None = None
    try:
        with os.scandir(ready) as it:
            for entry in it:
                if entry.name.startswith("."):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # uploaded meanwhile
                if not stat.S_ISREG(st.st_mode):
                    continue
                m = st.st_mtime
                oldest = m if oldest is None else min(oldest, m)
    except FileNotFoundError:
        return None
    return oldest


class OffloadCollector(Collector):
    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._state: Mapping[str, Any] | None = None
        self._lock = threading.Lock()
        self._results = dict.fromkeys(RESULTS, 0)
        self._retries = 0
        self.durations = Histogram(
            "rollcap_offload_upload_duration_seconds",
            "Seconds from picking a file up to its verified object (compression, "
            "upload and verification), for stored files.",
            buckets=BUCKETS,
            registry=None,
        )

    def update(self, state: Mapping[str, Any]) -> None:
        with self._lock:
            self._state = dict(state)

    def outcome(self, kind: str, seconds: float, attempt: int) -> None:
        """One finished attempt at a file (kind as in pipeline.Outcome)."""
        result = _RESULT_OF.get(kind)
        if result is None:
            return
        with self._lock:
            self._results[result] += 1
            if attempt > 1:
                self._retries += 1
        if result == "stored":
            self.durations.observe(seconds)

    def collect(self) -> Iterator[Metric]:
        # a value the state does not have yet (or no longer) is no series at all
        return (f for f in self._families() if f.samples)

    def _families(self) -> Iterator[Metric]:
        with self._lock:
            st = self._state
            results = dict(self._results)
            retries = self._retries
        uploads = CounterMetricFamily(
            "rollcap_offload_uploads", "Files finished by offload, by result: stored "
            "(uploaded and verified), exists (already stored by an earlier run), "
            "quarantined (not a valid capture), failed (attempts that failed; retried).",
            labels=["result"],
        )  # fmt: skip
        for result in RESULTS:
            uploads.add_metric([result], results[result])
        yield uploads
        yield counter(
            "rollcap_offload_retries", "Attempts at a file after an earlier attempt failed.",
            retries,
        )  # fmt: skip
        yield from self.durations.collect()
        if st is None:
            return
        yield counter(
            "rollcap_offload_bytes_in", "Capture bytes read from the spool for stored files.",
            number(st, "uploaded_bytes_in"),
        )  # fmt: skip
        yield counter(
            "rollcap_offload_bytes_out", "Bytes stored at the destination (after compression).",
            number(st, "uploaded_bytes_out"),
        )  # fmt: skip
        yield gauge(
            "rollcap_offload_backlog_files", "Finished files waiting in ready/ (in flight "
            "included).", number(st, "backlog_files"),
        )  # fmt: skip
        yield gauge(
            "rollcap_offload_backlog_bytes", "Bytes of the files waiting in ready/.",
            number(st, "backlog_bytes"),
        )  # fmt: skip
        oldest = oldest_ready_mtime(str(self.spool.ready))
        yield gauge(
            "rollcap_offload_oldest_backlog_age_seconds", "Seconds since the oldest file "
            "waiting in ready/ was last written (0 when none waits).",
            0.0 if oldest is None else max(0.0, time.time() - oldest),
        )  # fmt: skip
        last = st.get("last_upload")
        yield gauge(
            "rollcap_offload_last_upload_timestamp_seconds", "Unix time of the last file "
            "stored (absent until the first one since the daemon started).",
            number(last, "at") if isinstance(last, Mapping) else None,
        )  # fmt: skip
        paused = st.get("compression_paused_seconds")
        if isinstance(paused, Mapping):
            fam = CounterMetricFamily(
                "rollcap_offload_compression_paused_seconds", "Seconds offload started no "
                "compression to give capture the right of way, by reason: capture-drops "
                "(capture reported new kernel drops), dirty-pages (the page cache near the "
                "kernel's writer throttling).", labels=["reason"],
            )  # fmt: skip
            for reason, v in paused.items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    fam.add_metric([str(reason)], float(v))
            yield fam
        now_paused = st.get("compression_paused")
        if isinstance(now_paused, str):
            fam2 = GaugeMetricFamily(
                "rollcap_offload_compression_paused", "1 while offload starts no "
                "compression, by reason (see rollcap_offload_compression_paused_seconds).",
                labels=["reason"],
            )  # fmt: skip
            for reason in ("capture-drops", "dirty-pages"):
                fam2.add_metric([reason], 1.0 if now_paused == reason else 0.0)
            yield fam2
        # absent once stopping: a stopped offload says nothing about its destination
        state = st.get("state")
        yield gauge(
            "rollcap_offload_destination_up", "1 while the destination works, 0 while it "
            "is down (backing off) or its first check has not passed yet.",
            {"running": 1.0, "starting": 0.0, "destination-down": 0.0}.get(str(state)),
        )  # fmt: skip
