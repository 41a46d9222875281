"""Fleet daemons: real `rollcap offload` processes of several hosts write one
bucket, then `rollcap list --json` answers the window from their index.

One SeaweedFS; for each of H hosts a spool whose ready/ holds F finished
captures (small valid pcaps named as capture names them, 10-minute rotation,
each closed when its period ends), and one `rollcap offload` process per host,
each with its own config (capture.hostname, spool) and the same bucket and
prefix. The daemons run until every file is stored (their state file counts
H x F uploads), then stop on SIGTERM. Measured:

- the bucket: capture objects, manifest entries (under _index/manifest/v1/, one
  key per 10-minute slot a capture spans), and whether every stored capture
  has an entry;
- `rollcap list --json` over a window every host captured all along (wall
  time of the command, best of --reps): captures listed, and its coverage
  (source, hosts seen, hosts_checked_by_listing, which must be 0: no host
  fell back to listing); and the same selection in this process, its
  requests counted by kind;
  once more over a window running past the hosts' last captures, where a
  hole in every host's entries must send each host to the listing check;
- the recursive listing of the prefix (paginated ListObjectsV2, best of
  --reps) for comparison.

What it proves: the running daemon's path (DeferredStorage and all) writes the
index that the fleet `rollcap list` reads, for several hosts sharing a bucket.
What it does not: scale. H x F is small; bench.fleet measures 1,000 hosts x
one day, filled by the pipeline's entry writer rather than by daemons.

    python3 -m bench.fleet_daemons [--hosts 4] [--files 6] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    offload_config,
    rollcap_env,
    seaweedfs,
    start_rollcap,
    stop,
    workdir,
    write_result,
)
from bench.fleet import FRAME, counted
from rollcap.spool import Spool
from rollcap.spool.readyname import ReadyName
from rollcap.storage import manifest
from tests.support.archive import write_pcap
from tests.support.seaweedfs import SeaweedFS

DAY = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PERIOD = 600
PACKETS = 20  # per file, spread over its period
PREFIX = "fleetd"
IFACE = "eth0"
NS = 1_000_000_000


def host_name(i: int) -> str:
    return f"dhost{i:02d}"


def fill_spool(spool: Spool, host: str, i: int, files: int) -> None:
    """F finished captures in ready/, as capture hands them off: written beside,
    closed (mtime) when the period ended, renamed into ready/."""
    for d in spool.all_dirs():
        d.mkdir(parents=True, exist_ok=True)
    offset = (i * 7) % 60  # hosts rotate at slightly different seconds
    for k in range(files):
        start = DAY + timedelta(seconds=offset + k * PERIOD)
        t0 = int(start.timestamp() * NS)
        step = PERIOD * NS // (PACKETS + 1)
        recs = [(t0 + (j + 1) * step, FRAME, len(FRAME)) for j in range(PACKETS)]
        name = ReadyName(start, k + 1, host, IFACE).format()
        tmp = write_pcap(spool.tmp / name, recs)
        closed = start.timestamp() + PERIOD + 0.2
        os.utime(tmp, (closed, closed))
        tmp.rename(spool.ready / name)


def uploaded(spool: Spool) -> int:
    try:
        return int(json.loads((spool.state / "offload.json").read_text()).get("uploaded_files", 0))
    except (FileNotFoundError, ValueError):
        return 0


def run_daemons(w: SeaweedFS, base: Path, hosts: int, files: int, timeout: float
                ) -> tuple[dict[str, Any], list[Path]]:  # fmt: skip
    """Start one offload per host, wait until every file is stored, stop them."""
    env = rollcap_env(w.env())
    env.pop("CREDENTIALS_DIRECTORY", None)
    spools, configs, procs = [], [], []
    for i in range(hosts):
        host = host_name(i)
        spool = Spool.at(base / host / "spool")
        fill_spool(spool, host, i, files)
        cfg = offload_config(base / host / "rollcap.toml", spool.root, w, PREFIX,
                             capture={"hostname": host, "rotate_seconds": PERIOD})  # fmt: skip
        with cfg.open("a") as f:  # not the machine's node_exporter directory
            f.write('[metrics]\ntextfile_directory = ""\n')
        spools.append(spool)
        configs.append(cfg)
    t = time.monotonic()
    for i, cfg in enumerate(configs):
        procs.append(start_rollcap("offload", cfg, base / host_name(i) / "offload.log", env))
    try:
        deadline = t + timeout
        while sum(uploaded(s) for s in spools) < hosts * files:
            dead = [i for i, p in enumerate(procs) if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = {host_name(i): (base / host_name(i) / "offload.log").read_text()[-1500:]
                        for i in dead or range(hosts)}  # fmt: skip
                raise RuntimeError(f"not all files stored (exited: {dead}): {logs}")
            time.sleep(0.2)
        stored_s = time.monotonic() - t
    finally:
        codes = [stop(p) for p in procs]
    left = sum(1 for s in spools for _ in s.ready.iterdir())
    print(f"{hosts} offload daemons stored {hosts * files} files in {stored_s:.1f} s; "
          f"exit codes {codes}, {left} files left in ready/")  # fmt: skip
    return {"seconds_until_all_stored": round(stored_s, 2), "exit_codes": codes,
            "files_left_in_ready": left}, configs  # fmt: skip


def pages(w: SeaweedFS) -> Iterator[dict[str, Any]]:
    """ListObjectsV2 pages of every key below the prefix (captures and index)."""
    paginator = w.client().get_paginator("list_objects_v2")
    yield from paginator.paginate(Bucket=w.bucket, Prefix=PREFIX + "/")


def bucket_contents(w: SeaweedFS) -> dict[str, Any]:
    """Capture objects and manifest entries as stored, and how they match."""
    keys = [k for page in pages(w) for k in (o["Key"] for o in page.get("Contents", []))]
    root = manifest.root(PREFIX)
    captures = {k for k in keys if not k.startswith(root) and "/_index/" not in k}
    index = [k for k in keys if k.startswith(root)]
    entries = [manifest.parse_key(k, PREFIX) for k in index]
    parsed = [e for e in entries if e is not None]
    with_object = {e.key for e in parsed if e.has_object}
    out = {
        "capture_objects": len(captures),
        "manifest_entries": len(index),  # one key per 10-minute slot a capture spans
        "distinct_entries": len({e.ident for e in parsed}),
        "unparsable_entries": len(index) - len(parsed),
        "coverage_only_entries": sum(1 for e in parsed if not e.has_object),
        "hosts_in_entries": sorted({e.host for e in parsed}),
        "captures_without_entry": sorted(captures - with_object),
        "entries_without_capture": sorted(with_object - captures),
        "every_capture_has_an_entry": captures <= with_object,
    }
    print(f"bucket: {out['capture_objects']} captures, {out['manifest_entries']} manifest "
          f"entries ({out['coverage_only_entries']} coverage only); every capture has an "
          f"entry: {out['every_capture_has_an_entry']}")  # fmt: skip
    out["_captures"] = captures
    return out


def list_json(cfg: Path, env: dict[str, str], since: str, until: str, reps: int
              ) -> dict[str, Any]:  # fmt: skip
    runs: list[float] = []
    out: dict[str, Any] = {}
    for _ in range(reps):
        t = time.monotonic()
        cmd = [sys.executable, "-m", "rollcap", "list", "--json", "--since", since,
               "--until", until, "--config", str(cfg)]  # fmt: skip
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
        runs.append(round(time.monotonic() - t, 3))
        if p.returncode != 0:
            raise RuntimeError(f"rollcap list exited {p.returncode}: {p.stderr[-2000:]}")
        out = json.loads(p.stdout)
    cov = out["coverage"]
    return {"seconds": min(runs), "all_seconds": runs,
            "captures": len(out["captures"]),
            "_keys": {c["key"] for c in out["captures"]},
            "hosts_seen": cov["hosts_seen"], "hosts_with_captures": cov["hosts_with_captures"],
            "source": cov["source"], "hosts_checked_by_listing": cov["hosts_checked_by_listing"],
            "gaps": len(cov["gaps"]), "rejected_entries": cov["rejected_entries"]}  # fmt: skip


def selection_requests(w: SeaweedFS, since: str, until: str) -> dict[str, Any]:
    """The same selection in this process, its S3 requests counted by kind
    (interpreter start excluded: at this size it is most of the CLI's time)."""
    from rollcap.config.schema import DEFAULT_KEY_TEMPLATE, OffloadConfig
    from rollcap.retrieve.select import collect, select
    from rollcap.storage import open_storage

    os.environ.update(w.env())
    os.environ.pop("CREDENTIALS_DIRECTORY", None)
    oc = OffloadConfig(destination=f"s3://{w.bucket}/{PREFIX}", endpoint_url=w.endpoint,
                       region="us-east-1")  # type: ignore[call-arg]  # fmt: skip
    st = open_storage(oc)
    s_dt, u_dt = (datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                  for t in (since, until))  # fmt: skip
    try:
        sel = select(st, template=DEFAULT_KEY_TEMPLATE, prefix=PREFIX, since=s_dt, until=u_dt)
        n, counts, secs = counted(st, lambda: len(collect(sel)))
    finally:
        st.close()
    return {"seconds": round(secs, 3), "captures": n, "requests": counts}


def recursive_listing(w: SeaweedFS, reps: int) -> dict[str, Any]:
    """Every key below the prefix, paginated: what a listing-based `list` walks."""
    runs: list[float] = []
    n = requests = 0
    for _ in range(reps):
        t = time.monotonic()
        n = requests = 0
        for page in pages(w):
            requests += 1
            n += len(page.get("Contents", []))
        runs.append(round(time.monotonic() - t, 3))
    return {"seconds": min(runs), "all_seconds": runs, "keys": n,
            "requests": {"ListObjectsV2": requests}}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--files", type=int, default=6, help="finished captures per host")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=300, help="seconds to store every file")
    a = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress in logs
    # the window every host captured all along (hosts open up to a minute
    # after DAY): coverage from entries alone, nothing to check by listing
    since, until, past_end = (
        t.strftime("%Y-%m-%dT%H:%M:%SZ")
        for t in (DAY + timedelta(seconds=60), DAY + timedelta(seconds=a.files * PERIOD),
                  DAY + timedelta(seconds=a.files * PERIOD + 120))
    )  # fmt: skip
    res: dict[str, Any] = {"hosts": a.hosts, "files_per_host": a.files,
                           "packets_per_file": PACKETS, "window": [since, until]}  # fmt: skip
    with seaweedfs() as w, workdir("fleetd") as base:
        res["daemons"], configs = run_daemons(w, base, a.hosts, a.files, a.timeout)
        bucket = bucket_contents(w)
        captures = bucket.pop("_captures")
        res["bucket"] = bucket
        env = rollcap_env(w.env())
        env.pop("CREDENTIALS_DIRECTORY", None)
        lj = list_json(configs[0], env, since, until, a.reps)
        lj["lists_every_stored_capture"] = lj.pop("_keys") == captures
        res["list_json"] = lj
        lj["in_process"] = selection_requests(w, since, until)
        # contrast: a window running 2 minutes past the hosts' last captures
        # has a hole in every host's entries, so each host is checked by listing
        hole = list_json(configs[0], env, since, past_end, 1)
        hole.pop("_keys")
        res["list_json_window_past_the_end"] = {**hole, "until": past_end}
        base_l = recursive_listing(w, a.reps)
        res["recursive_listing"] = base_l
        lj["ratio_to_recursive_listing"] = round(base_l["seconds"] / lj["seconds"], 2)
    print(f"rollcap list --json: {lj['captures']} captures of {lj['hosts_seen']} hosts in "
          f"{lj['seconds']:.2f} s (runs {lj['all_seconds']}), source {lj['source']}, "
          f"{lj['hosts_checked_by_listing']} hosts checked by listing, all stored listed: "
          f"{lj['lists_every_stored_capture']}")  # fmt: skip
    ip = lj["in_process"]
    print(f"  in process: {ip['captures']} captures in {ip['seconds']:.3f} s; "
          f"requests {ip['requests']}")  # fmt: skip
    print(f"  (window past the hosts' last captures: {hole['hosts_checked_by_listing']} hosts "
          f"checked by listing, {hole['gaps']} gaps, {hole['seconds']:.2f} s)")  # fmt: skip
    print(f"recursive listing: {base_l['keys']} keys in {base_l['requests']['ListObjectsV2']} "
          f"requests, {base_l['seconds']:.3f} s (runs {base_l['all_seconds']})")  # fmt: skip
    write_result("fleet_daemons", res)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
