"""Debian's prometheus and prometheus-node-exporter, our own instances.

Each runs on a free loopback port with its data in a temp dir and is stopped
as a process group afterwards; the packages' own services (and their
/etc/prometheus, /var/lib/prometheus) are never used.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROMETHEUS = "prometheus"
NODE_EXPORTER = "prometheus-node-exporter"
PROMTOOL = "promtool"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} is not installed (.ci/packages-test.txt: prometheus, "
                           "prometheus-node-exporter)")  # fmt: skip
    return path


def http_get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        data: bytes = r.read()
        return data


def wait_until(what: str, probe: Callable[[], Any], ok: Callable[[Any], bool],
               timeout: float) -> Any:  # fmt: skip
    """Call probe until ok(its result); the last result is in the timeout's message."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except (OSError, urllib.error.URLError) as e:
            last = e
        else:
            if ok(last):
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last}")
        time.sleep(0.2)


class _Daemon:
    def __init__(self, name: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"rollcap-{name}-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / f"{name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, argv: list[str]) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir,
                start_new_session=True,
            )  # fmt: skip

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _wait_http(self, path: str, timeout: float = 60) -> None:
        def probe() -> bytes:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"exited ({self.proc.returncode}):\n{self.log_text()}")
            return http_get(self.url + path)

        wait_until(f"{self.url}{path}", probe, lambda r: isinstance(r, bytes), timeout)


class NodeExporter(_Daemon):
    """Only the textfile collector, reading `textfile_dir`."""

    def __init__(self, textfile_dir: Path) -> None:
        super().__init__("node-exporter")
        self.textfile_dir = textfile_dir

    def start(self) -> NodeExporter:
        self._spawn([
            need(NODE_EXPORTER), f"--web.listen-address=127.0.0.1:{self.port}",
            "--collector.disable-defaults", "--collector.textfile",
            f"--collector.textfile.directory={self.textfile_dir}",
        ])  # fmt: skip
        self._wait_http("/metrics")
        return self

    def scrape(self) -> str:
        return http_get(self.url + "/metrics").decode()


class Prometheus(_Daemon):
    def __init__(self, jobs: dict[str, str], rule_files: list[Path] | None = None) -> None:
        """jobs: job name -> "host:port" scraped every second."""
        super().__init__("prometheus")
        self.jobs = jobs
        self.rule_files = rule_files or []

    def start(self) -> Prometheus:
        cfg = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in self.jobs.items()
            ],
        }
        conf = self.dir / "prometheus.yml"
        conf.write_text(json.dumps(cfg, indent=1))  # JSON is YAML
        self._spawn([
            need(PROMETHEUS), f"--config.file={conf}", f"--storage.tsdb.path={self.dir}/data",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ])  # fmt: skip
        self._wait_http("/-/ready")
        return self

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?" + urllib.parse.urlencode(params)
        body = json.loads(http_get(url))
        if body.get("status") != "success":
            raise AssertionError(f"{url}: {body}")
        return body["data"]

    def query(self, expr: str) -> dict[str, float]:
        """Instant query: {job: value} (one series per job expected)."""
        out: dict[str, float] = {}
        for r in self.api("query", query=expr)["result"]:
            job = r["metric"].get("job", "")
            if job in out:
                raise AssertionError(f"{expr}: more than one series for job {job}")
            out[job] = float(r["value"][1])
        return out

    def targets_up(self) -> dict[str, float]:
        return self.query("up")
