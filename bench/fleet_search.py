"""Fleet search: `rollcap fetch --filter 'host X'` over one day of a fleet,
with the flow index against without it (`--no-flow-index`), in one run.

Fills a fresh SeaweedFS with N hosts x 144 captures (10-minute rotation, one
UTC day) of realistic flows: each host talks to its DNS/NTP servers and to
peers drawn from a few thousand addresses over TCP 443/80/22 and UDP, with
packet sizes from 60 to 1500 bytes and incompressible payloads (TLS-like).
Host X (203.0.113.7) is a peer in about 1 % of the captures. Each capture
is stored as the offload stores it (zstd object with its metadata, the
manifest entries through manifest.write_entries, the flow summary through
the offload's Summariser and flows.index.write_summary), sent as parallel
signed PUTs (bench/fleet.py's filler).

Then `rollcap index --compact` over the day (one object per 10-minute slot,
rollcap/flows/compact.py) and the same fetch a third time.

Measured: wall time and bytes downloaded of each fetch (the CLI as an
operator runs it, `--jobs 4`), and that all write the same packets.

    python3 -m bench.fleet_search [--hosts 100] [--files 144]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import struct
import subprocess
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import zstandard

from bench.common import machine, offload_config, rollcap_env, seaweedfs, workdir, write_result
from bench.fleet import DAY, PERIOD, _EntryWriter, _Putter, host_name
from rollcap.config.schema import DEFAULT_KEY_TEMPLATE
from rollcap.flows import index as flowindex
from rollcap.flows.summary import Summariser
from rollcap.keys import KeyFields, render_key
from rollcap.pcapfile import parse_header
from rollcap.storage import manifest
from rollcap.storage.base import META

PREFIX = "fleet"
X = "203.0.113.7"
HIT_RATE = 0.01
_PAYLOAD = random.Random(7).randbytes(1 << 20)


def _csum(h: bytes) -> int:
    s = sum(struct.unpack("!10H", h))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _frame(
    src: bytes, dst: bytes, proto: int, sport: int, dport: int, size: int, off: int
) -> bytes:
    seq = off & 0xFFFFFFFF
    l4 = (struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 0x50, 0x18, 512, 0, 0) if proto == 6
          else struct.pack("!HHHH", sport, dport, 8 + size, 0))  # fmt: skip
    at = off % ((1 << 20) - 1500)
    body = _PAYLOAD[at : at + size]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4) + size, off & 0xFFFF, 0x4000, 64,
                     proto, 0, src, dst)  # fmt: skip
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return b"\x02\0\0\0\0\x01\x02\0\0\0\0\x02\x08\x00" + ip + l4 + body


def capture_pcap(i: int, k: int, start_ns: int, hit: bool) -> bytes:
    """One host's 10-minute capture: ~40 flows of a few packets each."""
    rng = random.Random(i * 100_003 + k)
    me = bytes([10, i >> 8 & 0xFF, i & 0xFF, 10])
    peers = [bytes([rng.choice([10, 172, 192, 198, 100]), rng.randrange(256), rng.randrange(256),
                    rng.randrange(1, 255)]) for _ in range(rng.randint(30, 50))]  # fmt: skip
    peers = [p for p in peers if p != bytes(map(int, X.split(".")))]
    dns = bytes([10, 0, 0, 53])
    flows: list[tuple[bytes, int, int, int]] = [(dns, 17, rng.randrange(32768, 61000), 53)
                                                for _ in range(5)]  # fmt: skip
    for p in peers:
        proto, port = rng.choice([(6, 443), (6, 443), (6, 443), (6, 80), (6, 22), (17, 123),
                                  (17, 443)])  # fmt: skip
        flows.append((p, proto, rng.randrange(32768, 61000), port))
    if hit:
        flows.append((bytes(map(int, X.split("."))), 6, rng.randrange(32768, 61000), 443))
    frames: list[tuple[int, bytes]] = []
    span = PERIOD * 1_000_000_000 - 2_000_000_000
    for peer, proto, sp, dp in flows:
        t = start_ns + 1_000_000_000 + rng.randrange(span // 2)
        for n in range(rng.randint(4, 14)):
            out = n % 3 != 2
            size = rng.choice([0, 40, 100, 300, 1200, 1400, 1400]) if proto == 6 else 48
            f = _frame(me, peer, proto, sp, dp, size, t) if out else \
                _frame(peer, me, proto, dp, sp, size, t)  # fmt: skip
            frames.append((t, f))
            t += rng.randrange(1_000_000, 2_000_000_000)
    frames.sort(key=lambda x: x[0])
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1)]
    for t, f in frames:
        sec, ns = divmod(t, 1_000_000_000)
        out.append(struct.pack("<IIII", sec, ns, len(f), len(f)) + f)
    return b"".join(out)


