"""Fleet search: `rollcap flows --ip X` across every host for one hour,
as the fleet grows (issue 26, "Fleet search"; goal <= 10 s at 1,000 hosts).

Fills a fresh SeaweedFS, step by step, with N hosts x the hour's
10-minute captures (opened at :x0:03 from one rotation before the window
to its end): each capture's manifest entries and its flow summary, written
with the offload's own functions (manifest.write_entries,
flows.index.summary_body), each summary with --flows flows of random
addresses; the address X is in about 1 % of the captures. No capture
objects: `rollcap flows` never reads them.

At each size: the wall time of `python -m rollcap flows --ip X --json`
(interpreter start included; best of --reps), its peak RSS, and, as the
baseline in the same run, DuckDB running docs/sql/duckdb/flows.sql +
who_talked_to.sql over the same bucket (if duckdb and its httpfs wheel are
installed). Both must return the same flows.

Then, in the same run at each size, `rollcap index --compact` over the
window and the same `rollcap flows` again: the flows must be the same
(compacted_seconds, compacted_ratio; compact_seconds is the compaction).

    python3 -m bench.flows_fleet [--sizes 100,300,1000] [--flows 200] [--reps 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import REPO, rollcap_env, seaweedfs, write_result
from bench.fleet import _cli, _EntryWriter, _Putter
from rollcap.flows import index as flowindex
from rollcap.flows.summary import Flow, FlowSummary
from rollcap.storage import manifest

PREFIX = "caps"
WINDOW = (datetime(2026, 11, 26, 12, 0, tzinfo=UTC), datetime(2026, 11, 26, 13, 0, tzinfo=UTC))
PERIOD = 600
TARGET = "203.0.113.7"
NS = 1_000_000_000


def host_name(i: int) -> str:
    return f"h{i:04d}"


def _addr(r: random.Random) -> bytes:
    return bytes([10, r.randrange(256), r.randrange(256), r.randrange(1, 255)])


def _summary(r: random.Random, first_ns: int, n_flows: int, target: bool) -> FlowSummary:
    flows = {}
    for j in range(n_flows):
        a, b = _addr(r), _addr(r)
        if target and j == 0:
            b = bytes(int(x) for x in TARGET.split("."))
        pa, pb = r.randrange(1024, 65536), r.choice([53, 80, 443, 8080])
        t = first_ns + r.randrange(590) * NS
        (lo, plo), (hi, phi) = sorted([(a, pa), (b, pb)])
        flows[((), 6, lo, plo, hi, phi)] = Flow(t, t + 5 * NS, 10, 1500, a, pa, b, pb, j)
    return FlowSummary(1, flows, packets=10 * n_flows)


def _fill(args: tuple[str, str, str, str, list[int], int]) -> int:
    endpoint, bucket, ak, sk, hosts, n_flows = args
    putter = _Putter(endpoint, bucket, ak, sk)
    entries = _EntryWriter(putter)
    opens = []
    t = WINDOW[0] - timedelta(seconds=PERIOD) + timedelta(seconds=3)
    while t < WINDOW[1]:
        opens.append(t)
        t += timedelta(seconds=PERIOD)

    def one(job: tuple[int, int, datetime]) -> int:
        i, seq, opened = job
        host = host_name(i)
        r = random.Random(i * 1000 + seq)
        first = int(opened.timestamp()) * NS + NS
        e = manifest.Entry(
            key=f"{PREFIX}/{host}/{opened:%Y/%m/%d}/{host}-eth0-{opened:%Y%m%dT%H%M%SZ}-"
                f"{seq:06d}.pcap.zst",
            host=host, iface="eth0", opened=opened, closed_ts=int(opened.timestamp()) + PERIOD,
            first_ns=first, last_ns=first + (PERIOD - 2) * NS, packets=10 * n_flows,
            pcap_bytes=1_000_000, size=500_000, linktype=1,
        )  # fmt: skip
        s = _summary(r, first, n_flows, target=r.random() < 0.01)
        putter.put(flowindex.summary_key(e, PREFIX), flowindex.summary_body(e, s),
                   {"content-type": "application/x-ndjson"})  # fmt: skip
        return 1 + len(manifest.write_entries(entries, e, PREFIX))

    jobs = [(i, seq, o) for i in hosts for seq, o in enumerate(opens, 1)]
    with ThreadPoolExecutor(12) as pool:
        return sum(pool.map(one, jobs))


def fill(w: Any, hosts: range, n_flows: int, procs: int) -> dict[str, Any]:
    t = time.monotonic()
    ids = list(hosts)
    batches = [ids[j :: procs * 4] for j in range(procs * 4)]
    jobs = [(w.endpoint, w.bucket, w.access_key, w.secret_key, b, n_flows) for b in batches if b]
    with ProcessPoolExecutor(procs) as pool:
        total = sum(pool.map(_fill, jobs))
    s = time.monotonic() - t
    print(f"filled {total:,} objects for hosts {hosts.start}..{hosts.stop - 1} in {s:.0f} s")
    return {"objects": total, "seconds": round(s, 1)}


def _duckdb(w: Any) -> tuple[float, int] | None:
    try:
        import duckdb
        import duckdb_extension_httpfs
    except ImportError:
        return None
    sql = REPO / "docs" / "sql" / "duckdb"
    ext = (Path(duckdb_extension_httpfs.__file__).parent / "extensions"
           / f"v{duckdb.__version__}" / "httpfs.duckdb_extension")  # fmt: skip
    t = time.monotonic()
    con = duckdb.connect()
    con.execute(f"INSTALL '{ext}'; LOAD httpfs;")
    env = w.env()
    port = w.endpoint.rsplit(":", 1)[1].rstrip("/")
    con.execute(
        f"CREATE SECRET (TYPE s3, KEY_ID '{env['AWS_ACCESS_KEY_ID']}', "
        f"SECRET '{env['AWS_SECRET_ACCESS_KEY']}', ENDPOINT '127.0.0.1:{port}', "
        "URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')"
    )
    con.execute((sql / "params.sql").read_text())
    for k, v in {"bucket": f"'{w.bucket}'", "since": f"TIMESTAMP '{WINDOW[0]:%Y-%m-%d %H:%M:%S}'",
                 "until": f"TIMESTAMP '{WINDOW[1]:%Y-%m-%d %H:%M:%S}'",
                 "ip": f"'{TARGET}'"}.items():  # fmt: skip
        con.execute(f"SET VARIABLE {k} = {v}")
    con.execute((sql / "flows.sql").read_text())
    rows = con.execute((sql / "who_talked_to.sql").read_text()).fetchall()
    con.close()
    return time.monotonic() - t, len(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="100,300,1000", help="host counts, ascending")
    ap.add_argument("--flows", type=int, default=200, help="flows per capture summary")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--procs", type=int, default=2, help="fill processes")
    a = ap.parse_args(argv)
    sizes = sorted(int(x) for x in a.sizes.split(","))
    res: dict[str, Any] = {"flows_per_capture": a.flows, "target": TARGET,
                           "window": [str(WINDOW[0]), str(WINDOW[1])], "steps": []}  # fmt: skip
    with seaweedfs() as w, tempfile.TemporaryDirectory(prefix="rollcap-bench-flows-") as tmp:
        cfg = Path(tmp) / "rollcap.toml"
        cfg.write_text(
            f"[capture]\nrotate_seconds = {PERIOD}\n\n[offload]\n"
            f'destination = "s3://{w.bucket}/{PREFIX}"\nendpoint_url = "{w.endpoint}"\n'
            'region = "us-east-1"\n'
        )
        env = rollcap_env(w.env())
        env.pop("CREDENTIALS_DIRECTORY", None)
        os.environ.update(w.env())
        done = 0
        for n in sizes:
            step: dict[str, Any] = {"hosts": n, "fill": fill(w, range(done, n), a.flows, a.procs)}
            done = n
            runs = []
            args = ("flows", "--json", "--ip", TARGET, "--since", WINDOW[0].isoformat(),
                    "--until", WINDOW[1].isoformat())  # fmt: skip
            plain = (*args, "--no-compaction")  # (a smaller size's compactions exist)
            for _ in range(a.reps):
                s, rc, _kb, tail = _cli(cfg, env, *plain)
                if rc not in (0, 1):
                    raise RuntimeError(f"rollcap flows exited {rc}: {tail}")
                runs.append(round(s, 3))
            step["peak_rss_mb"] = _rss_mb(cfg, env, plain)
            p = _flows(cfg, env, "--no-compaction")
            out = p["index"]
            step.update(seconds=min(runs), all_seconds=runs, flows_found=len(p["flows"]),
                        hosts_found=len(p["hosts"]), summaries_read=out["summaries_read"],
                        flows_scanned=out["flows_scanned"], listings=out["listings"])  # fmt: skip
            db = _duckdb(w)
            if db is not None:
                step["duckdb_seconds"] = round(db[0], 3)
                step["duckdb_rows"] = db[1]
                step["ratio_vs_duckdb"] = round(db[0] / step["seconds"], 2)
            # the same query after `rollcap index --compact` (flows/compact.py):
            # one object per slot instead of one per summary (a new generation
            # per slot at each size: it re-reads the slot's summaries)
            since = WINDOW[0] - timedelta(seconds=2 * PERIOD)
            cs, crc, _kb, ctail = _cli(cfg, env, "index", "--compact", "--since",
                                       since.isoformat(), "--until", WINDOW[1].isoformat())
            if crc != 0:
                raise RuntimeError(f"rollcap index --compact exited {crc}: {ctail}")
            step["compact_seconds"] = round(cs, 3)
            cruns = []
            for _ in range(a.reps):
                s, rc, _kb, tail = _cli(cfg, env, *args)
                if rc not in (0, 1):
                    raise RuntimeError(f"rollcap flows exited {rc}: {tail}")
                cruns.append(round(s, 3))
            step["compacted_peak_rss_mb"] = _rss_mb(cfg, env, args)
            pc = _flows(cfg, env)
            step.update(compacted_seconds=min(cruns), compacted_all_seconds=cruns,
                        compacted_from_compaction=pc["index"]["from_compaction"],
                        compacted_ratio=round(step["seconds"] / min(cruns), 2),
                        compacted_same_flows=pc["flows"] == p["flows"])  # fmt: skip
            print(json.dumps(step))
            res["steps"].append(step)
            if pc["flows"] != p["flows"]:
                raise RuntimeError("rollcap flows found other flows after the compaction")
            if db is not None and db[1] != len(p["flows"]):
                raise RuntimeError(f"DuckDB found {db[1]} flows, rollcap flows {len(p['flows'])}")
    path = write_result("flows_fleet", res)
    print(f"wrote {path}")
    return 0


def _rss_mb(cfg: Path, env: dict[str, str], args: tuple[str, ...]) -> float | None:
    """Peak RSS of the command alone. Not wait4's ru_maxrss of a child forked
    from this (large) process: Linux carries the parent's high-water mark
    across exec, so every child would report at least this process's size."""
    import shutil
    import subprocess
    import sys

    if shutil.which("time") is None or not Path("/usr/bin/time").exists():
        return None
    with tempfile.NamedTemporaryFile("r") as out:
        subprocess.run(["/usr/bin/time", "-o", out.name, "-f", "%M", sys.executable, "-m",
                        "rollcap", *args, "--config", str(cfg)], cwd=REPO, env=env,
                       capture_output=True, timeout=600)  # fmt: skip
        return round(int(out.read().split()[-1]) / 1024, 1)


def _flows(cfg: Path, env: dict[str, str], *extra: str) -> dict[str, Any]:
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "rollcap", "flows", "--json", "--ip", TARGET,
                        "--since", WINDOW[0].isoformat(), "--until", WINDOW[1].isoformat(),
                        "--config", str(cfg), *extra], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=600)  # fmt: skip
    out: dict[str, Any] = json.loads(p.stdout)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
