"""Start, kill -9 and restart the two daemons as subprocesses, the way systemd would."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Environment variables that would make rollcap log to the journal or notify a
# systemd that is not there; the suite reads plain stderr lines instead.
_SCRUB = ("JOURNAL_STREAM", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "INVOCATION_ID")


def base_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _ppid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[1])


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def tcpdumps_for(spool: Path) -> list[int]:
    """tcpdump processes writing into this test's own spool (its path is unique)."""
    marker = str(spool)
    out = []
    for pid in _pids():
        argv = _cmdline(pid)
        if argv and os.path.basename(argv[0]) == "tcpdump" and any(marker in a for a in argv):
            out.append(pid)
    return out


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for p in _pids():
        children.setdefault(_ppid(p), []).append(p)
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie of ours is dead for our purposes
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = [p for p in pids if _alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if _alive(p)]
    return left


@dataclass
class Daemon:
    """`python -m rollcap KIND --config CONFIG`, logging to a file the test reads."""

    kind: str  # "capture" | "offload"
    config: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    spool: Path | None = None  # lets a capture's orphaned tcpdump be found
    wrapper: list[str] = field(default_factory=list)  # e.g. ["faketime", ...]
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    exits: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Daemon:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        with self.log.open("ab") as f:
            f.write(f"=== faults: start #{self.starts} at {time.time():.3f}\n".encode())
        logf = self.log.open("ab")
        argv = [
            *self.wrapper,
            sys.executable,
            "-m",
            "rollcap",
            self.kind,
            "--config",
            str(self.config),
        ]
        self.proc = subprocess.Popen(
            argv, cwd=REPO, env=base_env(self.env), stdout=logf, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        logf.close()
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _note(self, text: str) -> None:
        with self.log.open("ab") as f:
            f.write(f"=== faults: {text} at {time.time():.3f}\n".encode())

    def kill9(self) -> None:
        """SIGKILL the main process only (its children are left as they are)."""
        assert self.proc is not None
        self._note(f"kill -9 {self.proc.pid}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.exits.append(self.proc.wait(10))

    def kill9_like_systemd(self, stop_timeout: float = 10) -> None:
        """What systemd does when a unit's main process dies with KillMode=control-group:
        the rest of the cgroup gets SIGTERM, then SIGKILL after the stop timeout."""
        assert self.proc is not None
        rest = descendants(self.proc.pid)
        self.kill9()
        if self.spool is not None:
            rest = sorted(set(rest) | set(tcpdumps_for(self.spool)))
        for p in rest:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGTERM)
        for p in wait_gone(rest, stop_timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        wait_gone(rest, 5)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM and wait (systemd stop); SIGKILL everything left after timeout."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._note("SIGTERM")
            rest = descendants(self.proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._note("stop timed out: SIGKILL")
                self.kill9()
                rc = None
            left = rest + (tcpdumps_for(self.spool) if self.spool else [])
            for p in wait_gone(left, 3):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
            if rc is not None:
                self.exits.append(rc)
            return rc
        return self.proc.returncode

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-n:])


def run_rollcap(args: list[str], env: dict[str, str] | None = None,
                timeout: float = 30) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """A short-lived rollcap command; a daemon that does not exit is killed (and fails)."""
    p = subprocess.Popen(
        [sys.executable, "-m", "rollcap", *args], cwd=REPO, env=base_env(env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return subprocess.CompletedProcess(
            p.args, -9, out, err + "\n[faults: killed after timeout]"
        )
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def wait_for(cond, timeout: float, interval: float = 0.1, what: object = "condition"):  # type: ignore[no-untyped-def]
    """Poll cond() until truthy; return its value, or raise with `what` (str or callable)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            text = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {text}")
        time.sleep(interval)
