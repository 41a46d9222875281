"""Backlog drain: N finished captures to a local SeaweedFS, several ways.

- seed:    the glue this project replaces: gzip -6 per file (what `tcpdump -z
           gzip` runs), `inotifywait -m -e delete | sed | xargs -n1 done.sh`,
           done.sh = `aws s3 cp` + `rm` (bench/seed/).
- limit:   the slower of (a) zstd -3 alone, one file per core, and (b) the
           server's ingest of the already compressed bytes with parallel PUTs.
- harness: the bare baseline: zstd -3 copy_stream + upload_file, 4 threads;
           harness_fast: the same at zstd 1, the adaptive level's fast one (how
           far compress + PUT alone get past the seed on this machine).
- rollcap: `python -m rollcap offload` on a spool whose ready/ holds the files
           (cold start); timed until every object is listed and ready/ is
           empty (offload deletes a file only after verifying its object).
- steady:  the offload already running when the backlog lands, as shipped
           (adaptive level) and at a fixed zstd 3 (the harness's level).

Rates are MB/s (10^6 bytes) of uncompressed pcap. All run against one
SeaweedFS in the same run; afterwards every object is downloaded, decompressed
and compared with its source by SHA-256 (untimed). The last lines are the
goals as ratios within the run.

    python3 -m bench.drain [--count 8 --size-mb 64] [--quick] [--no-profile]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gzip
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import (
    MB,
    REPO,
    cpu_seconds,
    fmt_ratio,
    list_keys,
    offload_config,
    rollcap_env,
    seaweedfs,
    start_rollcap,
    status_kb,
    stop,
    workdir,
    write_result,
)
from bench.datagen import dataset
from tests.support.seaweedfs import SeaweedFS

SEED = REPO / "bench" / "seed"
POLL = 0.1
TIMEOUT = 900.0


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _seq(name: str) -> int:
    m = re.search(r"-(\d{6,})(?:_[^/]*)?\.pcap(?:\.gz|\.zst)?$", name)
    if not m:
        raise ValueError(f"no sequence number in {name}")
    return int(m[1])


def _wait_drained(
    w: SeaweedFS,
    prefix: str,
    watch: Path,
    n: int,
    suffix: str,
    proc: subprocess.Popen[bytes] | None = None,
    started: dict[str, float] | None = None,
    state_file: Path | None = None,
) -> float:
    """Seconds until n objects ending in suffix exist and watch/ holds no capture."""
    client = w.client()
    t0 = time.monotonic()
    while time.monotonic() - t0 < TIMEOUT:
        # the daemon's first state write: it is up
        if started is not None and state_file is not None and "at" not in started:
            started.update({"at": time.monotonic()} if state_file.exists() else {})
        if (
            started is not None
            and "first" not in started
            and any(k.endswith(suffix) for k in list_keys(client, w.bucket, prefix))
        ):
            started["first"] = time.monotonic()
        left = [p for p in os.listdir(watch) if ".pcap" in p]
        if not left:
            keys = [k for k in list_keys(client, w.bucket, prefix) if k.endswith(suffix)]
            if len(keys) >= n:
                return time.monotonic()
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before the drain ended")
        time.sleep(POLL)
    raise TimeoutError(f"not drained after {TIMEOUT}s: {watch}")


def verify(w: SeaweedFS, prefix: str, sources: dict[int, str], codec: str) -> dict[str, Any]:
    """Download every object, decompress, compare with the source's SHA-256."""
    import zstandard

    client = w.client()
    keys = list_keys(client, w.bucket, prefix)
    ok = 0
    stored = 0
    problems: list[str] = []
    for key, size in sorted(keys.items()):
        seq = _seq(key)
        body = client.get_object(Bucket=w.bucket, Key=key)["Body"].read()
        stored += size
        raw = (
            gzip.decompress(body)
            if codec == "gzip"
            else zstandard.ZstdDecompressor().decompressobj().decompress(body)
        )
        if sources.get(seq) == _sha256(raw):
            ok += 1
        else:
            problems.append(key)
    missing = sorted(set(sources) - {_seq(k) for k in keys})
    return {
        "objects": len(keys),
        "identical": ok,
        "mismatched": problems,
        "missing_seq": missing,
        "stored_bytes": stored,
    }


