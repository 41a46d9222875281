"""Classic pcap header parsing, record walk and repair of a cut-off tail."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from rollcap.pcapfile import (
    MAX_RECORD,
    NotPcapError,
    PcapSummary,
    parse_header,
    repair,
    scan,
)

MAGIC = {"us": 0xA1B2C3D4, "ns": 0xA1B23C4D}


def pcap(
    packets: list[tuple[int, int, bytes]],
    *,
    endian: str = "<",
    res: str = "us",
    snaplen: int = 262144,
    linktype: int = 1,
) -> bytes:
    out = struct.pack(endian + "IHHiIII", MAGIC[res], 2, 4, 0, 0, snaplen, linktype)
    for sec, frac, data in packets:
        out += struct.pack(endian + "IIII", sec, frac, len(data), len(data)) + data
    return out


PKTS = [(1_700_000_000, 5, b"a" * 60), (1_700_000_001, 7, b"b" * 1500), (1_700_000_002, 9, b"")]


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("res", ["us", "ns"])
def test_both_resolutions_and_byte_orders(tmp_path: Path, endian: str, res: str) -> None:
    f = tmp_path / "x.pcap"
    f.write_bytes(pcap(PKTS, endian=endian, res=res, snaplen=65535, linktype=113))
    s = scan(f)
    per_s = 1_000_000 if res == "us" else 1_000_000_000
    assert s.header.endian == endian
    assert s.header.ts_per_second == per_s
    assert (s.header.version, s.header.snaplen, s.header.linktype) == ((2, 4), 65535, 113)
    assert s.packets == 3
    assert s.first_ns == 1_700_000_000 * 10**9 + 5 * (10**9 // per_s)  # exact, not a float
    assert s.last_ns == 1_700_000_002 * 10**9 + 9 * (10**9 // per_s)
    assert s.first_ts == 1_700_000_000 + 5 / per_s
    assert not s.truncated and s.good_bytes == s.file_bytes == f.stat().st_size


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "shorter than a pcap header (0 of 24 bytes)"),
        (pcap([])[:10], "shorter than a pcap header (10 of 24 bytes)"),
        (b"\x0a\x0d\x0d\x0a" + b"\0" * 40, "pcapng, not classic pcap"),
        (b"GIF89a" + b"\0" * 40, "not a pcap file (magic 47494638)"),
        (
            struct.pack("<IHHiIII", MAGIC["us"], 1, 0, 0, 0, 65535, 1),
            "unsupported pcap version 1.0",
        ),
    ],
)
def test_not_pcap(data: bytes, why: str) -> None:
    with pytest.raises(NotPcapError, match=f"^{__import__('re').escape(why)}$"):
        parse_header(data)


def test_truncated_header_file(tmp_path: Path) -> None:
    f = tmp_path / "x.pcap"
    f.write_bytes(pcap(PKTS)[:20])
    with pytest.raises(NotPcapError):
        scan(f)


def test_header_only_file_has_no_packets(tmp_path: Path) -> None:
    f = tmp_path / "x.pcap"
    f.write_bytes(pcap([]))
    s = scan(f)
    assert (s.packets, s.first_ts, s.last_ts, s.truncated) == (0, None, None, False)


def _repair(path: Path) -> tuple[PcapSummary, int]:
    fd = os.open(path, os.O_RDWR)
    try:
        return repair(fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize("cut", [1, 8, 15, 16, 17, 100])
def test_repair_cuts_a_partial_last_record(tmp_path: Path, cut: int) -> None:
    """A killed tcpdump leaves the last record cut anywhere: header or data."""
    whole = pcap(PKTS[:2])
    last = struct.pack("<IIII", 1_700_000_003, 0, 200, 200) + b"c" * 200
    f = tmp_path / "x.pcap"
    f.write_bytes(whole + last[:cut])
    summary, removed = _repair(f)
    assert removed == cut
    assert f.read_bytes() == whole
    assert summary.packets == 2 and not summary.truncated
    assert summary.file_bytes == len(whole)
    assert _repair(f)[1] == 0  # idempotent


@pytest.mark.parametrize(
    "bad_record",
    [
        struct.pack("<IIII", 1_700_000_003, 0, MAX_RECORD + 1, MAX_RECORD + 1),  # huge length
        struct.pack("<IIII", 1_700_000_003, 0, 0xFFFFFFFF, 0xFFFFFFFF),
        struct.pack("<IIII", 1_700_000_003, 1_000_000, 10, 10) + b"x" * 10,  # usec >= 1e6
        struct.pack("<IIII", 1_700_000_003, 0, 100, 10) + b"x" * 100,  # caplen > len
    ],
    ids=["huge", "max-u32", "bad-usec", "caplen-over-len"],
)
def test_garbage_record_is_treated_as_the_cut_off_tail(tmp_path: Path, bad_record: bytes) -> None:
    whole = pcap(PKTS)
    f = tmp_path / "x.pcap"
    f.write_bytes(whole + bad_record + b"more garbage" * 10)
    s = scan(f)
    assert s.packets == 3 and s.truncated and s.good_bytes == len(whole)
    _, removed = _repair(f)
    assert f.read_bytes() == whole and removed == len(bad_record) + 120


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("cut", [0, 1, 16, 17])
def test_repair_of_a_nanosecond_capture(tmp_path: Path, endian: str, cut: int) -> None:
    """A ns fraction >= 1e6 is a good record in a ns file; >= 1e9 is garbage."""
    pkts = [(1_700_000_000, 999_999_999, b"a" * 60), (1_700_000_001, 1_000_001, b"b" * 70)]
    whole = pcap(pkts, endian=endian, res="ns")
    last = struct.pack(endian + "IIII", 1_700_000_003, 123_456_789, 200, 200) + b"c" * 200
    f = tmp_path / "x.pcap"
    f.write_bytes(whole + last[:cut])
    summary, removed = _repair(f)
    assert removed == cut and f.read_bytes() == whole
    assert summary.packets == 2
    assert summary.first_ns == 1_700_000_000_999_999_999
    assert summary.last_ns == 1_700_000_001_001_000_001
    bad = struct.pack(endian + "IIII", 1_700_000_003, 1_000_000_000, 10, 10) + b"x" * 10
    f.write_bytes(whole + bad + whole[24:])
    summary, removed = _repair(f)
    assert summary.packets == 2 and removed == len(bad) + len(whole) - 24
    assert f.read_bytes() == whole


def test_scan_is_independent_of_chunk_size(tmp_path: Path) -> None:
    pkts = [(1_700_000_000 + i, i, bytes([i % 256]) * (i * 37 % 1600)) for i in range(300)]
    f = tmp_path / "x.pcap"
    f.write_bytes(pcap(pkts) + b"\x01\x02\x03")
    ref = scan(f)
    assert ref.packets == 300 and ref.file_bytes - ref.good_bytes == 3
    for chunk in (1, 7, 16, 17, 1000, 65536):
        assert scan(f, chunk=chunk) == ref
