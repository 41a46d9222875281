"""Helpers shared by the benchmarks: paths, machine facts, results, processes.

Benchmarks assert nothing: they measure, print, and write JSON to
bench/results/. Every figure is reported next to a baseline measured in the
same run, because the machine is shared and absolute numbers are noisy.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.seaweedfs import SeaweedFS  # noqa: E402

# Tools installed beside this interpreter (weed, aws, py-spy in a virtualenv)
# are found even when the virtualenv is not activated, as under `make bench`.
_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")

RESULTS = REPO / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MB = 1_000_000


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model or platform.processor(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg_at_start": os.getloadavg()[0],
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "machine": machine(), **data}
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    print(f"wrote {path.relative_to(REPO)}")
    return path


def rollcap_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    env.pop("NOTIFY_SOCKET", None)
    return {**env, **(extra or {})}


def start_rollcap(
    command: str,
    config: Path,
    log: Path,
    env: dict[str, str],
    nice: int = 0,
    *,
    preexec: Callable[[], None] | None = None,
    prefix: list[str] | None = None,
) -> subprocess.Popen[bytes]:
    """`python -m rollcap COMMAND --config CONFIG` in its own process group;
    preexec (instead of nice) runs in the child, prefix wraps the command
    (e.g. ionice, which Python cannot set)."""
    f = log.open("ab")
    if preexec is None and nice:
        preexec = lambda: os.nice(nice)  # noqa: E731
    return subprocess.Popen(
        [*(prefix or []), sys.executable, "-m", "rollcap", command, "--config", str(config)],
        preexec_fn=preexec,
        cwd=REPO,
        env=env,
        stdout=f,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> int | None:
    """SIGTERM, then SIGKILL, the process (group) we started."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait(10)
    return proc.returncode


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid: int, key: str) -> int:
    """A kB value (VmHWM, VmRSS, ...) from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out += [int(x) for x in (task / "children").read_text().split()]
    return out


@contextlib.contextmanager
def seaweedfs(bucket: str = "rollcap-bench") -> Iterator[SeaweedFS]:
    w = SeaweedFS(bucket=bucket)
    t = time.monotonic()
    w.start(timeout=90)
    print(f"SeaweedFS up at {w.endpoint} in {time.monotonic() - t:.1f}s")
    try:
        yield w
    finally:
        w.cleanup()


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix=f"rollcap-bench-{prefix}-"))
    d.chmod(0o755)  # tcpdump runs as its own user and must reach the spool below
    try:
        yield d
    finally:
        if os.environ.get("ROLLCAP_BENCH_KEEP"):
            print(f"kept {d} (ROLLCAP_BENCH_KEEP)")
        else:
            shutil.rmtree(d, ignore_errors=True)


def offload_config(
    path: Path,
    spool: Path,
    w: SeaweedFS,
    prefix: str,
    *,
    capture: dict[str, Any] | None = None,
    offload: dict[str, Any] | None = None,
    spool_settings: dict[str, Any] | None = None,
) -> Path:
    """A rollcap.toml that offloads `spool` to the bench's SeaweedFS."""

    def table(name: str, values: dict[str, Any]) -> str:
        lines = [f"[{name}]"]
        for k, v in values.items():
            lines.append(f"{k} = {json.dumps(v)}")  # JSON strings/numbers/bools are TOML too
        return "\n".join(lines) + "\n\n"

    cap = {"interface": "lo", "rotate_megabytes": 1000, "hostname": "benchhost", **(capture or {})}
    off = {
        "destination": f"s3://{w.bucket}/{prefix}",
        "endpoint_url": w.endpoint,
        "region": "us-east-1",
        "rescan_seconds": 5,
        **(offload or {}),
    }
    spool_table = {"directory": str(spool), "max_megabytes": 100000, "group": "root"}
    spool_table.update(spool_settings or {})
    text = (
        table("capture", cap)
        + table("spool", spool_table)
        + table("offload", off)
        + table("log", {"level": "info"})
    )
    path.write_text(text)
    return path


def list_keys(client: Any, bucket: str, prefix: str) -> dict[str, int]:
    """key -> size of every capture object under prefix (not the manifest entries)."""
    keys: dict[str, int] = {}
    token: str | None = None
    while True:
        kw: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kw["ContinuationToken"] = token
        r = client.list_objects_v2(**kw)
        for o in r.get("Contents", []):
            if "_index/" not in o["Key"]:
                keys[o["Key"]] = o["Size"]
        if not r.get("IsTruncated"):
            return keys
        token = r["NextContinuationToken"]


def fmt_ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"
