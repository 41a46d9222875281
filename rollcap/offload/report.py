"""The offload's status report: counters, the upload rate, and where they go.

One snapshot feeds all three readers: `state/offload.json` (shown by `rollcap
status`), the metrics exporter, and systemd's STATUS= line. The state file is
retried at the next publish when it cannot be written (a full spool must not
stop the offload): one warning per failure streak.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollcap.metrics.exporter import Exporter
from rollcap.metrics.offload import OffloadCollector
from rollcap.spool.state import write_state
from rollcap.storage import StorageError

log = logging.getLogger("rollcap.offload")

RATE_WINDOW = 60.0  # seconds of uploads the rate averages over


@dataclass
class FileCounters:
    """The files offload has stored, quarantined or seen capture delete, since it started
    (tcpdump's packet counters are rollcap.capture.counters.Counters)."""

    uploaded_files: int = 0
    uploaded_bytes_in: int = 0
    uploaded_bytes_out: int = 0
    quarantined: int = 0
    dropped_by_capture: int = 0
    last_upload: dict[str, Any] | None = None
    recent: deque[tuple[float, int]] = field(default_factory=deque)  # (monotonic, bytes_in)


class StatusReport:
    def __init__(self, path: Path, metrics: Exporter[OffloadCollector]) -> None:
        self.path = path  # state/offload.json
        self.metrics = metrics
        self.counters = FileCounters()
        self.state = "starting"
        self.last_error = ""
        self.dirty = True  # something changed since the last publish()
        self.started_at = time.monotonic()
        self._write_failed = False
        self.paused = ""  # why compression is paused (rollcap.offload.yielding), "" not

    def note_error(self, msg: str) -> None:
        self.last_error = msg
        self.dirty = True

    def outcome(self, kind: str, seconds: float, attempt: int) -> None:
        """One finished attempt at a file, for the metrics."""
        self.metrics.collector.outcome(kind, seconds, attempt)

    def stored(
        self, name: str, key: str, seconds: float, bytes_in: int, bytes_out: int, new: bool
    ) -> None:
        """A file is stored (new: uploaded now, else its object existed)."""
        c = self.counters
        if new:
            c.uploaded_files += 1
            c.uploaded_bytes_in += bytes_in
            c.uploaded_bytes_out += bytes_out
            c.recent.append((time.monotonic(), bytes_in))
        c.last_upload = {"file": name, "key": key, "at": time.time(), "seconds": round(seconds, 3)}

    def rate(self) -> float:
        """MB/s (of pcap bytes) uploaded over the last RATE_WINDOW seconds."""
        now = time.monotonic()
        recent = self.counters.recent
        while recent and now - recent[0][0] > RATE_WINDOW:
            recent.popleft()
        span = max(1.0, min(RATE_WINDOW, now - self.started_at))
        return sum(b for _t, b in recent) / span / 1e6

    def text(self, backlog: tuple[int, int], dest_error: StorageError | None) -> str:
        """The STATUS= line."""
        files, nbytes = backlog
        text = f"backlog {files} files ({nbytes / 1e6:.1f} MB), {self.rate():.1f} MB/s"
        if self.paused:
            text += f", compression paused ({self.paused})"
        if dest_error is not None:
            text += f", destination down: {dest_error.code or dest_error}"
        elif self.last_error:
            text += f", last error: {self.last_error[:200]}"
        return text

    def snapshot(
        self,
        *,
        destination: str,
        backlog: tuple[int, int],
        in_flight: list[str],
        dest_error: StorageError | None,
        compression_level: int,
        compression_paused: str = "",
        paused_seconds: dict[str, float] | None = None,
    ) -> dict[str, Any]:
        """What `rollcap status` and the metrics show (offload.json)."""
        files, nbytes = backlog
        c = self.counters
        return {
            "state": self.state if dest_error is None else "destination-down",
            "destination": destination,
            "backlog_files": files,
            "backlog_bytes": nbytes,
            "in_flight": sorted(in_flight),
            "uploaded_files": c.uploaded_files,
            "uploaded_bytes_in": c.uploaded_bytes_in,
            "uploaded_bytes_out": c.uploaded_bytes_out,
            "last_upload": c.last_upload,
            "last_error": self.last_error,
            "rate_mb_s": round(self.rate(), 3),
            "compression_level": compression_level,
            # why no compression starts now ("" none): offload yields to capture
            "compression_paused": compression_paused,
            "compression_paused_seconds": {
                k: round(v, 1) for k, v in (paused_seconds or {}).items()
            },
            "quarantined": c.quarantined,
            "dropped_by_capture": c.dropped_by_capture,
        }

    def publish(self, data: dict[str, Any]) -> None:
        """Hand a snapshot to the metrics and write the state file."""
        self.dirty = False
        self.metrics.publish(data)
        try:
            write_state(self.path, data)  # removes its temp file
        except OSError as e:
            if not self._write_failed:  # once per failure streak, not every 5 s
                log.warning("cannot write the state file (retrying): %s", e.strerror)
            self._write_failed = True
        else:
            if self._write_failed:
                log.info("state file written again")
            self._write_failed = False
