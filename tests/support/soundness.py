"""The flow index's soundness check, shared by the integration test (a
fixed-seed subset) and bench/skip_soundness.py (the full run).

Captures (synthetic, and real ones from tests/data/pcaps, each re-stamped
into its own 10-minute slot) go through a real `rollcap offload` process
with ``flow_index = true``: it stores them and writes their summaries. Then,
for each generated filter and each stored object, the verdict the fetch
uses (skip.judge on the stored summary) is compared with bare tcpdump over
the stored object: a skipped object must hold no matching packet."""

from __future__ import annotations

import random
import struct
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import zstandard

from rollcap.flows import index as flowindex
from rollcap.retrieve import skip, verdict
from rollcap.retrieve.catalog import Capture
from rollcap.retrieve.entrycheck import capture_of
from rollcap.spool.readyname import ReadyName
from rollcap.storage import manifest
from tests.support import flowpcaps

REPO = Path(__file__).resolve().parents[2]
PCAPS = REPO / "tests" / "data" / "pcaps"
T0 = datetime(2026, 11, 26, 0, 0, 0, tzinfo=UTC)
HOST = "sound1"
IFACE = {1: "eth0", 113: "any", 101: "tun0"}
# real captures: IP only (a non-IP packet makes the whole capture fetched),
# and two as they are (ARP, STP, ...)
REAL_IP = ["various_gre.pcap", "ssh.pcap", "OSPFv3_with_AH.pcap", "mptcp-v0.pcap", "vrrp.pcap",
           "PIM-DM_pruning.pcap", "sflow-print-v6.pcap", "bgp-4byte-asn.pcap", "afs.pcap",
           "geneve.pcap", "erspan-type-ii-3.pcap", "babel_rfc6126bis.pcap"]  # fmt: skip
REAL_ASIS = ["dhcp-rfc4388.pcap", "eapon1.pcap"]


def _records(data: bytes) -> list[bytes]:
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    out, off = [], 24
    while off + 16 <= len(data):
        incl = struct.unpack_from(endian + "I", data, off + 8)[0]
        out.append(data[off + 16 : off + 16 + incl])
        off += 16 + incl
    return out


def _ip_only(path: Path, tmp: Path) -> list[bytes]:
    out = tmp / f"{path.stem}.ip.pcap"
    subprocess.run(["tcpdump", "-r", str(path), "-w", str(out), "ip or ip6"], check=True,
                   capture_output=True)  # fmt: skip
    return _records(out.read_bytes())


def make_ready(ready: Path, tmp: Path, seed: int, synthetic: int) -> int:
    """Write the captures into ready/ (each in its own slot); their count."""
    rng = random.Random(seed)
    caps: list[tuple[int, list[bytes]]] = []
    for i in range(synthetic):
        lt = [1, 1, 1, 1, 1, 1, 113, 101][i % 8]
        s = flowpcaps.synth(rng, lt, rng.randint(2, 12), non_ip=(i % 9 == 4))
        caps.append((lt, s.frames))
    caps += [(1, _ip_only(PCAPS / name, tmp)) for name in REAL_IP]
    caps += [(1, _records((PCAPS / name).read_bytes())) for name in REAL_ASIS]
    # a capture without packets has no object
    caps = [(lt, frames) for lt, frames in caps if frames]
    for seq, (lt, frames) in enumerate(caps, 1):
        start = T0 + timedelta(minutes=10 * seq)
        ns = int(start.timestamp()) * 1_000_000_000 + 1_000_000
        name = ReadyName(start, seq, HOST, IFACE[lt]).format()
        part = tmp / f".{name}"
        part.write_bytes(flowpcaps.pcap_bytes(lt, frames, ns, step_ns=1_000_000))
        part.rename(ready / name)
    return len(caps)


@dataclass
class Stored:
    captures: dict[str, Capture]  # capture key -> as its manifest entry tells
    pcaps: dict[str, bytes]  # capture key -> its pcap bytes
    summaries: dict[str, bytes]  # capture key -> its summary object's bytes


def stored(client: Any, bucket: str, prefix: str) -> Stored:
    def keys(p: str) -> list[str]:
        out: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=p):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out

    def get(k: str) -> bytes:
        return bytes(client.get_object(Bucket=bucket, Key=k)["Body"].read())

    caps = {}
    for k in keys(manifest.root(prefix)):
        e = manifest.parse_key(k, prefix)
        if e is not None and e.has_object:
            caps[e.key] = capture_of(e)
    dctx = zstandard.ZstdDecompressor()
    pcaps = {k: dctx.stream_reader(get(k)).read() for k in caps}
    sums = {}
    for k in keys(flowindex.root(prefix)):
        e = flowindex.parse_key(k, prefix)
        if e is not None:
            sums[e.key] = get(k)
    return Stored(caps, pcaps, sums)