def run_seed(files: list[Path], w: SeaweedFS, work: Path, tag: str) -> dict[str, Any]:
    spool = work / f"seed-{tag}"
    spool.mkdir()
    for f in files:
        shutil.copyfile(f, spool / f.name)
    prefix = f"seed-{tag}/benchhost"
    env = {
        **os.environ,
        **w.env(),
        "S3_ENDPOINT": w.endpoint,
        "S3_DEST": f"s3://{w.bucket}/{prefix}",
        # aws-cli's default CRC32 trailers: keep them off as rollcap does
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
    }
    log = (work / f"seed-{tag}.log").open("wb")
    watcher = subprocess.Popen(
        [str(SEED / "watch.sh"), str(spool)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    time.sleep(1.0)  # inotifywait sets up its watch
    t0 = time.monotonic()
    # tcpdump -z forks `gzip FILE` at each rotation without waiting; for a backlog
    # that is one gzip per file, as many at once as there are cores. tcpdump also
    # renices it to 19; we do not, because on this shared machine that would
    # measure the other tenants, and it can only make the seed look worse.
    gz = subprocess.Popen(
        ["xargs", "-0", f"-P{os.cpu_count() or 1}", "-n1", "gzip", "-6"],
        stdin=subprocess.PIPE,
        env=env,
    )
    gz.communicate(b"\0".join(str(spool / f.name).encode() for f in files))
    t_gzip = time.monotonic() - t0
    try:
        t1 = _wait_drained(w, prefix, spool, len(files), ".pcap.gz", watcher)
    finally:
        os.killpg(watcher.pid, signal.SIGTERM)
        watcher.wait(10)
    return {"seconds": t1 - t0, "gzip_seconds": t_gzip, "prefix": prefix}


def run_limit(
    files: list[Path], w: SeaweedFS, concurrencies: list[int], tag: str
) -> dict[str, Any]:
    import zstandard

    raw = sum(f.stat().st_size for f in files)
    cores = os.cpu_count() or 1

    def compress(p: Path) -> bytes:
        return zstandard.ZstdCompressor(level=3).compress(p.read_bytes())

    t0, c0 = time.monotonic(), time.process_time()
    with ThreadPoolExecutor(cores) as ex:
        blobs = list(ex.map(compress, files))
    t_comp = time.monotonic() - t0
    compress_cpu = time.process_time() - c0
    comp = sum(len(b) for b in blobs)

    client = w.client()
    ingest: dict[str, float] = {}
    ingest_cpu: dict[str, tuple[float, float]] = {}  # (server, client) CPU seconds
    for c in concurrencies:

        def put(i: int, c: int = c) -> None:
            client.put_object(
                Bucket=w.bucket, Key=f"limit-{tag}/c{c}/{i:06d}.pcap.zst", Body=blobs[i]
            )

        t0, c0, s0 = time.monotonic(), time.process_time(), server_cpu(w)
        with ThreadPoolExecutor(c) as ex:
            list(ex.map(put, range(len(blobs))))
        ingest[str(c)] = time.monotonic() - t0
        ingest_cpu[str(c)] = (server_cpu(w) - s0, time.process_time() - c0)
    best_c, t_put = min(ingest.items(), key=lambda kv: kv[1])

    # For reference, not the limit: both at once in one process (compress a
    # file in memory, PUT it; 4 threads), i.e. compression and the server
    # sharing the same cores, with no temp file, hashing or verification.
    def both(i: int) -> None:
        body = compress(files[i])
        client.put_object(Bucket=w.bucket, Key=f"both-{tag}/{i:06d}.pcap.zst", Body=body)

    t0 = time.monotonic()
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(both, range(len(files))))
    t_both = time.monotonic() - t0
    compress_mbs = raw / t_comp / MB
    ingest_mbs = raw / t_put / MB  # uncompressed MB/s that the ingest rate carries
    # The limit gives compression and ingest all cores each; a real pipeline runs
    # both on the same cores. Their CPU seconds added up bound any pipeline here.
    srv, cli = ingest_cpu[best_c]
    work_cpu = compress_cpu + srv + cli
    return {
        "zstd_level": 3,
        "compress_threads": cores,
        "compress_seconds": t_comp,
        "compress_mb_s": compress_mbs,
        "compressed_bytes": comp,
        "zstd_ratio": comp / raw,
        "put_seconds_by_concurrency": ingest,
        "put_best_concurrency": int(best_c),
        "ingest_compressed_mb_s": comp / t_put / MB,
        "ingest_mb_s": ingest_mbs,
        "mb_s": min(compress_mbs, ingest_mbs),
        "bound_by": "compression" if compress_mbs < ingest_mbs else "ingest",
        "compress_and_put_together_mb_s": raw / t_both / MB,
        "cpu_seconds": {"compress": compress_cpu, "server_ingest": srv, "client_put": cli},
        "shared_cores_ceiling_mb_s": raw / (work_cpu / cores) / MB,
    }


def server_cpu(w: SeaweedFS) -> float:
    """CPU seconds SeaweedFS (one `weed mini` process) has used so far."""
    assert w.proc is not None
    return cpu_seconds(w.proc.pid)


def rollcap_available() -> bool:
    return importlib.util.find_spec("rollcap.offload.service") is not None


def run_harness(
    files: list[Path], w: SeaweedFS, work: Path, tag: str, level: int = 3
) -> dict[str, Any]:
    """The bare baseline: in one Python process, 4 threads, each zstd -LEVEL of a
    file into a temp file (copy_stream), then boto3's upload_file. No hashing, no
    verification, no spool: what compress + PUT alone cost."""
    import zstandard

    client = w.client()

    def one(p: Path) -> None:
        out = work / f"harness-{tag}-{p.name}.zst"
        with p.open("rb") as src, out.open("wb") as dst:
            zstandard.ZstdCompressor(level=level).copy_stream(src, dst)
        client.upload_file(str(out), w.bucket, f"harness-{tag}/{p.name}.zst")
        out.unlink()

    t0, c0 = time.monotonic(), time.process_time()
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(one, files))
    return {"seconds": time.monotonic() - t0, "cpu_seconds": time.process_time() - c0}


