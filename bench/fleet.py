"""Fleet: `rollcap list` / `fetch` of a window across N hosts x one day.

Fills a fresh SeaweedFS with N hosts x 144 files (10-minute rotation, one UTC
day) of tiny valid pcaps (zstd, two packets each) stored under the default
key template with the offload's metadata, plus the manifest entries the
offload writes beside them (written by manifest.write_entries through a
Storage's put_bytes, the function the offload pipeline calls). A few hosts
are "0.1.0 hosts" (objects only, no manifest entries: found by listing) and
one host has a 30-minute hole in its day. The fill is parallel signed PUTs
(http.client, several processes), because boto3 would spend minutes of CPU on
300,000 tiny requests.

Measured, each against the recursive listing of the captures made in the
same run (paginated ListObjectsV2 over the prefix, skipping _manifest/):

- `rollcap list` of a 10-minute window across the fleet, and for 3 hosts,
  and `rollcap fetch` of that window for 3 hosts: wall time of the command
  (`python -m rollcap ...`, interpreter start included; best of --reps), and
  its peak RSS;
- the requests each makes, by kind (the same selection run in this process
  with a counter on the boto3 client);
- 0.1.0's planning (per-host day listings + HEADs, catalog.find_captures
  without manifests) for comparison, unless --skip-old.

    python3 -m bench.fleet [--hosts 1000] [--reps 3] [--quick] [--skip-old]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import http.client
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import zstandard
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from bench.common import REPO, rollcap_env, seaweedfs, write_result
from rollcap.config.schema import DEFAULT_KEY_TEMPLATE
from rollcap.keys import KeyFields, render_key
from rollcap.storage import manifest
from rollcap.storage.base import META, ObjectInfo, Storage
from tests.support.seaweedfs import SeaweedFS

DAY = datetime(2026, 11, 26, tzinfo=UTC)
PERIOD = 600
FILES = 144
PREFIX = "fleet"
WINDOW = (DAY + timedelta(hours=12, minutes=3), DAY + timedelta(hours=12, minutes=13))
GAP_FILES = range(72, 75)  # 12:00-12:30 missing on the gap host
FRAME = bytes.fromhex("ffffffffffff0200000000010806") + bytes(46)  # a 60-byte ARP-ish frame


def host_name(i: int) -> str:
    return f"host{i:05d}"


def _pcap(first: float, last: float) -> bytes:
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
    for ts in (first, last):
        out += struct.pack("<IIII", int(ts), round(ts % 1 * 1e6), len(FRAME), len(FRAME)) + FRAME
    return bytes(out)


def objects_of(i: int, legacy: bool, gap: bool
               ) -> Iterator[tuple[str, bytes, dict[str, str], manifest.Entry | None]]:  # fmt: skip
    """(key, body, headers, its manifest entry or None for a 0.1.0 host) of
    one host's day of captures."""
    host = host_name(i)
    zc = zstandard.ZstdCompressor(level=3, write_checksum=True)
    offset = (i * 7) % PERIOD
    for k in range(FILES):
        if gap and k in GAP_FILES:
            continue
        start = DAY + timedelta(seconds=offset + k * PERIOD)
        first, last = start.timestamp() + 0.5, start.timestamp() + PERIOD - 0.5
        pcap = _pcap(first, last)
        body = zc.compress(pcap)
        key = render_key(DEFAULT_KEY_TEMPLATE, KeyFields(PREFIX, host, "eth0", start, k + 1,
                                                         ".pcap.zst"))  # fmt: skip
        meta = {
            META["first_ts"]: f"{first:.6f}", META["last_ts"]: f"{last:.6f}",
            META["packets"]: "2", META["pcap_bytes"]: str(len(pcap)),
            META["pcap_crc32"]: f"{zlib.crc32(pcap):08x}",
            META["sha256"]: hashlib.sha256(body).hexdigest(), META["linktype"]: "1",
            META["host"]: host, META["iface"]: "eth0", META["filter"]: "",
            META["compression"]: "zstd", META["version"]: "0.1.0" if legacy else "0.2.0",
        }  # fmt: skip
        e = None if legacy else manifest.Entry(
            key=key, host=host, iface="eth0", opened=start, closed_ts=int(last) + 1,
            first_ns=round(first * 1e9), last_ns=round(last * 1e9), packets=2,
            pcap_bytes=len(pcap), size=len(body),
            linktype=1,
        )  # fmt: skip
        yield key, body, {f"x-amz-meta-{k}": v for k, v in meta.items()}, e