def hits(n_hosts: int, files: int) -> set[tuple[int, int]]:
    rng = random.Random(26)
    total = n_hosts * files
    return set(rng.sample([(i, k) for i in range(n_hosts) for k in range(files)],
                          max(1, round(total * HIT_RATE))))  # fmt: skip


def _fill(args: tuple[str, str, str, str, list[int], int, set[tuple[int, int]]]) -> tuple[int, int]:
    endpoint, bucket, ak, sk, hosts, files, hit = args
    p = _Putter(endpoint, bucket, ak, sk)
    entries = _EntryWriter(p)
    stored = index_bytes = 0

    def one(ik: tuple[int, int]) -> tuple[int, int]:
        i, k = ik
        host = host_name(i)
        start = DAY + timedelta(seconds=(i * 7) % PERIOD + k * PERIOD)
        start_ns = int(start.timestamp()) * 1_000_000_000
        pcap = capture_pcap(i, k, start_ns, (i, k) in hit)
        # a compressor is not thread-safe: one per capture
        body = zstandard.ZstdCompressor(level=3, write_checksum=True).compress(pcap)
        key = render_key(DEFAULT_KEY_TEMPLATE, KeyFields(PREFIX, host, "eth0", start, k + 1,
                                                         ".pcap.zst"))  # fmt: skip
        s = Summariser(parse_header(pcap))
        s.feed(memoryview(pcap)[24:])
        summary = s.finish()
        first_ns = min(f.first_ns for f in summary.flows.values())
        last_ns = max(f.last_ns for f in summary.flows.values())
        meta = {
            META["first_ts"]: f"{first_ns / 1e9:.9f}", META["last_ts"]: f"{last_ns / 1e9:.9f}",
            META["packets"]: str(summary.packets), META["pcap_bytes"]: str(len(pcap)),
            META["pcap_crc32"]: f"{zlib.crc32(pcap):08x}",
            META["sha256"]: hashlib.sha256(body).hexdigest(), META["linktype"]: "1",
            META["host"]: host, META["iface"]: "eth0", META["filter"]: "",
            META["compression"]: "zstd", META["version"]: "0.2.0",
        }  # fmt: skip
        p.put(key, body, {f"x-amz-meta-{m}": v for m, v in meta.items()})
        e = manifest.Entry(
            key=key, host=host, iface="eth0", opened=start,
            closed_ts=int(start.timestamp()) + PERIOD, first_ns=first_ns, last_ns=last_ns,
            packets=summary.packets, pcap_bytes=len(pcap), size=len(body), linktype=1,
        )  # fmt: skip
        # as the pipeline: the summary, then the entries, through the same functions
        sbody = flowindex.summary_body(e, summary)
        entries.put_bytes(flowindex.summary_key(e, PREFIX), sbody, "application/x-ndjson")
        manifest.write_entries(entries, e, PREFIX)
        return len(body), len(sbody)

    with ThreadPoolExecutor(8) as pool:
        for a, b in pool.map(one, [(i, k) for i in hosts for k in range(files)]):
            stored += a
            index_bytes += b
    return stored, index_bytes


def fill(w: Any, n_hosts: int, files: int, procs: int) -> dict[str, Any]:
    t = time.monotonic()
    hit = hits(n_hosts, files)
    batches = [list(range(j, n_hosts, procs * 2)) for j in range(procs * 2)]
    jobs = [(w.endpoint, w.bucket, w.access_key, w.secret_key, b, files, hit) for b in batches]
    with ProcessPoolExecutor(procs) as pool:
        res = list(pool.map(_fill, jobs))
    s = time.monotonic() - t
    out = {"captures": n_hosts * files, "with_x": len(hit), "stored_bytes": sum(r[0] for r in res),
           "index_bytes": sum(r[1] for r in res), "seconds": round(s, 1)}  # fmt: skip
    print(f"filled {out}")
    return out


_DOWN = re.compile(r"from (\d+) objects? \(([\d.]+) (B|kB|MB|GB) downloaded\)")
_SUMS = re.compile(r"read (\d+) summaries \(([\d,]+) bytes\)")
_COMP = re.compile(r"(\d+) more summaries from (\d+) slot compactions \(([\d,]+) bytes\)")