def run_rollcap(
    files: list[Path],
    w: SeaweedFS,
    work: Path,
    tag: str,
    profile: Path | None = None,
    *,
    steady: bool = False,
    offload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """cold: the backlog is in ready/ before the service starts, timed from its
    start. steady: the service is running (its destination check done) when the
    whole backlog is renamed into ready/ at once; timed, and its CPU counted,
    from the rename."""
    spool = work / f"spool-{tag}"
    ready = spool / "ready"
    ready.mkdir(parents=True)
    stage = work / f"stage-{tag}"
    stage.mkdir()
    for f in files:
        shutil.copyfile(f, (stage if steady else ready) / f.name)
    prefix = f"rollcap-{tag}"
    cfg = offload_config(work / f"rollcap-{tag}.toml", spool, w, prefix, offload=offload)
    t0, s0 = time.monotonic(), server_cpu(w)
    proc = start_rollcap("offload", cfg, work / f"offload-{tag}.log", rollcap_env(w.env()))
    c0 = 0.0
    if steady:
        _wait_running(spool / "state" / "offload.json", proc)
        t0, s0, c0 = time.monotonic(), server_cpu(w), cpu_seconds(proc.pid)
        for f in files:
            os.rename(stage / f.name, ready / f.name)
    spy = None
    if profile is not None:
        spy = subprocess.Popen(
            [
                "py-spy",
                "record",
                "--pid",
                str(proc.pid),
                "--rate",
                "200",
                "--idle",
                "--threads",
                "--format",
                "raw",
                "--output",
                str(profile),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    peak_kb = 0
    started: dict[str, float] = {}
    try:
        t1 = _wait_drained(
            w,
            prefix,
            ready,
            len(files),
            ".pcap.zst",
            proc,
            started,
            spool / "state" / "offload.json",
        )
        peak_kb = status_kb(proc.pid, "VmHWM")
        written = _write_bytes(proc.pid)
        own_cpu, srv_cpu = cpu_seconds(proc.pid) - c0, server_cpu(w) - s0
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
        rc = stop(proc)
    log_tail = (work / f"offload-{tag}.log").read_text(errors="replace").splitlines()[-5:]
    return {
        "seconds": t1 - t0,
        # process start until its first state file: interpreter, imports, config, S3 check
        "startup_seconds": started["at"] - t0 if "at" in started and not steady else None,
        "first_upload_seconds": started["first"] - t0 if "first" in started else None,
        "stored_bytes": sum(list_keys(w.client(), w.bucket, prefix).values()),
        "prefix": prefix,
        "peak_rss_mb": peak_kb / 1024,
        # bytes the offload process wrote to disk (its /proc/PID/io write_bytes,
        # from its start) per byte of pcap it offloaded: the temp file of
        # compress-then-upload shows here as about the compression ratio
        "write_bytes": written,
        "write_bytes_per_pcap_byte": written / sum(f.stat().st_size for f in files),
        # how busy rollcap and the server kept the machine's cores while draining
        "cpu_seconds": {"rollcap": own_cpu, "server": srv_cpu},
        "cores_busy": (own_cpu + srv_cpu) / (t1 - t0),
        "exit_code": rc,
        "log_tail": log_tail,
    }


def _write_bytes(pid: int) -> int:
    """Bytes the process caused to be written to storage (/proc/PID/io)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def _wait_running(state_file: Path, proc: subprocess.Popen[bytes]) -> None:
    """Until the offload says it runs (its destination check has passed)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(state_file.read_text()).get("state") == "running":
                return
        if proc.poll() is not None:
            raise RuntimeError(f"offload exited with {proc.returncode} before running")
        time.sleep(POLL)
    raise TimeoutError(f"offload not running after 120 s: {state_file}")


_WAITING = ("threading.py", "queue.py", "thread.py:8", "selectors.py", "inotify_c.py")


def _frame_text(frame: str) -> str:
    """'func (path:line)' plus that line's source when the file is ours."""
    first = frame.split(" < ")[0]
    m = re.search(r"\((.+):(\d+)\)$", first)
    if m and m[1].startswith("rollcap/"):
        lines = (REPO / m[1]).read_text().splitlines()
        n = int(m[2])
        if 0 < n <= len(lines):
            return f"{frame}  `{lines[n - 1].strip()}`"
    return frame


def summarize_profile(path: Path, top: int = 12) -> dict[str, Any]:
    """Where each kind of thread spent its wall-clock samples.

    py-spy samples every thread, waiting or not. Offload workers (threads named
    offload_N) are grouped by their innermost rollcap frame, which shows the
    phase a file is in (compressing, uploading, verifying); the transfer
    threads (s3transfer) and the rest by their innermost frame.
    """
    if not path.exists():
        return {"error": "py-spy wrote no profile"}
    groups: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if f]
        thread, frames = frames[0], frames[1:]
        if not frames:
            continue
        ours = [f for f in frames if "(rollcap/" in f]
        if re.search(r": offload_\d+$", thread):
            # the innermost rollcap frame and its caller: which phase, called from where
            group, leaf = "offload workers", (" < ".join(ours[:-3:-1]) if ours else frames[-1])
        elif any("s3transfer/" in f for f in frames):
            group, leaf = "s3transfer threads", frames[-1]
        elif thread.endswith("MainThread"):
            group, leaf = "main thread", frames[-1]
        else:
            group, leaf = "other threads", frames[-1]
        if any(w in leaf for w in _WAITING) and group != "offload workers":
            leaf = "(waiting: lock, queue, sleep or inotify)"
        groups[group][leaf] += int(count)
    out: dict[str, Any] = {}
    for group, counter in sorted(groups.items()):
        n = sum(counter.values())
        out[group] = {
            "samples": n,
            "top": [f"{100 * v / n:5.1f}%  {_frame_text(k)}" for k, v in counter.most_common(top)],
        }
    return out


# rollcap: the cold start as shipped; steady: running when the backlog lands,
# as shipped (adaptive level) and at a fixed zstd 3 (the harness's level)
KINDS = ["limit", "harness", "harness_fast", "seed", "rollcap", "steady", "steady_level3"]
ROLLCAP_RUNS: dict[str, tuple[bool, dict[str, Any] | None]] = {
    "rollcap": (False, None),
    "steady": (True, None),
    "steady_level3": (True, {"compression_fast_backlog": 0}),
}


def _client_cpu(r: dict[str, Any]) -> float | None:
    """CPU seconds of the client (harness or rollcap) in one round."""
    c = r.get("cpu_seconds")
    if isinstance(c, dict):
        v = c.get("rollcap")
        return float(v) if isinstance(v, int | float) else None
    return float(c) if isinstance(c, int | float) else None


def goals(res: dict[str, Any]) -> dict[str, Any]:
    """The issue's figures, from the best round of each run."""
    h, s3, st = res.get("harness", {}), res.get("steady_level3", {}), res.get("steady", {})
    seed, cold = res.get("seed", {}), res.get("rollcap", {})
    g: dict[str, Any] = {}
    if "mb_s" in h and "mb_s" in s3:
        g["steady_level3_to_harness"] = s3["mb_s"] / h["mb_s"]
        # the least CPU of any round of each: contention only ever adds CPU time
        # (cache misses, a sibling thread), like wall-clock noise only slows
        g["client_cpu_to_harness"] = s3["least_client_cpu_s"] / h["least_client_cpu_s"]
    if "mb_s" in st and "mb_s" in seed:
        g["steady_default_to_seed"] = st["mb_s"] / seed["mb_s"]
    hf = res.get("harness_fast", {})
    if "mb_s" in hf and "mb_s" in st:
        g["steady_default_to_harness_fast"] = st["mb_s"] / hf["mb_s"]
    if "mb_s" in hf and "mb_s" in seed:
        # above 5 or not: whether the x5 goal is within compress + PUT's reach here
        g["harness_fast_to_seed"] = hf["mb_s"] / seed["mb_s"]
    if "stored_bytes" in st and s3.get("stored_bytes"):
        g["stored_bytes_adaptive_to_level3"] = st["stored_bytes"] / s3["stored_bytes"]
    if cold.get("first_upload_seconds") is not None:
        g["cold_first_upload_seconds"] = cold["first_upload_seconds"]
    return g


def goal_lines(g: dict[str, Any]) -> list[str]:
    names = {
        "steady_level3_to_harness": ("steady drain at zstd 3 / harness", "goal >= 0.9"),
        "client_cpu_to_harness": ("rollcap CPU / harness CPU", "goal <= 1.15"),
        "steady_default_to_seed": ("steady drain as shipped / seed", "goal >= 5"),
        "steady_default_to_harness_fast": ("steady drain as shipped / harness at zstd 1", ""),
        "harness_fast_to_seed": ("harness at zstd 1 / seed (compress + PUT alone)", ""),
        "stored_bytes_adaptive_to_level3": ("bytes stored, adaptive / zstd 3", ""),
        "cold_first_upload_seconds": ("cold start: first object after (s)", ""),
    }
    return [f"{names[k][0]}: {v:.2f} {names[k][1]}".rstrip() for k, v in g.items()]


def summary_lines(res: dict[str, Any], rounds: int) -> list[str]:
    """Every figure the issue's "Measure" asks for, from one run, best rounds."""

    def mbs(kind: str) -> str:
        r = res.get(kind, {})
        return f"{r['mb_s']:.1f} MB/s" if "mb_s" in r else r.get("error", "not run")

    lim, h = res.get("limit", {}), res.get("harness", {})
    st, s3 = res.get("steady", {}), res.get("steady_level3", {})
    lines = [
        f"best of {rounds}: steady {mbs('steady')} as shipped (adaptive level), "
        f"{mbs('steady_level3')} at zstd 3; cold {mbs('rollcap')}; harness {mbs('harness')} "
        f"(zstd 1: {mbs('harness_fast')}); seed {mbs('seed')}",
    ]
    if "mb_s" in lim:
        lines.append(
            f"limit {lim['mb_s']:.1f} MB/s, bound by {lim['bound_by']}: zstd -3 alone "
            f"{lim['compress_mb_s']:.1f} MB/s on {lim['compress_threads']} threads, ingest "
            f"{lim['ingest_mb_s']:.1f} MB/s at {lim['put_best_concurrency']} PUTs"
        )
    if "cpu_seconds" in s3 and "cpu_seconds" in h:
        lines.append(
            f"client CPU, least of the rounds: rollcap at zstd 3 "
            f"{s3['least_client_cpu_s']:.2f} s, harness {h['least_client_cpu_s']:.2f} s"
        )
    if st.get("stored_bytes") and s3.get("stored_bytes"):
        lines.append(
            f"bytes stored: adaptive {st['stored_bytes'] / MB:.1f} MB, "
            f"zstd 3 {s3['stored_bytes'] / MB:.1f} MB"
        )
    return lines


def small_packet_dataset(count: int, size_mb: int) -> list[Path]:
    """The small-packet mix of bench/flows.py (64-128 B frames), as ready/ files."""
    from datetime import timedelta

    from bench.datagen import START, cache_root, ready_name
    from bench.flows import small_packet_file

    d = cache_root() / f"small-{count}x{size_mb}MB"
    done = d / ".complete"
    if not done.exists():
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        for i in range(count):
            start = START + timedelta(seconds=60 * i)
            small_packet_file(d / ready_name(i + 1, start), size_mb * 1_000_000, seed=i + 1)
        done.write_text("ok\n")
    return sorted(p for p in d.iterdir() if p.suffix == ".pcap")


def index_compare(a: argparse.Namespace) -> dict[str, Any]:
    """Steady drain with offload.flow_index on against off, on the same files in
    the same run (rounds alternate the order), on the bench mix and on the
    small-packet mix. Goal: on >= 0.9x off."""
    res: dict[str, Any] = {"files": a.count, "file_mb": a.size_mb, "load_before": os.getloadavg()}
    sets = {"bench mix": dataset(a.count, a.size_mb),
            "small packets": small_packet_dataset(a.count, a.size_mb)}  # fmt: skip
    with seaweedfs() as w, workdir("drain-index") as work:
        for name, files in sets.items():
            raw = sum(f.stat().st_size for f in files)
            sources = {_seq(f.name): _sha256(f.read_bytes()) for f in files}
            runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
            for i in range(a.rounds):
                for mode in ("on", "off") if i % 2 == 0 else ("off", "on"):
                    tag = f"{name.split()[0]}-{mode}-r{i}"
                    r = run_rollcap(files, w, work, tag, steady=True,
                                    offload={"flow_index": mode == "on"})  # fmt: skip
                    r["mb_s"] = raw / r["seconds"] / MB
                    r["verify"] = verify(w, r["prefix"], sources, "zstd")
                    runs[mode].append(r)
                    print(f"{name} round {i} index {mode}: {r['mb_s']:.1f} MB/s, "
                          f"client CPU {r['cpu_seconds']['rollcap']:.2f} s")  # fmt: skip
            on = max(runs["on"], key=lambda r: r["mb_s"])
            off = max(runs["off"], key=lambda r: r["mb_s"])
            res[name] = {
                "on_mb_s": on["mb_s"], "off_mb_s": off["mb_s"],
                "all_on_mb_s": [r["mb_s"] for r in runs["on"]],
                "all_off_mb_s": [r["mb_s"] for r in runs["off"]],
                "drain_ratio": on["mb_s"] / off["mb_s"],
                "client_cpu_on_s": min(r["cpu_seconds"]["rollcap"] for r in runs["on"]),
                "client_cpu_off_s": min(r["cpu_seconds"]["rollcap"] for r in runs["off"]),
                "verify_ok": all(
                    r["verify"]["identical"] == len(files) for r in runs["on"] + runs["off"]
                ),
            }  # fmt: skip
            r = res[name]
            print(f"{name}: index on {on['mb_s']:.1f} MB/s vs off {off['mb_s']:.1f} MB/s = "
                  f"{r['drain_ratio']:.2f}x (goal >= 0.9x); client CPU "
                  f"{r['client_cpu_on_s']:.2f} vs {r['client_cpu_off_s']:.2f} s")  # fmt: skip
    res["load_after"] = os.getloadavg()
    write_result("drain-index", res)
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--size-mb", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="4 x 32 MB")
    ap.add_argument("--no-profile", action="store_true", help="skip the py-spy profiled run")
    ap.add_argument("--skip-seed", action="store_true")
    ap.add_argument("--rounds", type=int, default=3, help="repeat each; the best counts")
    ap.add_argument("--index", action="store_true",
                    help="only: steady drain with offload.flow_index on vs off")  # fmt: skip
    a = ap.parse_args(argv)
    if a.index:
        if a.quick:
            a.count, a.size_mb, a.rounds = 4, 32, 1
        return index_compare(a)
    if a.quick:
        a.count, a.size_mb, a.rounds = 4, 32, 1
    files = dataset(a.count, a.size_mb)
    raw = sum(f.stat().st_size for f in files)
    sources = {_seq(f.name): _sha256(f.read_bytes()) for f in files}
    res: dict[str, Any] = {"files": len(files), "file_mb": a.size_mb, "total_mb": raw / MB}
    print(f"drain: {len(files)} files, {raw / MB:.0f} MB")
    have_seed = not a.skip_seed and shutil.which("aws") is not None
    if not a.skip_seed and not have_seed:
        res["seed"] = {"error": "the aws CLI is missing (pip install awscli)"}
        print("seed: skipped, the aws CLI is missing (pip install awscli)")
    have_rollcap = rollcap_available()
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    with seaweedfs() as w, workdir("drain") as work:
        for i in range(a.rounds):
            # alternate the order, so a slow spell of the shared machine hits all
            for kind in KINDS if i % 2 == 0 else KINDS[::-1]:
                tag = f"r{i}"
                if kind == "limit":
                    r = run_limit(files, w, [2, 4, 8], tag)
                    print(
                        f"round {i} limit: {r['mb_s']:.1f} MB/s (bound by {r['bound_by']}; "
                        f"zstd {r['compress_mb_s']:.1f} MB/s, ingest {r['ingest_mb_s']:.1f} MB/s; "
                        f"both at once {r['compress_and_put_together_mb_s']:.1f} MB/s; "
                        f"shared-cores ceiling {r['shared_cores_ceiling_mb_s']:.1f} MB/s: "
                        f"zstd {r['cpu_seconds']['compress']:.2f} + server "
                        f"{r['cpu_seconds']['server_ingest']:.2f} + client "
                        f"{r['cpu_seconds']['client_put']:.2f} CPU s)"
                    )
                elif kind in ("harness", "harness_fast"):
                    r = run_harness(files, w, work, f"{kind}-{tag}", 3 if kind == "harness" else 1)
                    r["mb_s"] = raw / r["seconds"] / MB
                    print(
                        f"round {i} {kind}: {r['mb_s']:.1f} MB/s, "
                        f"CPU {r['cpu_seconds']:.2f} s"
                    )
                elif kind == "seed" and have_seed:
                    r = run_seed(files, w, work, tag)
                    r["mb_s"] = raw / r["seconds"] / MB
                    r["verify"] = verify(w, r["prefix"], sources, "gzip")
                    print(f"round {i} seed: {r['seconds']:.1f} s = {r['mb_s']:.1f} MB/s")
                elif kind in ROLLCAP_RUNS and have_rollcap:
                    steady, offload = ROLLCAP_RUNS[kind]
                    r = run_rollcap(
                        files, w, work, f"{kind}-{tag}", steady=steady, offload=offload
                    )
                    r["mb_s"] = raw / r["seconds"] / MB
                    r["verify"] = verify(w, r["prefix"], sources, "zstd")
                    print(
                        f"round {i} {kind}: {r['seconds']:.1f} s = {r['mb_s']:.1f} MB/s "
                        f"(startup {r['startup_seconds'] or 0:.1f} s, first upload "
                        f"{r['first_upload_seconds'] or 0:.1f} s), "
                        f"stored {r['stored_bytes'] / MB:.1f} MB, "
                        f"peak RSS {r['peak_rss_mb']:.0f} MB, disk writes "
                        f"{r['write_bytes_per_pcap_byte']:.3f} B per pcap byte, CPU s rollcap "
                        f"{r['cpu_seconds']['rollcap']:.2f} + server "
                        f"{r['cpu_seconds']['server']:.2f}"
                        f" = {r['cores_busy']:.2f} of {os.cpu_count()} cores busy"
                    )
                else:
                    continue
                r["round"] = i
                runs[kind].append(r)
        # the best of the rounds: noise on a shared machine only ever slows things down
        for kind, rs in runs.items():
            if rs:
                cpus = [c for c in map(_client_cpu, rs) if c is not None]
                res[kind] = {
                    **max(rs, key=lambda r: r["mb_s"]),
                    "all_mb_s": [r["mb_s"] for r in rs],
                    "least_client_cpu_s": min(cpus) if cpus else None,
                }
        lim = res["limit"]["mb_s"]
        if "mb_s" in res.get("seed", {}):
            res["seed"]["ratio_to_limit"] = res["seed"]["mb_s"] / lim
        if "mb_s" in res.get("rollcap", {}):
            rc = res["rollcap"]
            rc["ratio_to_limit"] = rc["mb_s"] / lim
            together = max(r["compress_and_put_together_mb_s"] for r in runs["limit"])
            rc["ratio_to_compress_and_put_together"] = rc["mb_s"] / together
            ceiling = max(r["shared_cores_ceiling_mb_s"] for r in runs["limit"])
            res["limit"]["shared_cores_ceiling_ratio"] = ceiling / lim
            rc["ratio_to_shared_cores_ceiling"] = rc["mb_s"] / ceiling
            if "mb_s" in res.get("seed", {}):
                rc["ratio_to_seed"] = rc["mb_s"] / res["seed"]["mb_s"]
        res["goals"] = goals(res)
        for line in summary_lines(res, a.rounds):
            print(line)
        for line in goal_lines(res["goals"]):
            print(line)
        print(
            f"best of {a.rounds}: limit {lim:.1f} MB/s, "
            f"seed {res.get('seed', {}).get('mb_s', 0):.1f} MB/s, "
            f"rollcap {res.get('rollcap', {}).get('mb_s', 0):.1f} MB/s = "
            f"{fmt_ratio(res.get('rollcap', {}).get('ratio_to_seed'))} the seed, "
            f"{100 * res.get('rollcap', {}).get('ratio_to_limit', 0):.0f}% of the limit"
        )
        if "shared_cores_ceiling_ratio" in res["limit"]:
            print(
                f"no pipeline on these {os.cpu_count()} cores can pass "
                f"{100 * res['limit']['shared_cores_ceiling_ratio']:.0f}% of the limit "
                "(compression and the server's ingest share them); rollcap reached "
                f"{100 * res['rollcap']['ratio_to_shared_cores_ceiling']:.0f}% of that ceiling"
            )
        if have_rollcap and not a.no_profile and shutil.which("py-spy"):
            prof = REPO / "bench" / "results" / "drain-profile.folded"
            prof.parent.mkdir(parents=True, exist_ok=True)
            prof.unlink(missing_ok=True)
            p = run_rollcap(files, w, work, "profiled", profile=prof)
            res["profile"] = {"seconds": p["seconds"], **summarize_profile(prof)}
            for group, g in res["profile"].items():
                if isinstance(g, dict):
                    print(f"profile, {group} ({g['samples']} samples):")
                    print("  " + "\n  ".join(g["top"][:8]))
    write_result("drain", res)
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
