"""The flow summariser's cost and the flow index's size (issue 26, items 2-3).

    python -m bench.flows [--size-mb 50]

In one run, on the same bytes, CPU time of one thread (time.thread_time),
each measured --repeat times in turn (the machine is shared: the best of
each, and the range of the per-round ratios):
- packets/s of the summariser (rollcap.flows.summary) on its own (its own
  record walk), and of a plain per-packet struct parser (record header,
  Ethernet type, IPv4 addresses, protocol and ports) as the baseline;
- the summariser's CPU in the offload, where it shares the offload's record
  walk (pcapfile.RecordWalker, which counts packets with the index off too):
  walk + summary minus the walk alone, against zstd -3's CPU on the same
  file (goal <= 25 %);
- the index's bytes (gzip NDJSON, as stored) against zstd's stored bytes
  (goal <= 0.5 % at 50 MB and more), per capture of tests/data/pcaps, and the
  worst case: one flow per packet up to the flow cap.
Files: the bench mix (bench/datagen.py) and a small-packet mix (64-128 B frames
over 2,000 TCP/UDP flows).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import struct
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zstandard

from bench import datagen
from bench.common import write_result
from rollcap.flows import index
from rollcap.flows.summary import DEFAULT_CAP, FlowSummary, Summariser
from rollcap.pcapfile import RecordWalker, parse_header
from rollcap.storage import manifest

CHUNK = 4 * 1024 * 1024
REPO = Path(__file__).resolve().parents[1]


def small_packet_file(path: Path, size: int, seed: int = 7, flows: int = 2000) -> int:
    rng = random.Random(seed)
    tuples = [(rng.randbytes(4), rng.randbytes(4), rng.choice((6, 17)), rng.randrange(1024, 65535),
               rng.choice((53, 80, 443, 123))) for _ in range(flows)]  # fmt: skip
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
    t, n = 1_800_000_000.0, 0
    while len(out) < size:
        src, dst, proto, sp, dp = rng.choice(tuples)
        if rng.random() < 0.5:
            src, dst, sp, dp = dst, src, dp, sp
        plen = rng.randrange(64, 129) - 14 - 20
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + plen, n & 0xFFFF, 0, 64, proto, 0, src, dst)
        # payload: random, as encrypted traffic is (zeros would flatter zstd)
        frame = (b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + struct.pack("!HH", sp, dp)
                 + rng.randbytes(plen - 4))
        t += 0.00001
        out += struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(frame), len(frame)) + frame
        n += 1
    path.write_bytes(out)
    return n


def baseline(data: bytes) -> int:
    """A plain per-packet struct parser: what a straightforward one does."""
    rec = struct.Struct("<IIII").unpack_from
    l3 = struct.Struct("!H").unpack_from
    v4 = struct.Struct("!B8xB2x4s4sHH").unpack_from
    seen: dict[tuple[bytes, bytes, int, int, int], int] = {}
    off, n, packets = 24, len(data), 0
    while off + 16 <= n:
        _s, _f, incl, orig = rec(data, off)
        p = off + 16
        off = p + incl
        packets += 1
        if incl >= 38 and l3(data, p + 12)[0] == 0x0800:
            _vihl, proto, src, dst, sp, dp = v4(data, p + 14)
            k = (src, dst, proto, sp, dp)
            seen[k] = seen.get(k, 0) + orig
    return packets


def cpu(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.thread_time()
    out = fn()
    return time.thread_time() - t, out


def summarise(data: bytes, cap: int = DEFAULT_CAP) -> FlowSummary:
    s = Summariser(parse_header(data[:24]), cap)
    mv = memoryview(data)
    for i in range(24, len(data), CHUNK):
        s.feed(mv[i : i + CHUNK])
    return s.finish()


def zstd_size(data: bytes) -> int:
    c = zstandard.ZstdCompressor(level=3, write_checksum=True).compressobj()
    mv = memoryview(data)
    out = sum(len(c.compress(mv[i : i + CHUNK])) for i in range(0, len(data), CHUNK))
    return out + len(c.flush())


def body_size(s: FlowSummary, name: str) -> int:
    e = manifest.Entry(key=f"bench/{name}.pcap.zst", host="bench", iface="eth0",
                       opened=datetime(2027, 1, 1, tzinfo=UTC), closed_ts=1_798_761_600,
                       first_ns=None, last_ns=None, packets=s.packets, pcap_bytes=0, size=0,
                       linktype=s.linktype)  # fmt: skip
    return len(index.summary_body(e, s))


def walk(data: bytes, summary: bool) -> Any:
    """What the offload's read does per chunk: the record walk, and with the
    index on the summary from the same walk (compress.compress_stream's tap)."""
    header = parse_header(data[:24])
    w = RecordWalker(header)
    s = Summariser(header) if summary else None
    mv = memoryview(data)
    for i in range(24, len(data), CHUNK):
        chunk = mv[i : i + CHUNK]
        recs = w.feed(chunk)
        if s is not None:
            s.feed_walked(chunk, recs)
    return s.finish() if s is not None else w.finish()


def _range(xs: list[float]) -> list[float]:
    return [round(min(xs), 2), round(sorted(xs)[len(xs) // 2], 2), round(max(xs), 2)]


def measure(name: str, path: Path, repeat: int) -> dict[str, Any]:
    data = path.read_bytes()
    t: dict[str, list[float]] = {k: [] for k in ("base", "alone", "walk", "fused", "zstd")}
    for _ in range(repeat):
        base_s, packets = cpu(lambda: baseline(data))
        alone_s, s = cpu(lambda: summarise(data))
        walk_s, _w = cpu(lambda: walk(data, False))
        fused_s, _f = cpu(lambda: walk(data, True))
        zstd_s, stored = cpu(lambda: zstd_size(data))
        for k, v in zip(t, (base_s, alone_s, walk_s, fused_s, zstd_s), strict=True):
            t[k].append(v)
    best = {k: min(v) for k, v in t.items()}
    added = [max(f - w, 1e-9) for f, w in zip(t["fused"], t["walk"], strict=True)]
    idx = body_size(s, name)
    return {
        "file": name, "pcap_bytes": len(data), "packets": packets, "flows": len(s.flows),
        "baseline_pps": round(packets / best["base"]),
        "summariser_pps": round(packets / best["alone"]),
        "summariser_vs_baseline": round(best["base"] / best["alone"], 2),
        "walk_s": round(best["walk"], 4), "walk_and_summary_s": round(best["fused"], 4),
        "summary_added_s": round(best["fused"] - best["walk"], 4),
        "summary_added_pps": round(packets / max(best["fused"] - best["walk"], 1e-9)),
        "zstd_s": round(best["zstd"], 4),
        "summariser_cpu_vs_zstd": round((best["fused"] - best["walk"]) / best["zstd"], 2),
        "summariser_cpu_vs_zstd_rounds": _range([a / z for a, z in zip(added, t["zstd"],
                                                                       strict=True)]),
        "alone_cpu_vs_zstd": round(best["alone"] / best["zstd"], 2),
        "stored_bytes": stored, "index_bytes": idx,
        "index_vs_stored_pct": round(100 * idx / stored, 3),
    }  # fmt: skip


def worst_case(cap: int) -> dict[str, Any]:
    """One flow per packet (a scan): cap + 1 small packets, each its own flow."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
    for i in range(cap + 1):
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, b"\x0a\x00\x00\x01",
                         struct.pack("!I", 0xC0000000 + i // 60000), )  # fmt: skip
        tcp = struct.pack("!HH", 40000, 1 + i % 60000) + bytes(16)
        frame = b"\x02" * 12 + b"\x08\x00" + ip + tcp
        out += struct.pack("<IIII", 1_800_000_000, i % 1_000_000, len(frame), len(frame)) + frame
    s = summarise(bytes(out), cap)
    return {"cap": cap, "flows": len(s.flows), "complete": s.complete,
            "index_bytes": body_size(s, "worst"), "pcap_bytes": len(out)}  # fmt: skip


def test_pcaps() -> list[dict[str, Any]]:
    rows = []
    for p in sorted((REPO / "tests" / "data" / "pcaps").glob("*.pcap")):
        s = summarise(p.read_bytes())
        rows.append({"file": p.name, "packets": s.packets, "flows": len(s.flows),
                     "index_bytes": body_size(s, p.stem)})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=50)
    ap.add_argument("--cap", type=int, default=DEFAULT_CAP)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    size = args.size_mb * 1024 * 1024
    work = datagen.cache_root() / f"flows2-{args.size_mb}"
    work.mkdir(parents=True, exist_ok=True)
    mix, small = work / "mix.pcap", work / "small.pcap"
    if not mix.exists():
        datagen.generate_file(mix, size, random.Random(1), datagen.real_frames(),
                              datetime(2027, 1, 1, tzinfo=UTC))  # fmt: skip
    if not small.exists():
        small_packet_file(small, size)
    res: dict[str, Any] = {
        "load_before": os.getloadavg(), "threads": threading.active_count(),
        "files": [measure("bench mix", mix, args.repeat),
                  measure("small packets 64-128 B", small, args.repeat)],
        "worst_case": worst_case(args.cap), "test_pcaps": test_pcaps(),
        "load_after": os.getloadavg(),
    }  # fmt: skip
    tp = res["test_pcaps"]
    res["test_pcaps_bytes_per_capture"] = {
        "mean": round(sum(r["index_bytes"] for r in tp) / len(tp)),
        "max": max(r["index_bytes"] for r in tp),
        "min": min(r["index_bytes"] for r in tp),
    }
    print(json.dumps({k: v for k, v in res.items() if k != "test_pcaps"}, indent=1))
    write_result("flows", res)
    return res


if __name__ == "__main__":
    main()