def _bytes(num: str, unit: str) -> int:
    return round(float(num) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[unit])


def fetch(cfg: Path, env: dict[str, str], out: Path, *flags: str) -> dict[str, Any]:
    t = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "rollcap", "fetch", "--config", str(cfg), "--since",
         DAY.isoformat(), "--until", (DAY + timedelta(days=1)).isoformat(), "-w", str(out),
         "--force", "--jobs", "4", "-v", *flags, "--filter", f"host {X}"],
        env=env, capture_output=True, text=True, timeout=7200,
    )  # fmt: skip
    s = time.monotonic() - t
    if r.returncode != 0:
        raise SystemExit(f"fetch failed: {r.stderr[-2000:]}")
    m = _DOWN.search(r.stderr)
    assert m, r.stderr[-2000:]
    objects, captures_bytes = int(m[1]), _bytes(m[2], m[3])
    sm = _SUMS.search(r.stderr)
    summaries, summary_bytes = (int(sm[1]), int(sm[2].replace(",", ""))) if sm else (0, 0)
    cm = _COMP.search(r.stderr)
    if cm:  # the slot compactions read stand in for their summaries
        summaries += int(cm[1])
        summary_bytes += int(cm[3].replace(",", ""))
    lines = [ln for ln in r.stderr.splitlines() if "flow index" in ln or "wrote" in ln]
    print("\n".join(lines))
    return {"seconds": round(s, 2), "objects": objects, "capture_bytes": captures_bytes,
            "summaries": summaries, "summary_bytes": summary_bytes,
            "bytes": captures_bytes + summary_bytes,
            "sha256": hashlib.sha256(out.read_bytes()).hexdigest(), "stderr": lines}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--files", type=int, default=144)
    ap.add_argument("--procs", type=int, default=2, help="fill processes")
    args = ap.parse_args(argv)
    state = {"before": machine()}
    with seaweedfs() as w, workdir("fleetsearch") as d:
        state["fill"] = fill(w, args.hosts, args.files, args.procs)
        cfg = offload_config(d / "rollcap.toml", d / "spool", w, PREFIX)
        env = rollcap_env(w.env())
        state["with_index"] = fetch(cfg, env, d / "a.pcap")
        state["without_index"] = fetch(cfg, env, d / "b.pcap", "--no-flow-index")
        # the same fetch after `rollcap index --compact` over the day
        t = time.monotonic()
        r = subprocess.run(
            [sys.executable, "-m", "rollcap", "index", "--compact", "--config", str(cfg),
             "--since", DAY.isoformat(), "--until", (DAY + timedelta(days=1)).isoformat()],
            env=env, capture_output=True, text=True, timeout=7200,
        )  # fmt: skip
        if r.returncode != 0:
            raise SystemExit(f"index --compact failed: {r.stderr[-2000:]}")
        state["compact_seconds"] = round(time.monotonic() - t, 2)
        state["compact"] = r.stdout.strip()
        state["with_compaction"] = fetch(cfg, env, d / "c.pcap")
        for name in ("a", "b", "c"):
            os.unlink(d / f"{name}.pcap")
    a, b, c = state["with_index"], state["without_index"], state["with_compaction"]
    state["same_packets"] = a["sha256"] == b["sha256"] == c["sha256"]
    state["compacted_time_ratio"] = round(b["seconds"] / max(1e-9, c["seconds"]), 1)
    state["compacted_vs_index"] = round(a["seconds"] / max(1e-9, c["seconds"]), 1)
    state["bytes_ratio"] = round(b["bytes"] / max(1, a["bytes"]), 1)
    state["time_ratio"] = round(b["seconds"] / max(1e-9, a["seconds"]), 1)
    state["after"] = machine()
    print(f"fleet search, host {X} over a day of {args.hosts} hosts x {args.files} captures: "
          f"{state['bytes_ratio']}x fewer bytes ({a['bytes']:,} vs {b['bytes']:,}), "
          f"{state['time_ratio']}x faster ({a['seconds']} s vs {b['seconds']} s); "
          f"same packets: {state['same_packets']}; compacted ({state['compact_seconds']} s "
          f"to compact): {state['compacted_time_ratio']}x faster than without the index "
          f"({c['seconds']} s), {state['compacted_vs_index']}x the uncompacted index")  # fmt: skip
    write_result("fleet_search", state)
    return 0 if state["same_packets"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
