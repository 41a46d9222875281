"""The flow index as the running daemons write it: real `rollcap capture`
and `rollcap offload` processes (S3 on SeaweedFS, and file://), the test
captures of tests/data/pcaps replayed onto the capture's veth.

Every stored capture must have its flow summary, and the summary's flows
must agree with a count made here, independently, from the stored bytes."""

from __future__ import annotations

import ipaddress
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import zstandard

from rollcap.flows import index as flowindex
from rollcap.storage import manifest
from tests.integration.host_daemons import running
from tests.integration.test_index_daemon import _destination, keys_in_all
from tests.integration.test_offload import keys_in
from tests.support.net import Veth
from tests.support.seaweedfs import SeaweedFS

pytestmark = pytest.mark.integration

FlowId = tuple[tuple[int, ...], int, frozenset[tuple[str, int]]]


def independent_flows(pcap: bytes) -> tuple[Counter[FlowId], int]:
    """TCP/UDP flows with ports (both directions as one, VLAN tags in the key)
    and their packets, and the packet count: Ethernet only, written from the
    flow definition in docs/flows.md, sharing no code with rollcap.flows."""
    endian = "<" if pcap[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    assert struct.unpack_from(endian + "I", pcap, 20)[0] == 1
    flows: Counter[FlowId] = Counter()
    firsts: dict[tuple[str, str, int, int], FlowId] = {}
    off, packets = 24, 0
    while off + 16 <= len(pcap):
        incl = struct.unpack_from(endian + "I", pcap, off + 8)[0]
        p = pcap[off + 16 : off + 16 + incl]
        off += 16 + incl
        packets += 1
        et, at, vlans = int.from_bytes(p[12:14], "big"), 14, ()
        while et in (0x8100, 0x88A8, 0x9100):
            vlans += (int.from_bytes(p[at : at + 2], "big") & 0xFFF,)
            et, at = int.from_bytes(p[at + 2 : at + 4], "big"), at + 4
        if et != 0x0800 or len(p) < at + 20 or p[at] >> 4 != 4:
            continue  # IPv4 suffices here: the unit tests cover IPv6
        proto, ident = p[at + 9], int.from_bytes(p[at + 4 : at + 6], "big")
        src, dst = str(ipaddress.IPv4Address(p[at + 12 : at + 16])), str(
            ipaddress.IPv4Address(p[at + 16 : at + 20]))  # fmt: skip
        frag = int.from_bytes(p[at + 6 : at + 8], "big")
        l4 = at + (p[at] & 15) * 4
        if proto not in (6, 17):
            continue
        if frag & 0x1FFF:
            fid = firsts.get((src, dst, proto, ident))
            if fid is not None:
                flows[fid] += 1
            continue
        if len(p) < l4 + 4:
            continue
        sport = int.from_bytes(p[l4 : l4 + 2], "big")
        dport = int.from_bytes(p[l4 + 2 : l4 + 4], "big")
        fid = (vlans, proto, frozenset({(src, sport), (dst, dport)}))
        if frag & 0x2000:
            firsts[(src, dst, proto, ident)] = fid
        flows[fid] += 1
    return flows, packets


def _stored(kind: str, base: Path, seaweedfs: SeaweedFS | None, bucket: str
            ) -> tuple[dict[str, bytes], dict[str, bytes]]:  # fmt: skip
    """{capture key: pcap bytes}, {summary key: summary bytes} as stored."""
    dctx = zstandard.ZstdDecompressor()
    if seaweedfs is not None:
        c = seaweedfs.client()
        caps = {k: dctx.decompressobj().decompress(
                    c.get_object(Bucket=bucket, Key=k)["Body"].read())
                for k in keys_in(seaweedfs, bucket, "caps/")}  # fmt: skip
        sums = {k: c.get_object(Bucket=bucket, Key=k)["Body"].read()
                for k in keys_in_all(seaweedfs, bucket, flowindex.root("caps"))}  # fmt: skip
        return caps, sums
    archive = base / "archive"
    caps = {str(p.relative_to(archive)): dctx.decompressobj().decompress(p.read_bytes())
            for p in archive.rglob("*.pcap.zst")}  # fmt: skip
    sums = {str(p.relative_to(archive)): p.read_bytes()
            for p in (archive / flowindex.DIR).rglob("*") if p.is_file()}  # fmt: skip
    return caps, sums


@pytest.fixture(params=["s3", "file"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_every_stored_capture_has_a_summary_that_agrees_with_an_independent_count(
    kind: str, veth: Veth, all_pcap: Path, base: Path, request: pytest.FixtureRequest
) -> None:
    seaweedfs = request.getfixturevalue("seaweedfs") if kind == "s3" else None
    offload, env, bucket = _destination(kind, base, seaweedfs)
    offload = {**offload, "rescan_seconds": 3600, "flow_index": True}
    with running(base, veth.b, env, rotate_megabytes=1, hostname="flw1",
                 offload=offload) as host:  # fmt: skip
        veth.replay(all_pcap, loop=2, pps=20000)
        handed = host.drain()
    assert handed >= 2
    caps, sums = _stored(kind, base, seaweedfs, bucket)
    prefix = "caps" if kind == "s3" else ""
    assert len(caps) == handed
    by_capture = {}
    for key, body in sums.items():
        e = flowindex.parse_key(key, prefix)
        assert e is not None and e.host == "flw1", key
        by_capture[e.key] = flowindex.parse_body(body)
    assert set(by_capture) == set(caps)  # a summary for every stored capture
    counted = 0
    for key, pcap in caps.items():
        s = by_capture[key]
        want, packets = independent_flows(pcap)
        assert s.complete and s.capture["packets"] == packets, key
        assert sum(f["packets"] for f in s.flows) + s.capture["non_ip"] == packets, key
        got = Counter({
            (tuple(f["vlan"] or ()), f["proto"],
             frozenset({(f["src"], f["sport"]), (f["dst"], f["dport"])})): f["packets"]
            for f in s.flows
            if f["proto"] in (6, 17) and f["ip"] == 4 and f["sport"] is not None
        })  # fmt: skip
        assert got == want, key
        counted += len(want)
    assert counted > 50  # the test captures hold many TCP/UDP flows
    # and the manifest names the same captures: a summary never goes without its entry
    if kind == "s3":
        assert seaweedfs is not None
        entries = {manifest.parse_key(k, "caps")
                   for k in keys_in_all(seaweedfs, bucket, manifest.root("caps"))}  # fmt: skip
        assert {e.key for e in entries if e is not None and e.has_object} == set(caps)


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    s = tmp_path / "spool"
    for d in ("work", "ready", "quarantine", "tmp", "state"):
        (s / d).mkdir(parents=True)
    return s


def _pipeline(tmp_path: Path, spool: Path, archive: Path, **offload: object) -> Any:
    import os
    import threading

    from rollcap.config import load_config
    from rollcap.offload import pipeline
    from rollcap.spool import Spool
    from rollcap.storage import open_storage
    from tests.integration.test_offload import write_config

    conf = write_config(tmp_path / "rollcap.toml", spool, f"file://{archive}", **offload)
    cfg = load_config(conf)
    return pipeline.Pipeline(cfg, Spool.at(spool), open_storage(cfg.offload),
                             {0, os.geteuid()}, threading.Event())  # fmt: skip


def test_a_failed_summary_write_keeps_the_local_copy_and_is_retried(
    all_pcap: Path, spool_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The capture is stored but its flow summary cannot be written: the file
    stays in ready/, no manifest entry names it yet; the retry finds the
    object ("exists") and writes the summary, then the entries, then deletes."""
    from rollcap.storage import StorageError
    from rollcap.storage.local import LocalStorage
    from tests.integration.test_offload import T0, make_captures

    [f] = make_captures(all_pcap, spool_dir / "ready", [T0])
    archive = tmp_path / "arch"
    pipe = _pipeline(tmp_path, spool_dir, archive, flow_index=True)
    real = LocalStorage.put_bytes

    def flows_fail(self: LocalStorage, key: str, body: bytes, content_type: str) -> None:
        if key.startswith(flowindex.DIR):
            raise StorageError(f"store {key}: Input/output error", code="EIO")
        real(self, key, body, content_type)

    monkeypatch.setattr(LocalStorage, "put_bytes", flows_fail)
    out = pipe.process(f.name)
    assert out.kind == "failed" and out.dest_error is not None and f.exists(), out
    assert not (archive / manifest.DIR).exists()  # the entry comes after the summary
    monkeypatch.setattr(LocalStorage, "put_bytes", real)
    out = pipe.process(f.name)
    assert out.kind == "exists" and not f.exists(), out
    [key] = [o.key for o in pipe.storage.list(flowindex.root(""))]
    summary = flowindex.read_summary(pipe.storage, key)
    assert summary.capture["key"] == out.key and summary.capture["packets"] == out.packets


def test_with_the_index_off_no_summary_is_written(
    all_pcap: Path, spool_dir: Path, tmp_path: Path
) -> None:
    from tests.integration.test_offload import T0, make_captures

    [f] = make_captures(all_pcap, spool_dir / "ready", [T0])
    archive = tmp_path / "arch"
    out = _pipeline(tmp_path, spool_dir, archive, flow_index=False).process(f.name)
    assert out.kind == "uploaded" and not f.exists(), out
    assert (archive / manifest.DIR).is_dir() and not (archive / flowindex.DIR).exists()