class _Putter:
    """Signed PUTs over one keep-alive connection per thread."""

    def __init__(self, endpoint: str, bucket: str, ak: str, sk: str) -> None:
        self.url = endpoint.rstrip("/")
        self.netloc = urlsplit(endpoint).netloc
        self.bucket = bucket
        self.signer = S3SigV4Auth(Credentials(ak, sk), "s3", "us-east-1")
        self.local = threading.local()

    def put(self, key: str, body: bytes, headers: dict[str, str]) -> None:
        path = f"/{self.bucket}/{quote(key, safe='/~')}"
        req = AWSRequest("PUT", self.url + path, data=body, headers=headers)
        req.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
        self.signer.add_auth(req)
        for attempt in range(5):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection(self.netloc, timeout=60)
            try:
                conn.request("PUT", path, body=body, headers=dict(req.headers.items()))
                r = conn.getresponse()
                data = r.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                time.sleep(0.1 * 2**attempt)
                continue
            if r.status == 200:
                return
            if r.status in (500, 503) and attempt < 4:  # busy: back off, retry
                time.sleep(0.1 * 2**attempt)
                continue
            raise RuntimeError(f"PUT {key}: {r.status} {data[:200]!r}")
        raise RuntimeError(f"PUT {key}: no answer")


class _EntryWriter(Storage):
    """The offload's entry writes (manifest.write_entries -> Storage.put_bytes),
    sent as the fill's signed PUTs: the entries are the daemon's, byte for byte."""

    def __init__(self, putter: _Putter) -> None:
        self.putter = putter

    def put_bytes(self, key: str, body: bytes, content_type: str) -> None:
        self.putter.put(key, body, {"content-type": content_type})

    def describe(self) -> str:
        return f"bench fill of {self.putter.bucket}"

    def put_file(self, *a: Any, **kw: Any) -> ObjectInfo:
        raise NotImplementedError

    def head(self, key: str, checksum: bool = False) -> ObjectInfo | None:
        raise NotImplementedError

    def list(self, prefix: str, with_metadata: bool = False) -> Iterator[ObjectInfo]:
        raise NotImplementedError

    def download(self, key: str, dest: Path) -> None:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError


def _fill_hosts(args: tuple[str, str, str, str, list[int], list[int], int]) -> int:
    endpoint, bucket, ak, sk, hosts, legacy, gap = args
    p = _Putter(endpoint, bucket, ak, sk)
    entries = _EntryWriter(p)
    n = 0

    def store(o: tuple[str, bytes, dict[str, str], manifest.Entry | None]) -> int:
        key, body, headers, e = o
        p.put(key, body, headers)
        # as the pipeline: the entries after the capture, through the same function
        return 1 + (len(manifest.write_entries(entries, e, PREFIX)) if e is not None else 0)

    with ThreadPoolExecutor(12) as pool:
        for i in hosts:
            n += sum(pool.map(store, objects_of(i, i in legacy, i == gap)))
    return n


def fill(w: SeaweedFS, n_hosts: int, legacy: list[int], gap: int, procs: int) -> dict[str, Any]:
    t = time.monotonic()
    batches = [list(range(j, n_hosts, procs * 4)) for j in range(procs * 4)]
    jobs = [(w.endpoint, w.bucket, w.access_key, w.secret_key, b, legacy, gap) for b in batches]
    with ProcessPoolExecutor(procs) as pool:
        total = sum(pool.map(_fill_hosts, jobs))
    s = time.monotonic() - t
    print(f"filled {total:,} objects (captures and manifest entries) for {n_hosts} hosts "
          f"in {s:.0f} s ({total / s:.0f}/s)")  # fmt: skip
    return {"objects": total, "seconds": round(s, 1)}


def baseline(client: Any, bucket: str) -> dict[str, Any]:
    """Recursive listing of the captures: every key below the prefix, _manifest/ skipped."""
    t = time.monotonic()
    n = pages = 0
    kw: dict[str, Any] = {"Bucket": bucket, "Prefix": PREFIX + "/"}
    # keys sort _manifest/ before the hosts' lowercase names: start after all of it
    kw["StartAfter"] = f"{PREFIX}/{manifest.DIR.split('/')[0][:-1]}u"
    for page in client.get_paginator("list_objects_v2").paginate(**kw):
        pages += 1
        n += sum(1 for o in page.get("Contents", []) if o["Key"].endswith(".pcap.zst"))
    s = time.monotonic() - t
    print(f"baseline: listed {n:,} captures in {pages} requests, {s:.2f} s")
    return {"seconds": round(s, 3), "captures": n, "requests": {"ListObjectsV2": pages}}


