"""Streaming pcap records: decompress, walk, window-filter and write them.

Never holds more than one read buffer per open file, so memory does not grow
with the amount fetched.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import stat
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


@dataclass
class Window:
    """What scan_window kept: packets, the first/last kept timestamps (file
    order) and the lowest/highest (they differ when the file is not sorted)."""

    packets: int = 0
    first: int | None = None
    last: int | None = None
    low: int | None = None
    high: int | None = None


def scan_window(reader: RecordReader, out: BinaryIO | None, since_ns: int, until_ns: int
                ) -> Window:  # fmt: skip
    """Copy the records with since <= ts < until from reader to out (None: only
    count them), unchanged. The hot loop does the least Python per record (one
    unpack, the record rule, the window test): the kept records are written in
    runs, one slice of the read buffer each, not one write per record."""
    h = reader.header
    unpack_from = struct.Struct(h.endian + "IIII").unpack_from
    scale = NS // h.ts_per_second
    per_s = h.ts_per_second
    f = reader._f
    w = Window()
    n = 0
    first = last = low = high = -1
    buf = b""
    off = 0
    need = 0  # bytes still missing of the record at off
    while True:
        more = f.read(max(_BUF, need))
        if not more:
            reader.truncated = len(buf) > off
            break
        buf = buf[off:] + more
        view = memoryview(buf)
        size = len(buf)
        off = 0
        run = -1  # start of the pending run of kept records
        bad = False
        need = 0
        while off + RECORD_HEADER_LEN <= size:
            sec, frac, incl, orig = unpack_from(buf, off)
            if frac >= per_s or incl > MAX_RECORD or orig < incl:  # pcapfile.record_ok
                bad = True  # garbage: the rest is a cut-off tail
                break
            end = off + RECORD_HEADER_LEN + incl
            if end > size:
                need = end - size
                break
            ts = sec * NS + frac * scale
            if since_ns <= ts < until_ns:
                if run < 0:
                    run = off
                    if n == 0:
                        first = low = high = ts
                if ts > high:
                    high = ts
                elif ts < low:
                    low = ts
                last = ts
                n += 1
            elif run >= 0:
                if out is not None:
                    out.write(view[run:off])
                run = -1
            off = end
        if run >= 0 and out is not None:
            out.write(view[run:off])
        view.release()
        if bad:
            reader.truncated = True
            break
    if n:
        w.packets, w.first, w.last, w.low, w.high = n, first, last, low, high
    return w


@contextmanager
def open_records(src: Path, max_bytes: int | None = None) -> Iterator[RecordReader]:
    """A RecordReader over the pcap bytes of src (any compression). TooLarge when
    src decompresses to more than max_bytes (its recorded pcap size): a bucket
    object is untrusted."""
    with open_decompressed(src) as stream:
        f: BinaryIO = stream if max_bytes is None else _Bounded(stream, max_bytes)  # type: ignore[assignment]
        yield RecordReader(f, src.name)


def window_copy(src: Path, dest: Path, since_ns: int, until_ns: int,
                max_bytes: int | None = None) -> tuple[PcapHeader, Window, bool]:  # fmt: skip
    """Copy the records of src (any compression) with since <= ts < until into dest,
    unchanged (same header, same record format); TooLarge as open_records.

    Returns the source header, what was kept, and whether the source ended in
    a cut-off record.
    """
    with open_records(src, max_bytes) as reader, open(dest, "wb") as out:
        out.write(reader.raw_header)
        w = scan_window(reader, out, since_ns, until_ns)
    return reader.header, w, reader.truncated


def copy_records(src: Path, out: BinaryIO, nanos: bool) -> bool:
    """Append the records of an uncompressed pcap to out in bulk when they are
    already in the output format (little-endian, nanos or µs); False (nothing
    written) when they would need repacking."""
    with open(src, "rb") as f:
        h = parse_header(_read_exact(f, GLOBAL_HEADER_LEN))
        if h.endian != "<" or (h.ts_per_second == NS) != nanos:
            return False
        if not _copy_in_kernel(f, out):
            while chunk := f.read(_BUF):
                out.write(chunk)
    return True


def _copy_in_kernel(src: BinaryIO, out: BinaryIO) -> bool:
    """The rest of src appended to out by copy_file_range(2), when out is a
    regular file: the bytes never pass through Python (about 4x faster than
    read/write here). False, nothing copied, when it cannot be used."""
    try:
        fd = out.fileno()
    except (AttributeError, io.UnsupportedOperation):
        return False  # a wrapper (the counted stdout)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        return False
    out.flush()  # what out buffered goes first
    start = pos = src.tell()
    end = os.fstat(src.fileno()).st_size
    while pos < end:
        try:
            n = os.copy_file_range(src.fileno(), fd, end - pos, pos)
        except OSError as e:
            if pos == start and e.errno in (errno.EXDEV, errno.EINVAL, errno.ENOSYS,
                                            errno.EOPNOTSUPP):  # fmt: skip
                return False
            raise
        if n == 0:
            break
        pos += n
    src.seek(pos)
    return True


def iter_file(path: Path, nanos: bool) -> Iterator[Record]:
    """Records of an uncompressed pcap in the output format; the file is opened
    when iteration starts and closed when it ends."""
    with open(path, "rb") as f:
        yield from RecordReader(f, path.name).records(nanos)
