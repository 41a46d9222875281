"""One-pass compression: readable output, correct hashes."""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
import zlib
from pathlib import Path

import pytest
import zstandard

from rollcap.offload.compress import Cancelled, Compressed, clean_tmp, compress_stream
from rollcap.pcapfile import GLOBAL_HEADER_LEN, parse_header, scan
from tests.support.net import TEST_PCAPS

SRC = max(TEST_PCAPS.glob("*.pcap"), key=lambda p: p.stat().st_size)


def compress_all(fd: int, hb: bytes, codec: str, level: int = 0,
                 stop: threading.Event | None = None,
                 part_size: int | None = None) -> tuple[Compressed, bytes]:  # fmt: skip
    """What compress_stream writes, and its result."""
    out = bytearray()
    c = compress_stream(fd, parse_header(hb), hb, codec, level, out.extend, stop, None, part_size)
    return c, bytes(out)


def run(codec: str, level: int = 0,
        stop: threading.Event | None = None) -> tuple[Compressed, bytes]:  # fmt: skip
    fd = os.open(SRC, os.O_RDONLY)
    try:
        hb = os.read(fd, GLOBAL_HEADER_LEN)
        return compress_all(fd, hb, codec, level, stop)
    finally:
        os.close(fd)


@pytest.mark.parametrize("codec", ["zstd", "gzip", "none"])
@pytest.mark.parametrize("level", [0, 1])
def test_roundtrip_and_hashes(codec: str, level: int) -> None:
    c, stored = run(codec, level)
    raw = SRC.read_bytes()
    if codec == "zstd":
        back = zstandard.ZstdDecompressor().stream_reader(stored).read()
    elif codec == "gzip":
        back = gzip.decompress(stored)
    else:
        back = stored
    assert back == raw
    assert c.size == len(stored)
    assert c.sha256 == hashlib.sha256(stored).hexdigest()
    assert c.pcap_crc32 == f"{zlib.crc32(raw):08x}"
    assert c.pcap_bytes == len(raw)
    s = scan(SRC)
    assert (c.packets, c.first_ts, c.last_ts, c.linktype) == (
        s.packets, s.first_ts, s.last_ts, s.header.linktype,
    )  # fmt: skip


@pytest.mark.parametrize("codec", ["zstd", "gzip", "none"])
def test_a_stream_run_again_writes_the_same_bytes_and_none_only_hashes(codec: str) -> None:
    """The S3 stream compresses a large file twice (its metadata first): both
    runs must give the same bytes, and a hash-only run the same result."""
    fd = os.open(SRC, os.O_RDONLY)
    try:
        hb = os.read(fd, GLOBAL_HEADER_LEN)
        runs = []
        for _ in range(2):
            out = bytearray()
            os.lseek(fd, GLOBAL_HEADER_LEN, os.SEEK_SET)
            c = compress_stream(fd, parse_header(hb), hb, codec, 3, out.extend, part_size=5 << 20)
            runs.append((bytes(out), c))
        os.lseek(fd, GLOBAL_HEADER_LEN, os.SEEK_SET)
        hashed = compress_stream(fd, parse_header(hb), hb, codec, 3, None, part_size=5 << 20)
    finally:
        os.close(fd)
    (a, ca), (b, cb) = runs
    assert a == b and ca == cb == hashed
    assert ca.size == len(a)
    assert ca.sha256 == hashlib.sha256(a).hexdigest()


def test_a_stop_cancels_the_compression() -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        run("zstd", stop=stop)


def test_clean_tmp_removes_only_our_part_files(tmp_path: Path) -> None:
    (tmp_path / "a.pcap.1234.part").write_bytes(b"x")
    (tmp_path / "keep.txt").write_bytes(b"x")
    (tmp_path / "link.part").symlink_to(tmp_path / "keep.txt")
    assert clean_tmp(tmp_path) == ["a.pcap.1234.part"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "link.part"]


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
@pytest.mark.parametrize("part_size", [1000, 4096, 10**9])
def test_part_digests_match_the_pieces_of_the_output(codec: str, part_size: int) -> None:
    fd = os.open(SRC, os.O_RDONLY)
    try:
        hb = os.read(fd, GLOBAL_HEADER_LEN)
        c, out = compress_all(fd, hb, codec, part_size=part_size)
    finally:
        os.close(fd)
    pieces = [out[i : i + part_size] for i in range(0, len(out), part_size)]
    assert list(c.part_sha256) == [hashlib.sha256(p).digest() for p in pieces]
    assert c.sha256 == hashlib.sha256(out).hexdigest()  # the whole hash is unaffected


def test_part_digests_without_compression_too() -> None:
    fd = os.open(SRC, os.O_RDONLY)
    try:
        hb = os.read(fd, GLOBAL_HEADER_LEN)
        c, stored = compress_all(fd, hb, "none", part_size=1000)
    finally:
        os.close(fd)
    assert stored == SRC.read_bytes()
    assert c.part_sha256 == tuple(
        hashlib.sha256(stored[i : i + 1000]).digest() for i in range(0, len(stored), 1000)
    )


@pytest.mark.parametrize("endian", ["<", ">"])
def test_a_nanosecond_capture_keeps_its_ns_in_the_metadata_and_manifest(
    endian: str, tmp_path: Path
) -> None:
    import struct

    from rollcap.config.load import validate_data
    from rollcap.offload.pipeline import manifest_entry, object_metadata
    from rollcap.offload.vet import Opened
    from rollcap.spool.readyname import ReadyName
    from rollcap.storage.base import META

    stamps = [(1_795_694_404, 123_456_789), (1_795_694_405, 7), (1_795_694_406, 999_999_999)]
    data = struct.pack(endian + "IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1)
    for sec, frac in stamps:
        data += struct.pack(endian + "IIII", sec, frac, 60, 60) + b"\x00" * 60
    src = tmp_path / "ns.pcap"
    src.write_bytes(data)
    fd = os.open(src, os.O_RDONLY)
    try:
        hb = os.read(fd, GLOBAL_HEADER_LEN)
        c, _ = compress_all(fd, hb, "zstd")
        name = ReadyName.parse("20261126T120003Z-000001_web1_eth0.pcap")
        assert name is not None
        opened = Opened(fd, name, parse_header(hb), hb, len(data), os.fstat(fd))
        meta = object_metadata(validate_data({}), opened, c)
        entry = manifest_entry("caps/k.pcap.zst", opened, c, c.size, 600)
    finally:
        os.close(fd)
    assert (c.packets, c.first_ns, c.last_ns) == (3, 1_795_694_404_123_456_789,
                                                  1_795_694_406_999_999_999)  # fmt: skip
    assert meta[META["first_ts"]] == "1795694404.123456789"
    assert meta[META["last_ts"]] == "1795694406.999999999"
    assert (entry.first_ns, entry.last_ns) == (c.first_ns, c.last_ns)