def _cli(cfg: Path, env: dict[str, str], *args: str) -> tuple[float, int, int, str]:
    """(wall s, exit code, peak RSS kB, stderr) of `python -m rollcap ARGS`."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.monotonic()
        p = subprocess.Popen([sys.executable, "-m", "rollcap", *args, "--config", str(cfg)],
                             cwd=REPO, env=env, stdout=out, stderr=err)  # fmt: skip
        _pid, status, ru = os.wait4(p.pid, 0)
        s = time.monotonic() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        out.seek(0)
        return (
            s,
            p.returncode,
            ru.ru_maxrss,
            err.read().decode(errors="replace")[-2000:]
            + (out.read().decode(errors="replace")[-600:]),
        )


def timed(cfg: Path, env: dict[str, str], reps: int, *args: str) -> dict[str, Any]:
    runs = []
    rss = 0
    for _ in range(reps):
        s, rc, kb, tail = _cli(cfg, env, *args)
        if rc != 0:
            raise RuntimeError(f"rollcap {' '.join(args)} exited {rc}: {tail}")
        runs.append(round(s, 3))
        rss = max(rss, kb)
    return {"seconds": min(runs), "all_seconds": runs, "peak_rss_mb": round(rss / 1024, 1),
            "tail": tail.strip().splitlines()[-6:]}  # fmt: skip


def counted(storage: Any, fn: Any) -> tuple[Any, dict[str, int], float]:
    """Run fn() counting the S3 API calls made through storage's client."""
    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def hook(event_name: str, **_kw: Any) -> None:
        with lock:
            counts[event_name.rsplit(".", 1)[-1]] += 1

    storage.client.meta.events.register("before-call.s3", hook)
    t = time.monotonic()
    try:
        out = fn()
    finally:
        storage.client.meta.events.unregister("before-call.s3", hook)
    return out, dict(sorted(counts.items())), time.monotonic() - t


