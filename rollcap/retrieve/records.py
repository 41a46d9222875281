"""Streaming pcap records: decompress, walk, window-filter and write them.

Never holds more than one read buffer per open file, so memory does not grow
with the amount fetched.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from rollcap.pcapfile import (
    GLOBAL_HEADER_LEN,
    MAX_RECORD,
    RECORD_HEADER_LEN,
    NotPcapError,
    PcapHeader,
    parse_header,
)

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"
_BUF = 1024 * 1024
NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Record:
    ts_ns: int
    orig_len: int
    data: bytes


@contextmanager
def open_decompressed(path: Path) -> Iterator[BinaryIO]:
    """The pcap bytes of a stored object, by content (zstd, gzip or plain)."""
    with open(path, "rb") as raw:
        magic = raw.read(4)
        raw.seek(0)
        if magic == _ZSTD_MAGIC:
            import zstandard

            with zstandard.ZstdDecompressor().stream_reader(raw, read_size=_BUF) as r:
                yield r
        elif magic[:2] == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw, mode="rb") as g:
                yield g  # type: ignore[misc]
        else:
            yield raw


def _read_exact(f: BinaryIO, n: int) -> bytes:
    """Read n bytes (fewer only at EOF); decompressing readers return short reads."""
    parts = []
    while n > 0:
        b = f.read(min(n, _BUF) if n > _BUF else n)
        if not b:
            break
        parts.append(b)
        n -= len(b)
    return b"".join(parts)


class RecordReader:
    """Header first, then records; a cut-off last record is counted, not fatal."""

    def __init__(self, f: BinaryIO, name: str = "") -> None:
        self._f = f
        self.name = name
        head = _read_exact(f, GLOBAL_HEADER_LEN)
        try:
            self.header: PcapHeader = parse_header(head)
        except NotPcapError as e:
            raise NotPcapError(f"{name}: {e}") from None
        self._rec = struct.Struct(self.header.endian + "IIII")
        self._scale = NS // self.header.ts_per_second
        self.truncated = False

    def __iter__(self) -> Iterator[Record]:
        f, rec, scale, per_s = self._f, self._rec, self._scale, self.header.ts_per_second
        buf = b""
        off = 0
        while True:
            if len(buf) - off < RECORD_HEADER_LEN:
                more = f.read(_BUF)
                if not more:
                    self.truncated = len(buf) > off
                    return
                buf = buf[off:] + more
                off = 0
                continue
            sec, frac, incl, orig = rec.unpack_from(buf, off)
            if incl > MAX_RECORD or frac >= per_s:
                self.truncated = True  # garbage: the rest is a cut-off tail
                return
            end = off + RECORD_HEADER_LEN + incl
            if end > len(buf):
                more = f.read(max(_BUF, end - len(buf)))
                if not more:
                    self.truncated = True
                    return
                buf = buf[off:] + more
                off = 0
                continue
            yield Record(sec * NS + frac * scale, orig, buf[off + RECORD_HEADER_LEN : end])
            off = end


class RecordWriter:
    """A classic little-endian pcap; nanosecond stamps only when asked for."""

    def __init__(self, f: BinaryIO, *, linktype: int, snaplen: int, nanos: bool) -> None:
        self._f = f
        self._div = 1 if nanos else 1000
        self._per_s = NS // self._div
        self._rec = struct.Struct("<IIII")
        magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
        f.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))
        self.packets = 0

    def write(self, r: Record) -> None:
        t = r.ts_ns // self._div
        sec, frac = divmod(t, self._per_s)
        self._f.write(self._rec.pack(sec, frac, len(r.data), r.orig_len))
        self._f.write(r.data)
        self.packets += 1


def window_filter(
    src: Path, dest: Path, since_ns: int, until_ns: int, *, nanos: bool
) -> tuple[PcapHeader, int, int | None, int | None, bool]:
    """Copy the records of src (any compression) with since <= ts < until into dest.

    Returns the source header, packets kept, first/last kept timestamps (ns)
    and whether the source ended in a cut-off record.
    """
    first: int | None = None
    last: int | None = None
    with open_decompressed(src) as f, open(dest, "wb") as out:
        reader = RecordReader(f, src.name)
        writer = RecordWriter(
            out, linktype=reader.header.linktype, snaplen=reader.header.snaplen, nanos=nanos
        )
        for r in reader:
            if since_ns <= r.ts_ns < until_ns:
                writer.write(r)
                if first is None:
                    first = r.ts_ns
                last = r.ts_ns
    return reader.header, writer.packets, first, last, reader.truncated


def iter_file(path: Path) -> Iterator[Record]:
    """Records of an uncompressed pcap, opened lazily and closed when exhausted."""
    with open(path, "rb") as f:
        yield from RecordReader(f, path.name)


def read_header_of(path: Path) -> PcapHeader:
    with open(path, "rb") as f:
        return RecordReader(f, path.name).header
