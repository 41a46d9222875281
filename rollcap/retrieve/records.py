"""Streaming pcap records: decompress, walk, window-filter and write them.

Never holds more than one read buffer per open file, so memory does not grow
with the amount fetched.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from rollcap.pcapfile import (
    GLOBAL_HEADER_LEN,
    RECORD_HEADER_LEN,
    NotPcapError,
    PcapHeader,
    parse_header,
    record_ok,
)
from rollcap.timestamps import NS

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"
_BUF = 1024 * 1024


# One record: its timestamp in ns and its raw bytes (16-byte header + frame),
# already in the byte order and precision of the file being written, so the
# common case (tcpdump's little-endian µs files) is copied without repacking.
Record = tuple[int, bytes]


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
        b = f.read(min(n, _BUF))
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
        self.raw_header = _read_exact(f, GLOBAL_HEADER_LEN)
        try:
            self.header: PcapHeader = parse_header(self.raw_header)
        except NotPcapError as e:
            raise NotPcapError(f"{name}: {e}") from None
        self.truncated = False

    def records(self, nanos: bool | None = None) -> Iterator[Record]:
        """(ts_ns, raw record) in the source's own format, or repacked as
        little-endian with µs (nanos=False) / ns (nanos=True) stamps."""
        h = self.header
        rec = struct.Struct(h.endian + "IIII")
        scale = NS // h.ts_per_second
        per_s = h.ts_per_second
        keep = nanos is None or (h.endian == "<" and (per_s == NS) == nanos)
        out = struct.Struct("<IIII")
        out_div = 1 if nanos else 1000
        out_per_s = NS // out_div
        f = self._f
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
            if not record_ok(frac, incl, orig, per_s):
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
            ts = sec * NS + frac * scale
            if keep:
                yield ts, buf[off:end]
            else:
                osec, ofrac = divmod(ts // out_div, out_per_s)
                yield ts, out.pack(osec, ofrac, incl, orig) + buf[off + RECORD_HEADER_LEN : end]
            off = end


def file_header(*, linktype: int, snaplen: int, nanos: bool) -> bytes:
    """A little-endian classic pcap header."""
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    return struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)


class TooLarge(ValueError):
    """A stored object decompresses to more than it may (a decompression bomb)."""


class _Bounded:
    """A reader that refuses to yield more than limit bytes."""

    def __init__(self, f: BinaryIO, limit: int) -> None:
        self._f, self._left, self._limit = f, limit, limit

    def read(self, n: int = -1) -> bytes:
        b = self._f.read(n if n >= 0 else self._left + 1)
        self._left -= len(b)
        if self._left < 0:
            raise TooLarge(f"decompresses to more than {self._limit} bytes")
        return b


def window_filter(
    src: Path, dest: Path, since_ns: int, until_ns: int, max_bytes: int | None = None
) -> tuple[PcapHeader, int, int | None, int | None, bool]:
    """Copy the records of src (any compression) with since <= ts < until into dest,
    unchanged (same header, same record format). TooLarge when src decompresses to
    more than max_bytes (its recorded pcap size): a bucket object is untrusted.

    Returns the source header, packets kept, first/last kept timestamps (ns)
    and whether the source ended in a cut-off record.
    """
    first: int | None = None
    last: int | None = None
    n = 0
    with open_decompressed(src) as stream, open(dest, "wb") as out:
        f: BinaryIO = stream if max_bytes is None else _Bounded(stream, max_bytes)  # type: ignore[assignment]
        reader = RecordReader(f, src.name)
        out.write(reader.raw_header)
        write = out.write
        for ts, raw in reader.records():
            if since_ns <= ts < until_ns:
                write(raw)
                if first is None:
                    first = ts
                last = ts
                n += 1
    return reader.header, n, first, last, reader.truncated


def iter_file(path: Path, nanos: bool) -> Iterator[Record]:
    """Records of an uncompressed pcap in the output format; the file is opened
    when iteration starts and closed when it ends."""
    with open(path, "rb") as f:
        yield from RecordReader(f, path.name).records(nanos)
