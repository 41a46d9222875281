"""A `rollcap capture` subprocess with a temp spool and a config the test writes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rollcap.pcapfile import GLOBAL_HEADER_LEN
from tests.support.net import count_packets

REPO = Path(__file__).resolve().parents[2]


def write_config(path: Path, spool_dir: Path, iface: str | list[str], **capture: Any) -> None:
    capture = dict(capture)
    spool_over = capture.pop("spool", {})
    offload = capture.pop("offload", {"destination": f"file://{spool_dir.parent}/archive"})
    # tests never write into the machine's node_exporter directory unless they ask
    metrics = capture.pop("metrics", {"textfile_directory": ""})
    per_interface = capture.pop("per_interface", {})
    # Off unless a test asks: a test that follows one tcpdump's pid or counts files
    # must not meet a wall-clock boundary (a :X0 with the default 600 s) halfway.
    # test_capture_multi tests rotate_align itself.
    capture.setdefault("rotate_align", False)
    lines = ["[capture]", f"interface = {json.dumps(iface)}"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in capture.items()]
    for name, over in per_interface.items():
        lines += [f"[capture.per_interface.{name}]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in over.items()]
    lines += ["[spool]", f'directory = "{spool_dir}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in spool_over.items()]
    lines += ["[offload]"] + [f"{k} = {json.dumps(v)}" for k, v in offload.items()]
    lines += ["[metrics]"] + [f"{k} = {json.dumps(v)}" for k, v in metrics.items()] + [""]
    path.write_text("\n".join(lines))


class CaptureDaemon:
    def __init__(self, tmp: Path, iface: str | list[str], **capture: Any) -> None:
        self.tmp = tmp
        self.spool = tmp / "spool"
        self.config = tmp / "rollcap.toml"
        self.log = tmp / "capture.log"
        self.iface = iface
        tmp.mkdir(exist_ok=True)
        self.capture = capture
        write_config(self.config, self.spool, iface, **capture)
        self.proc: subprocess.Popen[bytes] | None = None
        self.notify: socket.socket | None = None
        # e.g. setpriv ...: run the daemon as another user
        self.prefix: list[str] = []

    def listen_notify(self) -> None:
        """Receive sd_notify messages like systemd does (call before start).

        Read continuously: a datagram socket's queue is short, and a sender
        blocks when it is full.
        """
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.tmp / "notify.sock"))
        self.notify.settimeout(0.2)
        self._notified: list[str] = []

        def collect() -> None:
            assert self.notify is not None
            while self.notify.fileno() >= 0:
                try:
                    self._notified.append(self.notify.recv(4096).decode())
                except TimeoutError:
                    continue
                except OSError:
                    return

        threading.Thread(target=collect, daemon=True).start()

    def notifications(self) -> list[str]:
        return list(self._notified)

    def start(self) -> CaptureDaemon:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("NOTIFY_SOCKET", None)
        if self.notify is not None:
            env["NOTIFY_SOCKET"] = str(self.tmp / "notify.sock")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    *self.prefix,
                    sys.executable,
                    "-m",
                    "rollcap",
                    "capture",
                    "--config",
                    str(self.config),
                ],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def reconfigure(self, iface: str | list[str] | None = None, **changes: Any) -> None:
        if iface is not None:
            self.iface = iface
        write_config(self.config, self.spool, self.iface, **{**self.capture, **changes})

    def state(self) -> dict[str, Any]:
        try:
            data = json.loads((self.spool / "capture" / "capture.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        assert isinstance(data, dict)
        return data

    def wait_for(
        self, what: str, pred: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.state()
            if st and pred(st):
                return st
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"daemon exited ({self.proc.returncode}) waiting for {what}:\n{self.log_text()}"
                )
            time.sleep(0.1)
        raise AssertionError(
            f"timed out waiting for {what}; state={self.state()}\n{self.log_text()}"
        )

    def wait_capturing(self, timeout: float = 30) -> dict[str, Any]:
        return self.wait_for("capturing", lambda s: s.get("state") == "capturing", timeout)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM; the exit status (the daemon must be gone within timeout)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.notify is not None:
            self.notify.close()
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        st = self.state()
        pids = [st.get("tcpdump_pid")] + [i.get("tcpdump_pid") for i in
                                           (st.get("interfaces") or {}).values()]  # fmt: skip
        for pid in {p for p in pids if p}:  # never leave a tcpdump behind after a failed test
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if str(self.spool).encode() in cmd:
                os.kill(pid, signal.SIGKILL)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def ready_files(self) -> list[Path]:
        """Captures in ready/ (not the coverage markers of idle periods)."""
        return [p for p in self.all_ready() if p.stat().st_size > GLOBAL_HEADER_LEN]

    def markers(self) -> list[Path]:
        """Coverage markers in ready/: header-only files of idle periods."""
        return [p for p in self.all_ready() if p.stat().st_size <= GLOBAL_HEADER_LEN]

    def all_ready(self) -> list[Path]:
        return sorted((self.spool / "ready").iterdir())

    def ready_packets(self) -> int:
        return sum(count_packets(p) for p in self.ready_files())
