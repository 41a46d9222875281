"""Publishing one daemon's metrics: textfile every interval and at exit, HTTP on request.

The daemon calls publish(state) where it writes its state for `rollcap
status`, start() once it runs, and close() at exit. Nothing here may stop
capture or offload: a missing textfile directory or a taken port is logged
(once per distinct problem) and retried every interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rollcap import __version__
from rollcap.config.schema import MetricsConfig, RollcapConfig, parse_listen
from rollcap.journal import fields
from rollcap.metrics.capture import CaptureCollector
from rollcap.metrics.http import MetricsServer
from rollcap.metrics.nodeexporter import textfile_name, textfile_path
from rollcap.metrics.offload import OffloadCollector
from rollcap.metrics.textfile import write_textfile
from rollcap.spool import Spool

log = logging.getLogger("rollcap.metrics")


C = TypeVar("C", CaptureCollector, OffloadCollector)


class DaemonCollector(Collector):
    """Which daemon, which version, since when, and when it last reported."""

    def __init__(self, daemon: str) -> None:
        self.daemon = daemon
        self.started = time.time()
        self.updated: float | None = None

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "rollcap_build_info", "Always 1; the labels say which rollcap version runs.",
            labels=["daemon", "version"],
        )  # fmt: skip
        info.add_metric([self.daemon, __version__], 1.0)
        yield info
        start = GaugeMetricFamily(
            "rollcap_start_time_seconds", "Unix time the daemon started.", labels=["daemon"]
        )
        start.add_metric([self.daemon], self.started)
        yield start
        if self.updated is not None:
            upd = GaugeMetricFamily(
                "rollcap_state_updated_timestamp_seconds", "Unix time the daemon last "
                "published its state (its main loop is alive).", labels=["daemon"],
            )  # fmt: skip
            upd.add_metric([self.daemon], self.updated)
            yield upd


class Exporter(Generic[C]):
    def __init__(self, daemon: str, cfg: MetricsConfig, listen: str, collector: C) -> None:
        self.daemon = daemon
        self.cfg = cfg
        self.listen = listen
        self.collector: C = collector
        self.info = DaemonCollector(daemon)
        # The textfile holds rollcap's own series only: node_exporter merges every
        # *.prom file into one scrape, where two daemons' process_* would collide.
        self.registry = CollectorRegistry(auto_describe=False)
        # The HTTP endpoint is this process alone: add the usual process_* and python_*.
        self.http_registry = CollectorRegistry(auto_describe=False)
        for c in (self.info, collector):
            self.registry.register(c)
            self.http_registry.register(c)
        for std in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.http_registry.register(std)
        self.filename = textfile_name(daemon)
        own = textfile_path(cfg, daemon)
        self.directory = str(own.parent) if own else ""
        self.server: MetricsServer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._problem: dict[str, str] = {}  # what -> last logged problem

    def add(self, collector: Collector) -> None:
        """Another part's series in this daemon's textfile and endpoint (the keep listener)."""
        self.registry.register(collector)
        self.http_registry.register(collector)

    def publish(self, state: Mapping[str, Any]) -> None:
        """The state the daemon just wrote for `rollcap status`."""
        self.collector.update(state)
        self.info.updated = time.time()

    def start(self) -> None:
        if not self.directory and not self.listen:
            return
        self._serve()
        self.write()
        self._thread = threading.Thread(target=self._run, name="metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """At exit: the last values into the textfile, the port closed."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(10)
        self._thread = None
        self.write()
        if self.server is not None:
            self.server.close()
            self.server = None

    def _run(self) -> None:
        while not self._stop.wait(self.cfg.interval_seconds):
            self._serve()
            self.write()

    def _serve(self) -> None:
        if not self.listen or self.server is not None:
            return
        host, port = parse_listen(self.listen)
        try:
            self.server = MetricsServer(host, port, self.http_registry)
        except OSError as e:
            self._failed("http", f"cannot listen on {self.listen} for /metrics: {e.strerror or e}")
            return
        self.server.start()
        self._recovered("http", f"serving /metrics on {self.listen}")

    def write(self) -> None:
        d = self.directory
        if not d:
            return
        try:
            write_textfile(d, self.filename, generate_latest(self.registry))
        except FileNotFoundError:
            # not created for a textfile_directory other than the packaged one
            self._failed(
                "textfile", f"{d} does not exist (metrics.textfile_directory; the package "
                "creates it for the default only); writing metrics once it does",
                level=logging.INFO,
            )  # fmt: skip
        except OSError as e:
            self._failed(
                "textfile", f"cannot write {d}/{self.filename}: {e.strerror or e} (metrics."
                "textfile_directory; see docs/metrics.md); retrying every "
                f"{self.cfg.interval_seconds} s",
            )  # fmt: skip
        else:
            self._recovered("textfile", f"writing {d}/{self.filename}")

    def _failed(self, what: str, message: str, level: int = logging.WARNING) -> None:
        if self._problem.get(what) != message:
            self._problem[what] = message
            log.log(level, message, extra=fields(metrics=what))

    def _recovered(self, what: str, message: str) -> None:
        if self._problem.pop(what, None) is not None or what == "http":
            log.info(message, extra=fields(metrics=what))


def capture_exporter(cfg: RollcapConfig) -> Exporter[CaptureCollector]:
    collector = CaptureCollector(Spool.at(cfg.spool.directory))
    return Exporter("capture", cfg.metrics, cfg.metrics.capture_listen, collector)


def offload_exporter(cfg: RollcapConfig) -> Exporter[OffloadCollector]:
    collector = OffloadCollector(Spool.at(cfg.spool.directory))
    return Exporter("offload", cfg.metrics, cfg.metrics.offload_listen, collector)