@contextlib.contextmanager
def _server(data_dir: str) -> Iterator[SeaweedFS]:
    """A fresh SeaweedFS, or one on a kept data directory (a fill made earlier)."""
    if not data_dir:
        with seaweedfs() as w:
            yield w
        return
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    w = SeaweedFS(bucket="rollcap-bench", data_dir=Path(data_dir)).start(timeout=180)
    try:
        yield w
    finally:
        w.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--legacy-hosts", type=int, default=5, help="hosts with 0.1.0 objects only")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--procs", type=int, default=3, help="fill processes")
    ap.add_argument("--quick", action="store_true", help="50 hosts, 1 rep")
    ap.add_argument("--skip-old", action="store_true", help="skip 0.1.0's planning")
    ap.add_argument("--data-dir", default="", help="keep SeaweedFS's data here; reuse its fill")
    a = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress in logs
    if a.quick:
        a.hosts, a.reps = 50, 1
    from rollcap.config.schema import OffloadConfig
    from rollcap.retrieve.catalog import find_captures
    from rollcap.retrieve.fetch import fetch
    from rollcap.retrieve.select import collect, select
    from rollcap.storage import open_storage

    legacy = [a.hosts * (j + 1) // (a.legacy_hosts + 1) for j in range(a.legacy_hosts)]
    gap = 1 if a.hosts > 1 else -1
    three = [host_name(i) for i in (0, a.hosts // 2, a.hosts - 1)]
    since, until = (t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in WINDOW)
    res: dict[str, Any] = {"hosts": a.hosts, "files_per_host": FILES, "window": [since, until],
                           "legacy_hosts": [host_name(i) for i in legacy],
                           "gap_host": host_name(gap) if gap >= 0 else None}  # fmt: skip
    with (
        _server(a.data_dir) as w,
        tempfile.TemporaryDirectory(prefix="rollcap-bench-fleet-") as tmp,
    ):
        # the index layout in the name: a fill of an older layout is not reused
        layout = manifest.DIR.replace("/", "-")
        marker = (
            Path(a.data_dir) / f"filled-{a.hosts}-{a.legacy_hosts}-{layout}.json"
            if a.data_dir else None
        )  # fmt: skip
        if marker is not None and marker.exists():
            res["fill"] = {**json.loads(marker.read_text()), "reused": True}
            print(f"reusing the fill in {a.data_dir}: {res['fill']}")
        else:
            res["fill"] = fill(w, a.hosts, legacy, gap, a.procs)
            if marker is not None:
                marker.write_text(json.dumps(res["fill"]))
        cfg = Path(tmp) / "rollcap.toml"
        cfg.write_text(
            f"[capture]\nrotate_seconds = {PERIOD}\n\n[offload]\n"
            f'destination = "s3://{w.bucket}/{PREFIX}"\nendpoint_url = "{w.endpoint}"\n'
            'region = "us-east-1"\n'
        )
        env = rollcap_env(w.env())
        env.pop("CREDENTIALS_DIRECTORY", None)
        os.environ.update(w.env())
        runs = [baseline(w.client(), w.bucket) for _ in range(2)]
        base = min(runs, key=lambda r: r["seconds"])
        base["all_seconds"] = [r["seconds"] for r in runs]
        res["baseline"] = base
        win = ("--since", since, "--until", until)
        hosts3 = ("--host", ",".join(three))
        out = str(Path(tmp) / "three.pcap")
        cases = {
            "list_fleet": ("list", *win),
            "list_3_hosts": ("list", *win, *hosts3),
            "fetch_3_hosts": ("fetch", *win, *hosts3, "-o", out, "--force"),
        }
        for name, args in cases.items():
            r = timed(cfg, env, a.reps, *args)
            r["ratio_to_baseline"] = round(base["seconds"] / r["seconds"], 1)
            res[name] = r
            print(f"{name}: {r['seconds']:.2f} s (runs {r['all_seconds']}), "
                  f"{r['ratio_to_baseline']}x faster than the baseline, "
                  f"peak RSS {r['peak_rss_mb']} MB")  # fmt: skip
        # requests, counted in-process through the same selection
        oc = OffloadConfig(destination=f"s3://{w.bucket}/{PREFIX}", endpoint_url=w.endpoint,
                           region="us-east-1")  # type: ignore[call-arg]  # fmt: skip
        st = open_storage(oc)
        s_dt, u_dt = WINDOW

        def sel(hosts: list[str] | None) -> Any:
            return select(st, template=DEFAULT_KEY_TEMPLATE, prefix=PREFIX, since=s_dt,
                          until=u_dt, hosts=hosts, workers=16)  # fmt: skip

        def run_sel(hosts: list[str] | None) -> tuple[int, Any]:
            s = sel(hosts)
            return len(collect(s)), s.summary

        for name, hosts in (("list_fleet", None), ("list_3_hosts", three)):
            (n, summ), counts, _s = counted(st, lambda h=hosts: run_sel(h))
            res[name].update(requests=counts, captures=n, hosts_seen=summ.hosts_seen,
                             hosts_without=summ.without[:10], gaps=len(summ.gaps),
                             hosts_checked_by_listing=summ.checked)  # fmt: skip
            print(f"{name}: {n} captures of {summ.hosts_seen} hosts, {summ.checked} checked "
                  f"by listing, {len(summ.gaps)} gaps; requests {counts}")  # fmt: skip

        def do_fetch() -> Any:
            caps = collect(sel(three))
            return fetch(st, caps, since=s_dt, until=u_dt, output=Path(tmp) / "c.pcap",
                         bpf_filter="", tcpdump="tcpdump", workers=4, pcapng=False,
                         progress=None)  # fmt: skip

        fr, counts, _s = counted(st, do_fetch)
        res["fetch_3_hosts"].update(requests=counts, packets=fr.packets, objects=fr.objects)
        print(f"fetch_3_hosts: {fr.packets} packets from {fr.objects} objects; requests {counts}")
        if not a.skip_old:

            def old() -> Any:
                return find_captures(st, template=DEFAULT_KEY_TEMPLATE, prefix=PREFIX,
                                     since=s_dt, until=u_dt, workers=8)  # fmt: skip

            (caps, _search), counts, s = counted(st, old)
            res["old_planning"] = {"seconds": round(s, 3), "requests": counts,
                                   "captures": len(caps),
                                   "ratio_to_baseline": round(base["seconds"] / s, 2)}  # fmt: skip
            print(f"0.1.0 planning: {len(caps)} captures in {s:.2f} s; requests {counts}")
        st.close()
    write_result("fleet", res)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
