"""`rollcap flows`, `rollcap index` and docs/sql/duckdb/flows.sql against what
the real daemons store.

- Real `rollcap capture` + `rollcap offload` (flow_index on) store the test
  captures replayed onto a veth, in SeaweedFS. Every summary's TCP/UDP flows
  agree with tshark's conversation statistics on the same stored packets
  (docs/flows.md, "tshark"); `rollcap flows --json` answers exactly the rows
  the summaries hold for the query, and so does DuckDB running the docs'
  SQL over S3.
- A real `rollcap offload` with the index off stores a prepared spool:
  `rollcap flows` says those captures have no summary; `rollcap index`
  writes them (byte for byte what an offload with the index on writes for
  the same files), a second run writes nothing; a corrupt summary is one
  line, not a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import duckdb_extension_httpfs
import pytest

from rollcap.flows import index as flowindex
from rollcap.spool.readyname import ReadyName
from tests.integration.host_daemons import running
from tests.integration.test_flow_index import _stored
from tests.integration.test_index_daemon import _destination, keys_in_all
from tests.integration.test_offload import Offload, new_bucket, state, write_config
from tests.support.archive import read_frames, write_pcap
from tests.support.net import Veth
from tests.support.offloaded import REPO
from tests.support.seaweedfs import SeaweedFS

pytestmark = pytest.mark.integration

SQL = REPO / "docs" / "sql" / "duckdb"
# tunnels tshark would look into; a flow is its outer header (docs/flows.md)
TUNNELS = ("gre", "geneve", "erspan", "vxlan")
Conv = tuple[int, frozenset[tuple[str, int]]]
_CONV = re.compile(r"^(\S+):(\d+)\s+<->\s+(\S+):(\d+)\s+\d+ \d+ \w+\s+\d+ \d+ \w+\s+(\d+) \d+ \w+")


def _tshark(path: Path, *args: str) -> str:
    disable = [a for t in TUNNELS for a in ("--disable-protocol", t)]
    p = subprocess.run(["tshark", "-n", "-r", str(path), "-o", "ip.defragment:FALSE",
                        *disable, *args], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stderr
    return p.stdout


def tshark_flows(path: Path) -> Counter[Conv]:
    """Packets per TCP/UDP conversation as tshark counts them (`-z conv`),
    plus the later IP fragments of each, matched to their first fragment by
    addresses and IP ID in file order: the flow definition of docs/flows.md,
    counted by tshark alone."""
    convs: Counter[Conv] = Counter()
    proto = 0
    for line in _tshark(path, "-q", "-z", "conv,tcp", "-z", "conv,udp").splitlines():
        if line.startswith(("TCP Conversations", "UDP Conversations")):
            proto = 6 if line.startswith("TCP") else 17
        m = _CONV.match(line)
        if m:
            convs[(proto, frozenset({(m[1], int(m[2])), (m[3], int(m[4]))}))] += int(m[5])
    fields = ["ip.src", "ip.dst", "ip.id", "ip.proto", "ip.frag_offset", "tcp.srcport",
              "tcp.dstport", "udp.srcport", "udp.dstport"]  # fmt: skip
    out = _tshark(path, "-Y", "ip.flags.mf == 1 or ip.frag_offset > 0", "-T", "fields",
                  "-E", "occurrence=f", "-E", "separator=,", *[a for f in fields
                                                               for a in ("-e", f)])  # fmt: skip
    firsts: dict[tuple[str, ...], Conv] = {}
    for line in out.splitlines():
        src, dst, ident, pr, offset, ts, td, us, ud = line.split(",")
        if pr not in ("6", "17"):
            continue
        if offset in ("", "0"):
            sp, dp = (ts, td) if pr == "6" else (us, ud)
            if sp and dp:
                firsts[(src, dst, ident, pr)] = (int(pr), frozenset({(src, int(sp)),
                                                                      (dst, int(dp))}))  # fmt: skip
        elif (src, dst, ident, pr) in firsts:
            convs[firsts[(src, dst, ident, pr)]] += 1
    return convs


def summary_flows(s: flowindex.StoredSummary) -> Counter[Conv]:
    """A summary's TCP/UDP flows with ports, VLANs merged (tshark's key has none)."""
    out: Counter[Conv] = Counter()
    for f in s.flows:
        if f["proto"] in (6, 17) and f["sport"] is not None:
            out[(f["proto"], frozenset({(f["src"], f["sport"]), (f["dst"], f["dport"])}))] += (
                f["packets"])  # fmt: skip
    return out


def rollcap(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rollcap", *args, "--config", str(config)],
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **env},
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def _flows_json(config: Path, env: dict[str, str], since: datetime, until: datetime,
                *args: str, ok: bool = True) -> dict[str, Any]:  # fmt: skip
    p = rollcap(config, env, "flows", "--json", "--since", since.isoformat(),
                "--until", until.isoformat(), *args)  # fmt: skip
    assert p.returncode == (0 if ok else 1), p.stderr
    out = json.loads(p.stdout)
    assert isinstance(out, dict)
    out["stderr"] = p.stderr
    return out


def _row(host: str, key: str, f: dict[str, Any]) -> tuple[Any, ...]:
    return (host, key, f["proto"], f["src"], f["sport"], f["dst"], f["dport"], f["first_ns"],
            f["last_ns"], f["packets"], f["bytes"])  # fmt: skip


def _duckdb(seaweedfs: SeaweedFS) -> duckdb.DuckDBPyConnection:
    ext = (Path(duckdb_extension_httpfs.__file__).parent / "extensions"
           / f"v{duckdb.__version__}" / "httpfs.duckdb_extension")  # fmt: skip
    con = duckdb.connect()
    con.execute(f"INSTALL '{ext}'; LOAD httpfs;")
    env = seaweedfs.env()
    con.execute(
        f"CREATE SECRET (TYPE s3, KEY_ID '{env['AWS_ACCESS_KEY_ID']}', "
        f"SECRET '{env['AWS_SECRET_ACCESS_KEY']}', ENDPOINT '127.0.0.1:{seaweedfs.s3_port}', "
        "URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')"
    )
    con.execute((SQL / "params.sql").read_text())
    return con


def _sql(con: duckdb.DuckDBPyConnection, name: str, **variables: str) -> list[dict[str, Any]]:
    for k, v in variables.items():
        con.execute(f"SET VARIABLE {k} = {v}")
    con.execute((SQL / "flows.sql").read_text())
    r = con.execute((SQL / name).read_text())
    cols = [d[0] for d in r.description]
    return [dict(zip(cols, row, strict=True)) for row in r.fetchall()]


def _ts(dt: datetime) -> str:
    return f"TIMESTAMP '{dt.astimezone(UTC):%Y-%m-%d %H:%M:%S}'"


def test_flows_of_the_running_daemons_agree_with_tshark_duckdb_and_rollcap_flows(
    veth: Veth, all_pcap: Path, base: Path, seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    if shutil.which("tshark") is None:
        pytest.fail("tshark is not installed (.ci/packages-test.txt lists it)")
    offload, env, bucket = _destination("s3", base, seaweedfs)
    offload = {**offload, "rescan_seconds": 3600, "flow_index": True}
    with running(base, veth.b, env, rotate_megabytes=1, hostname="flw1",
                 offload=offload) as host:  # fmt: skip
        veth.replay(all_pcap, loop=2, pps=20000)
        host.drain()
    caps, sums = _stored("s3", base, seaweedfs, bucket)
    summaries = {}
    for key, body in sums.items():
        e = flowindex.parse_key(key, "caps")
        assert e is not None
        summaries[e.key] = flowindex.parse_body(body)
    assert set(summaries) == set(caps) and len(caps) >= 2

    # 1. tshark, on the very bytes stored: the same flows, the same packets
    compared = 0
    for key, pcap in caps.items():
        path = tmp_path / "cap.pcap"
        path.write_bytes(pcap)
        want = tshark_flows(path)
        assert summary_flows(summaries[key]) == want, key
        compared += len(want)
    assert compared > 50

    # 2. rollcap flows, for every flow and for one busy address
    rows = [(s.capture["host"], key, f) for key, s in summaries.items() for f in s.flows]
    first = min(f["first_ns"] for _h, _k, f in rows)
    last = max(f["last_ns"] for _h, _k, f in rows)
    since = datetime.fromtimestamp(first // 10**9, UTC)
    until = datetime.fromtimestamp(last // 10**9 + 1, UTC)
    busy = Counter(a for _h, _k, f in rows for a in (f["src"], f["dst"])).most_common(1)[0][0]
    cfg = host.capture.config
    got = _flows_json(cfg, env, since, until)
    assert sorted(_row(r["host"], r["capture"], r) for r in got["flows"]) == sorted(
        _row(h, k, f) for h, k, f in rows)  # fmt: skip
    assert got["index"]["without_summary"] == 0 and got["index"]["unreadable"] == []
    assert got["index"]["summaries_read"] == len(caps)
    got_ip = _flows_json(cfg, env, since, until, "--ip", busy, "--proto", "udp")
    want_ip = sorted(_row(h, k, f) for h, k, f in rows
                     if busy in (f["src"], f["dst"]) and f["proto"] == 17)  # fmt: skip
    assert want_ip and sorted(_row(r["host"], r["capture"], r) for r in got_ip["flows"]) == want_ip
    assert all(r["addr"] == busy for r in got_ip["flows"])
    assert got_ip["hosts"]["flw1"]["packets"] == sum(r[9] for r in want_ip)

    # 3. the docs' SQL in DuckDB over S3: the same rows, the same totals
    con = _duckdb(seaweedfs)
    try:
        con.execute(f"SET VARIABLE bucket = '{bucket}'")
        # DuckDB's window is whole seconds (as passed to rollcap flows above)
        window = {"since": _ts(since), "until": _ts(until)}
        sql = _sql(con, "who_talked_to.sql", **window)
        assert sorted(_row(r["host"], r["key"], r) for r in sql) == sorted(
            _row(r["host"], r["capture"], r) for r in got["flows"])  # fmt: skip
        sql_ip = _sql(con, "who_talked_to.sql", ip=f"'{busy}'", proto="17", **window)
        assert sorted(_row(r["host"], r["key"], r) for r in sql_ip) == want_ip
        [per_host] = _sql(con, "flows_per_host.sql", ip=f"'{busy}'", proto="17", **window)
        h = got_ip["hosts"]["flw1"]
        assert (per_host["flows"], per_host["captures"], per_host["packets"], per_host["bytes"]
                ) == (h["flows"], h["captures"], h["packets"], h["bytes"])  # fmt: skip
    finally:
        con.close()


T1 = datetime(2026, 11, 26, 12, 0, 3, tzinfo=UTC)


def _spool(root: Path) -> Path:
    for d in ("work", "ready", "quarantine", "tmp", "state"):
        (root / d).mkdir(parents=True)
    return root


def _prepare(spools: list[Path], all_pcap: Path, n: int, host: str = "web1") -> list[str]:
    """n 10-minute captures of host (real packets, times from T1), the
    same files (bytes and mtime) in every spool."""
    frames = read_frames(all_pcap)
    names = []
    for i in range(n):
        start = T1 + timedelta(minutes=10 * i)
        name = ReadyName(start, i + 1, host, "eth0").format()
        t0 = int(start.timestamp() * 10**9) + 10**9
        recs = [(t0 + j * 200_000_000, *frames[(i * 977 + j) % len(frames)]) for j in range(900)]
        closed = start.timestamp() + 600.2
        for s in spools:
            path = write_pcap(s / "ready" / f".{name}.tmp", recs)
            os.utime(path, (closed, closed))
            path.rename(s / "ready" / name)
        names.append(name)
    return names


def _run_offload(cfg: Path, spool: Path, env: dict[str, str], n: int) -> None:
    p = Offload(cfg, env).start()
    try:
        p.wait_for("stored", lambda: state(spool).get("uploaded_files") == n, timeout=120)
        assert p.stop() == 0
    finally:
        if p.proc is not None and p.proc.poll() is None:
            p.proc.kill()


def test_index_backfills_what_the_offload_would_have_written_and_flows_says_what_is_missing(
    seaweedfs: SeaweedFS, all_pcap: Path, tmp_path: Path
) -> None:
    off_spool, on_spool = _spool(tmp_path / "off"), _spool(tmp_path / "on")
    n = 4
    _prepare([off_spool, on_spool], all_pcap, n)
    buckets = {"off": new_bucket(seaweedfs), "on": new_bucket(seaweedfs)}
    configs = {}
    for kind, spool in (("off", off_spool), ("on", on_spool)):
        configs[kind] = write_config(
            tmp_path / f"{kind}.toml", spool, f"s3://{buckets[kind]}/caps",
            endpoint_url=seaweedfs.endpoint, region="us-east-1", flow_index=kind == "on",
        )  # fmt: skip
        _run_offload(configs[kind], spool, seaweedfs.env(), n)
    client = seaweedfs.client()

    def summaries(kind: str) -> dict[str, bytes]:
        return {k: client.get_object(Bucket=buckets[kind], Key=k)["Body"].read()
                for k in keys_in_all(seaweedfs, buckets[kind], flowindex.root("caps"))}  # fmt: skip

    assert summaries("off") == {} and len(summaries("on")) == n
    env, cfg = seaweedfs.env(), configs["off"]
    since, until = T1, T1 + timedelta(minutes=10 * n)
    # without summaries: nothing found, and it says why
    before = _flows_json(cfg, env, since, until, "--proto", "udp", ok=False)
    assert before["flows"] == [] and before["index"]["without_summary"] == n
    assert f"{n} of {n} captures in the window have no flow summary" in before["stderr"]

    # the backfill: every summary, byte for byte what the offload writes
    p = rollcap(cfg, env, "index", "--since", since.isoformat(), "--until", until.isoformat())
    assert p.returncode == 0, p.stderr
    assert f"{n} captures in the window: {n} summaries written" in p.stdout
    assert summaries("off") == summaries("on")
    # resumable: a second run finds them all
    p = rollcap(cfg, env, "index", "--since", since.isoformat(), "--until", until.isoformat(),
                "-H", "web1")  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert f"0 summaries written (0 flows), {n} had one" in p.stdout

    after = _flows_json(cfg, env, since, until, "--proto", "udp")
    on = _flows_json(configs["on"], env, since, until, "--proto", "udp")
    assert after["flows"] and after["flows"] == on["flows"]
    assert after["index"]["without_summary"] == 0

    # a corrupt summary: one line, counted; the others still answer
    victim = sorted(summaries("off"))[0]
    client.put_object(Bucket=buckets["off"], Key=victim, Body=b"not gzip")
    hurt = _flows_json(cfg, env, since, until, "--proto", "udp")
    assert [u["summary"] for u in hurt["index"]["unreadable"]] == [victim]
    assert hurt["index"]["summaries_read"] == n - 1
    assert 0 < len(hurt["flows"]) < len(after["flows"])
    assert sum(f"flow summary {victim}: " in line for line in hurt["stderr"].splitlines()) == 1
    # the table says the same, with per-host totals
    p = rollcap(cfg, env, "flows", "--since", since.isoformat(), "--until", until.isoformat(),
                "--proto", "udp")  # fmt: skip
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split()[:4] == ["HOST", "IFACE", "PROTO", "ADDR"]
    assert len([x for x in lines if x.startswith("web1 ")]) == len(hurt["flows"])
    matched = len({f["capture"] for f in hurt["flows"]})
    assert f"# web1: {len(hurt['flows'])} flows in {matched} captures," in p.stdout
