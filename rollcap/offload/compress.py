"""Compress one capture in a single streaming pass, straight into its upload
(Storage.put_stream): no temp file.

From the same chunks it computes the CRC-32 of the pcap, the SHA-256 of the
compressed bytes, and the packet count and first/last timestamps. Memory is
bounded by the chunk size whatever the file size. zstandard, zlib and hashlib
release the GIL on large buffers, so several files compress in parallel threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zstandard

from rollcap.flows.summary import FlowSummary
from rollcap.pcapfile import PcapHeader, Records, RecordWalker
from rollcap.timestamps import PacketSpan

CHUNK = 4 * 1024 * 1024
DEFAULT_LEVELS = {"zstd": 3, "gzip": 6, "none": 0}


class Cancelled(Exception):
    """The service is stopping (a temp file was removed, an upload aborted)."""


@dataclass(frozen=True)
class Compressed(PacketSpan):
    size: int  # compressed bytes
    sha256: str  # of the compressed bytes (hex)
    pcap_bytes: int
    pcap_crc32: str  # 8 hex digits
    packets: int
    first_ns: int | None  # first/last packet, epoch ns (exact, µs or ns files)
    last_ns: int | None
    linktype: int
    part_sha256: tuple[bytes, ...] = ()  # per part_size piece of the output, if asked
    flows: FlowSummary | None = None  # offload.flow_index: the capture's flow summary


class _Codec:
    def __init__(self, codec: str, level: int) -> None:
        level = level or DEFAULT_LEVELS[codec]
        self.compress: Callable[[bytes | memoryview], bytes]
        self.flush: Callable[[], bytes]
        if codec == "zstd":
            # frame checksum: zstd -t / Wireshark notice a corrupted object
            c = zstandard.ZstdCompressor(level=level, write_checksum=True).compressobj()
            self.compress, self.flush = c.compress, c.flush
        elif codec == "gzip":
            z = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip framing
            self.compress, self.flush = z.compress, z.flush
        else:
            self.compress, self.flush = bytes, bytes  # copies: buf is reused


def compress_stream(
    fd: int,
    header: PcapHeader,
    header_bytes: bytes,
    codec: str,
    level: int,
    write: Callable[[bytes], None] | None,
    stop: threading.Event | None = None,
    progress: Callable[[int], None] | None = None,
    part_size: int | None = None,
    tap: Callable[[memoryview, Records], None] | None = None,
) -> Compressed:
    """Compress the pcap open at fd from its current offset (just past the
    global header, whose bytes are header_bytes) into ``write`` (None: the
    bytes are only hashed), in one pass; the result has no path.

    Run again from the same offset with the same codec and level, it writes
    the same bytes (zstd and zlib are deterministic): the S3 stream relies on
    that, and checks it.

    With part_size, also the SHA-256 of each part_size piece of the output (what
    S3 checks per multipart part), so an existing object's composite checksum
    can be rebuilt without the bytes. The first part's digest is a copy of the
    running whole-file hash, so a file of one part costs nothing extra.

    ``tap`` sees every chunk of the pcap after the global header, and where
    the walk for the packet count found its records (the flow summariser:
    Summariser.feed_walked), from this same read and walk."""
    # CRC-32, not SHA-256: ~4x cheaper, and the pcap checksum only labels the
    # content (what is stored is verified by the SHA-256 of the stored bytes)
    pcap_crc = zlib.crc32(header_bytes)
    out_sha = hashlib.sha256()
    walker = RecordWalker(header)
    enc = _Codec(codec, level)
    pcap_bytes = len(header_bytes)
    out_bytes = 0
    parts: list[bytes] | None = [] if part_size else None
    part_h: hashlib._Hash | None = None  # None while in part 1: out_sha serves
    part_left = part_size or 0

    def emit(data: bytes) -> None:
        nonlocal out_bytes
        if data:
            if parts is None:
                out_sha.update(data)
            else:
                hash_parts(data)
            if write is not None:
                write(data)
            out_bytes += len(data)

    def hash_parts(data: bytes) -> None:
        nonlocal part_h, part_left
        assert parts is not None and part_size
        mv = memoryview(data)
        i = 0
        while i < len(mv):
            piece = mv[i : i + part_left]
            out_sha.update(piece)
            if part_h is not None:
                part_h.update(piece)
            part_left -= len(piece)
            i += len(piece)
            if part_left == 0:
                parts.append((part_h or out_sha).digest())
                part_h = hashlib.sha256()
                part_left = part_size

    emit(enc.compress(header_bytes))
    # one reused buffer: no fresh 4 MiB allocation (and page faults) per chunk
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while True:
        if stop is not None and stop.is_set():
            raise Cancelled()
        n = os.readv(fd, [buf])
        if not n:
            break
        chunk = view[:n]
        pcap_bytes += n
        pcap_crc = zlib.crc32(chunk, pcap_crc)
        records = walker.feed(chunk)
        if tap is not None:
            tap(chunk, records)
        emit(enc.compress(chunk))
        if progress is not None:
            progress(n)
    emit(enc.flush())
    packets, first, last = walker.finish()
    if parts is not None and part_size and part_left < part_size:
        parts.append((part_h or out_sha).digest())  # the last, partial part
    return Compressed(
        size=out_bytes,
        sha256=out_sha.hexdigest(),
        pcap_bytes=pcap_bytes,
        pcap_crc32=f"{pcap_crc:08x}",
        packets=packets,
        first_ns=first,
        last_ns=last,
        linktype=header.linktype,
        part_sha256=tuple(parts or ()),
    )


def clean_tmp(tmp_dir: Path) -> list[str]:
    """Remove the temp files an older offload (which compressed into tmp/
    first) left behind at a crash; called before any worker starts."""
    removed = []
    for p in tmp_dir.iterdir():
        if p.name.endswith(".part") and p.is_file() and not p.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
            removed.append(p.name)
    return removed
