"""rollcap/flows/backfill.py: `rollcap index` writes what the offload would
have, skips what exists, and fails one capture (never the run) on bad bytes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import zstandard

from rollcap.flows import index as flowindex
from rollcap.flows.backfill import Backfill, Counts, summarise
from rollcap.retrieve.catalog import Capture
from tests.support.archive import write_pcap
from tests.unit.flows.test_query import NS, T0, DictStorage


def _udp(src: int, sport: int) -> bytes:
    eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
    ip = bytes([0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, src, 10, 0, 0, 99])
    return eth + ip + sport.to_bytes(2, "big") + (53).to_bytes(2, "big") + b"\x00\x08\x00\x00"


def _capture(st: DictStorage, tmp: Path, host: str, seq: int, body: bytes | None = None
             ) -> Capture:  # fmt: skip
    t0 = int(T0.timestamp()) * NS + NS
    recs = [(t0 + i * NS, _udp(1 + i % 3, 1000 + i % 3), 42) for i in range(30)]
    pcap = write_pcap(tmp / f"{host}{seq}.pcap", recs).read_bytes()
    data = zstandard.ZstdCompressor().compress(pcap) if body is None else body
    key = f"caps/{host}/2026/11/26/{host}-eth0-{T0:%Y%m%dT%H%M%SZ}-{seq:06d}.pcap.zst"
    st.objects[key] = data
    return Capture(key=key, size=len(data), host=host, iface="eth0", start=T0, first_ns=t0,
                   last_ns=recs[-1][0], packets=30, pcap_bytes=len(pcap), linktype=1,
                   end_ts=T0.timestamp() + 600)  # fmt: skip


def test_backfill_writes_skips_and_fails_one_capture_at_a_time(tmp_path: Path) -> None:
    st = DictStorage()
    good = _capture(st, tmp_path, "web1", 1)
    lying = replace(_capture(st, tmp_path, "web1", 2), packets=31)
    broken = _capture(st, tmp_path, "web2", 3, body=b"\x28\xb5\x2f\xfd" + b"\x00" * 40)
    fill = Backfill(st, prefix="caps", max_flows=100)
    counts = Counts()
    for o in fill.run([good, lying, broken]):
        counts.add(o)
    assert (counts.written, counts.failed, counts.flows) == (1, 2, 3)
    why = {o.key: o.detail for o in counts.problems}
    assert "holds 30 packets, its entry records 31" in why[lying.key]
    assert "cannot read it" in why[broken.key]
    [key] = [k for k in st.objects if k.startswith(flowindex.root("caps"))]
    s = flowindex.parse_body(st.objects[key])
    assert s.capture["key"] == good.key and s.capture["packets"] == 30
    assert sum(f["packets"] for f in s.flows) == 30
    # the same summary the offload's summariser gives for the same bytes
    path = tmp_path / "again.pcap.zst"
    path.write_bytes(st.objects[good.key])
    assert len(summarise(path, 100)[0].flows) == 3
    # resumable: a second run writes nothing
    again = Counts()
    for o in Backfill(st, prefix="caps", max_flows=100, hosts=["web1"]).run([good]):
        again.add(o)
    assert (again.exists, again.written) == (1, 0)
