"""Compress one capture into a temp file in a single streaming pass.

From the same chunks it computes the SHA-256 of the pcap and of the
compressed bytes, and the packet count and first/last timestamps. Memory is
bounded by the chunk size whatever the file size. zstandard, zlib and hashlib
release the GIL on large buffers, so several files compress in parallel threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zstandard

from rollcap.offload.summary import RecordWalker
from rollcap.pcapfile import PcapHeader

CHUNK = 4 * 1024 * 1024
DEFAULT_LEVELS = {"zstd": 3, "gzip": 6, "none": 0}


class Cancelled(Exception):
    """The service is stopping; the temp file was removed."""


@dataclass(frozen=True)
class Compressed:
    path: Path  # the temp file to upload
    size: int  # compressed bytes
    sha256: str  # of the compressed bytes (hex)
    pcap_bytes: int
    pcap_sha256: str
    packets: int
    first_ts: float | None
    last_ts: float | None
    linktype: int


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


def compress_fd(
    fd: int,
    header: PcapHeader,
    header_bytes: bytes,
    tmp_dir: Path,
    stem: str,
    codec: str,
    level: int,
    stop: threading.Event | None = None,
    progress: Callable[[int], None] | None = None,
) -> Compressed:
    """Compress the pcap open at fd, whose first GLOBAL_HEADER_LEN bytes
    (header_bytes) were already read, into a new file in tmp_dir."""
    out_path = tmp_dir / f"{stem}.{uuid.uuid4().hex[:8]}.part"
    pcap_sha = hashlib.sha256(header_bytes)
    out_sha = hashlib.sha256()
    walker = RecordWalker(header)
    enc = _Codec(codec, level)
    same = codec == "none"  # stored bytes are the pcap: hash once
    pcap_bytes = len(header_bytes)
    out_bytes = 0
    out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
    try:
        with os.fdopen(out, "wb", buffering=0, closefd=True) as f:

            def emit(data: bytes) -> None:
                nonlocal out_bytes
                if data:
                    if not same:
                        out_sha.update(data)
                    f.write(data)
                    out_bytes += len(data)

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
                pcap_sha.update(chunk)
                walker.feed(chunk)
                emit(enc.compress(chunk))
                if progress is not None:
                    progress(n)
            emit(enc.flush())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            out_path.unlink()
        raise
    packets, first, last = walker.finish()
    pcap_hex = pcap_sha.hexdigest()
    return Compressed(
        path=out_path,
        size=out_bytes,
        sha256=pcap_hex if same else out_sha.hexdigest(),
        pcap_bytes=pcap_bytes,
        pcap_sha256=pcap_hex,
        packets=packets,
        first_ts=first,
        last_ts=last,
        linktype=header.linktype,
    )


def clean_tmp(tmp_dir: Path) -> list[str]:
    """Remove temp files a crash left behind (called before any worker starts)."""
    removed = []
    for p in tmp_dir.iterdir():
        if p.name.endswith(".part") and p.is_file() and not p.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
            removed.append(p.name)
    return removed
