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
import re
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

from rollcap.storage.base import META  # noqa: E402
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


def s3_offload(w: SeaweedFS, prefix: str) -> dict[str, Any]:
    """The [offload] settings that send captures to the bench's SeaweedFS under prefix."""
    return {
        "destination": f"s3://{w.bucket}/{prefix}",
        "endpoint_url": w.endpoint,
        "region": "us-east-1",
        "rescan_seconds": 5,
    }


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
    off = {**s3_offload(w, prefix), **(offload or {})}
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


def object_counts(client: Any, bucket: str, key: str) -> dict[str, int]:
    """A stored capture's packets and uncompressed pcap bytes, from the metadata
    the offload wrote with it (one HEAD), and the stored object's size."""
    h = client.head_object(Bucket=bucket, Key=key)
    meta = h["Metadata"]
    return {
        "packets": int(meta.get(META["packets"], 0)),
        "pcap_bytes": int(meta.get(META["pcap_bytes"], 0)),
        "object_bytes": int(h["ContentLength"]),
    }


def wait_drained(spool: Path, off: subprocess.Popen[bytes], timeout: float) -> float | None:
    """Seconds until ready/ holds no capture (the offload stored and deleted
    every file); None if it did not within timeout or the offload exited."""
    t0 = time.monotonic()
    ready = spool / "ready"
    while time.monotonic() - t0 < timeout and off.poll() is None:
        with contextlib.suppress(FileNotFoundError):
            if not any(e.name.endswith((".pcap", ".pcap.zst", ".pcap.gz"))
                       for e in os.scandir(ready)):  # fmt: skip
                return round(time.monotonic() - t0, 1)
        time.sleep(0.5)
    return None


# glibc gives each thread that mallocs beside the main one an arena of its own:
# heaps reserved as 64 MiB-aligned 64 MiB mappings, the used part read-write,
# the rest PROT_NONE (malloc/arena.c, HEAP_MAX_SIZE on 64-bit)
_ARENA_HEAP = 64 << 20
_MAPPING = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$")


def rss_by_kind(pid: int) -> dict[str, int]:
    """kB of RSS by kind of mapping, from /proc/PID/smaps (see smaps_by_kind)."""
    return smaps_by_kind(Path(f"/proc/{pid}/smaps").read_text())


def smaps_by_kind(smaps: str) -> dict[str, int]:
    """kB of RSS by kind of mapping: the brk heap (the main malloc arena), the
    other arenas' heaps (see _ARENA_HEAP) and how many, other anonymous memory
    (pymalloc's arenas, large mallocs' own mmaps, stacks) and files (the
    interpreter, libraries)."""
    out = {"brk_heap": 0, "thread_arenas": 0, "thread_arena_heaps": 0, "other_anon": 0,
           "file": 0}  # fmt: skip
    maps: list[tuple[int, int, str, str, int]] = []
    for line in smaps.splitlines():
        m = _MAPPING.match(line)
        if m:
            maps.append((int(m[1], 16), int(m[2], 16), m[3], m[4], 0))
        elif line.startswith("Rss:") and maps:
            lo, hi, perms, name, _ = maps[-1]
            maps[-1] = (lo, hi, perms, name, int(line.split()[1]))
    reserved_by = {lo: hi for lo, hi, perms, name, _ in maps if perms == "---p" and not name}
    for lo, hi, _perms, name, rss in maps:
        if name == "[heap]":
            out["brk_heap"] += rss
        elif name.startswith("/"):
            out["file"] += rss
        elif not name and lo % _ARENA_HEAP == 0 and (
            hi - lo == _ARENA_HEAP or reserved_by.get(hi) == lo + _ARENA_HEAP
        ):
            out["thread_arenas"] += rss
            out["thread_arena_heaps"] += 1
        else:
            out["other_anon"] += rss
    return out


def fmt_ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"