@dataclass
class Outcome:
    filters: int = 0
    decidable: int = 0  # filters the index can answer
    refused: int = 0  # filters tcpdump refused for every link type
    pairs: int = 0  # (filter, object) pairs tcpdump accepted
    skipped: int = 0  # of those, objects the index skips
    matched_packets: int = 0
    missing: list[str] = field(default_factory=list)  # filter: object, packets
    why: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


def merged(pcaps: list[bytes]) -> bytes:
    """Objects of one link type under one header (each pcap's records as they are)."""
    return pcaps[0][:24] + b"".join(p[24:] for p in pcaps)


def check(st: Stored, exprs: list[str], tmp: Path) -> Outcome:
    """Every filter against every stored object: tcpdump's matches per
    object (one tcpdump per filter and link type over the objects merged,
    each packet told apart by its time) against the index's verdict."""
    t0 = time.monotonic()
    out = Outcome(filters=len(exprs))
    by_lt: dict[int, list[str]] = {}
    for k, c in sorted(st.captures.items(), key=lambda kv: kv[1].first_ns or 0):
        by_lt.setdefault(c.linktype or 1, []).append(k)
    spans = {k: (c.first_ns or 0, c.last_ns or 0) for k, c in st.captures.items()}
    for expr in exprs:
        try:
            node: verdict.Node | None = verdict.compile_filter(expr)
            out.decidable += 1
        except verdict.Undecidable:
            node = None
        accepted = False
        for _lt, keys in by_lt.items():
            src = tmp / "in.pcap"
            src.write_bytes(merged([st.pcaps[k] for k in keys]))
            p = subprocess.run(["tcpdump", "--time-stamp-precision=nano", "-r", str(src), "-w", "-",
                                "--", expr],
                               capture_output=True)  # fmt: skip
            if p.returncode != 0:
                continue  # fetch refuses a filter tcpdump refuses
            accepted = True
            hits: Counter[str] = Counter()
            for t in _times(p.stdout):
                hits[next(k for k in keys if spans[k][0] <= t <= spans[k][1])] += 1
            out.matched_packets += sum(hits.values())
            for k in keys:
                out.pairs += 1
                why: str | None = skip.UNREADABLE if k not in st.summaries else None
                if node is None:
                    why = "undecidable"
                elif why is None:
                    why = skip.judge(node, st.captures[k], st.summaries[k], None)
                out.why[why or "skipped"] += 1
                if why is None:
                    out.skipped += 1
                    if hits[k]:
                        out.missing.append(f"{expr!r}: {k}: {hits[k]} packets")
        out.refused += not accepted
    out.seconds = time.monotonic() - t0
    return out


def _times(pcap: bytes) -> list[int]:
    if len(pcap) < 24:
        return []
    nano = pcap[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    endian = "<" if pcap[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    out, off = [], 24
    while off + 16 <= len(pcap):
        sec, frac, incl = struct.unpack_from(endian + "III", pcap, off)
        out.append(sec * 1_000_000_000 + (frac if nano else frac * 1000))
        off += 16 + incl
    return out


def address_pools(st: Stored) -> tuple[list[str], list[str]]:
    """Addresses the stored flows hold (as the filters should test them),
    plus the synthetic pools (some of them in no flow)."""
    v4, v6 = set(flowpcaps.V4), set(flowpcaps.V6)
    for body in st.summaries.values():
        for row in flowindex.parse_body(body).flows:
            for a in (row["src"], row["dst"]):
                (v6 if ":" in a else v4).add(a)
    return sorted(v4), sorted(v6)


def packets(pcap: bytes) -> list[tuple[int, bytes]]:
    """(time in ns, bytes) of each record, as a multiset to compare outputs."""
    data = _records(pcap)
    return sorted(zip(_times(pcap), data, strict=True))


def tcpdump_packets(pcap: bytes, expr: str, tmp: Path) -> list[tuple[int, bytes]]:
    src = tmp / "all.pcap"
    src.write_bytes(pcap)
    p = subprocess.run(["tcpdump", "--time-stamp-precision=nano", "-r", str(src), "-w", "-",
                        "--", expr], capture_output=True, check=True)  # fmt: skip
    return packets(p.stdout)
