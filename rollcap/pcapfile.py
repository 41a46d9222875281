"""Reading classic pcap files: header checks, the one record rule and walker, repair
of a cut-off tail. Every reader of records in rollcap (offload, capture overlap,
fetch) applies record_ok(); the chunk-fed RecordWalker serves scan() and the
offload alike.

Only the libpcap format tcpdump -w writes is accepted (µs or ns, either byte
order). pcapng and anything else is "not a capture" to rollcap.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

from rollcap.timestamps import NS, PacketSpan

GLOBAL_HEADER_LEN = 24
RECORD_HEADER_LEN = 16
_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
# A record longer than this is corruption, not a packet (tcpdump's max snaplen
# is 262144; leave room for odd link types).
MAX_RECORD = 16 * 1024 * 1024


class NotPcapError(ValueError):
    """The file is not a classic pcap file; the message says why."""


@dataclass(frozen=True)
class PcapHeader:
    endian: str  # "<" or ">"
    ts_per_second: int  # 1e6 or 1e9
    version: tuple[int, int]
    snaplen: int
    linktype: int


@dataclass(frozen=True)
class PcapSummary(PacketSpan):
    header: PcapHeader
    packets: int
    first_ns: int | None  # ns since the epoch (exact for µs and ns files), None: no packet
    last_ns: int | None
    good_bytes: int  # length up to the end of the last whole record
    file_bytes: int

    @property
    def truncated(self) -> bool:
        return self.good_bytes < self.file_bytes


def parse_header(data: bytes) -> PcapHeader:
    if len(data) < GLOBAL_HEADER_LEN:
        raise NotPcapError(f"shorter than a pcap header ({len(data)} of 24 bytes)")
    magic = data[:4]
    if magic == _PCAPNG_MAGIC:
        raise NotPcapError("pcapng, not classic pcap")
    if magic not in _MAGICS:
        raise NotPcapError(f"not a pcap file (magic {magic.hex()})")
    endian, per_second = _MAGICS[magic]
    major, minor, _zone, _sigfigs, snaplen, linktype = struct.unpack_from(
        endian + "HHiIII", data, 4
    )
    if major != 2:
        raise NotPcapError(f"unsupported pcap version {major}.{minor}")
    return PcapHeader(endian, per_second, (major, minor), snaplen, linktype & 0x0FFFFFFF)


def read_header(f: BinaryIO) -> PcapHeader:
    return parse_header(f.read(GLOBAL_HEADER_LEN))


def record_ok(frac: int, incl: int, orig: int, per_second: int) -> bool:
    """The one rule for "this 16-byte header starts a record" (every walker uses
    it): a fraction below one second of the file's precision (per_second: < 1e6
    µs in a µs file, < 1e9 ns in a ns file), a body no longer than MAX_RECORD,
    and caplen <= len (libpcap never writes more than it saw). Anything else is
    garbage, and the rest of the file is treated as a cut-off tail."""
    return frac < per_second and incl <= MAX_RECORD and orig >= incl


class RecordWalker:
    """Packet count, first/last timestamps and the end of the last whole record,
    fed chunk by chunk (the bytes after the global header).

    The offload compresses each file in one read; this walks the record headers
    of the same chunks, so the file is not read a second time. The hot loop does
    the least Python per record (one unpack, the rule, an add): timestamps are
    decoded only for the first and the last records."""

    def __init__(self, header: PcapHeader) -> None:
        self.header = header
        self._rec = struct.Struct(header.endian + "IIII").unpack_from
        self._ts = struct.Struct(header.endian + "II").unpack
        self.packets = 0  # records whose header was seen (the last may lack its body)
        self._fed = 0  # bytes fed before the current chunk
        self._good = 0  # end of the last record whose header was seen, if whole
        self._pending = 0  # start of a record whose body has not all arrived
        self._skip = 0  # bytes of the current record body still to come
        self._carry = b""  # a record header split across chunks
        self._carry_at = 0  # where that record starts
        self._first: bytes | None = None  # 8 timestamp bytes
        self._last: bytes | None = None  # of the last record whose header was seen
        self._prev: bytes | None = None  # of the record before it
        self._broken = False

    def feed(self, data: bytes | memoryview, offset: int = 0) -> None:
        """Walk data[offset:], the next bytes of the file after the global header."""
        n = len(data)
        base = self._fed - offset
        self._fed += n - offset
        if self._broken:
            return
        off = offset
        if self._skip:
            if self._skip >= n - off:
                self._skip -= n - off
                if not self._skip:
                    self._good = base + n
                return
            off += self._skip
            self._skip = 0
            self._good = base + off
        if self._carry:
            need = RECORD_HEADER_LEN - len(self._carry)
            hdr = self._carry + bytes(data[off : off + need])
            if len(hdr) < RECORD_HEADER_LEN:
                self._carry = hdr
                return
            self._carry = b""
            off = self._record(hdr, self._carry_at, base, off + need, n)
            if off < 0:
                return
        unpack = self._rec
        per_s = self.header.ts_per_second
        start = off
        last = prev = -1
        count = 0
        while off + RECORD_HEADER_LEN <= n:
            _sec, frac, incl, orig = unpack(data, off)
            if not (frac < per_s and incl <= MAX_RECORD and orig >= incl):  # record_ok
                self._broken = True
                break
            prev = last
            last = off
            off += RECORD_HEADER_LEN + incl
            count += 1
        if count:
            self.packets += count
            if self._first is None:
                self._first = bytes(data[start : start + 8])
            self._prev = bytes(data[prev : prev + 8]) if prev >= 0 else self._last
            self._last = bytes(data[last : last + 8])
        if off > n:
            self._skip = off - n
            self._pending = base + last
            self._good = base + last
        else:
            self._good = base + off
            if off < n and not self._broken:
                self._carry = bytes(data[off:])
                self._carry_at = base + off

    def _record(self, hdr: bytes, rec_start: int, base: int, body_off: int, n: int) -> int:
        """Account a record whose header was split; return where the next one starts
        in the current chunk, or -1 if the chunk ends first."""
        _sec, frac, incl, orig = self._rec(hdr, 0)
        if not record_ok(frac, incl, orig, self.header.ts_per_second):
            self._broken = True
            return -1
        self.packets += 1
        if self._first is None:
            self._first = hdr[:8]
        self._prev = self._last
        self._last = hdr[:8]
        end: int = body_off + incl
        if end > n:
            self._skip = end - n
            self._pending = rec_start
            self._good = rec_start
            return -1
        self._good = base + end
        return end

    @property
    def good_bytes(self) -> int:
        """Bytes after the global header up to the end of the last whole record."""
        return self._pending if self._skip else self._good

    def finish(self) -> tuple[int, int | None, int | None]:
        """(packets, first_ns, last_ns) once the whole file was fed: epoch ns,
        exact for µs and ns files. A last record cut off in its header or body
        is not counted."""
        packets, last = self.packets, self._last
        if self._skip:  # the last record's body never arrived
            packets -= 1
            last = self._prev
        if not packets:
            return 0, None, None
        return packets, self._decode(self._first), self._decode(last)

    def _decode(self, ts: bytes | None) -> int | None:
        if ts is None:
            return None
        sec, frac = self._ts(ts)
        return int(sec * NS + frac * (NS // self.header.ts_per_second))


def _reader(src: str | os.PathLike[str] | int) -> io.BufferedReader:
    """A file object from the start of src: a path, or an open fd (left open)."""
    if isinstance(src, int):
        f = os.fdopen(src, "rb", closefd=False)
        f.seek(0)
        return f
    return open(src, "rb")


def scan(src: str | os.PathLike[str] | int, chunk: int = 4 * 1024 * 1024) -> PcapSummary:
    """Walk every record header; never loads the file whole. src: a path or an fd."""
    with _reader(src) as f:
        size = os.fstat(f.fileno()).st_size
        header = read_header(f)
        walker = RecordWalker(header)
        buf = bytearray(chunk)
        view = memoryview(buf)
        while n := f.readinto(buf):
            walker.feed(view[:n])
    packets, first, last = walker.finish()
    return PcapSummary(
        header=header,
        packets=packets,
        first_ns=first,
        last_ns=last,
        good_bytes=GLOBAL_HEADER_LEN + walker.good_bytes,
        file_bytes=size,
    )


def repair(fd: int) -> tuple[PcapSummary, int]:
    """Truncate a cut-off last record of the file open (read-write) on fd; return
    the summary and the bytes removed. By fd: never a path that could be swapped."""
    summary = scan(fd)
    removed = summary.file_bytes - summary.good_bytes
    if removed:
        os.ftruncate(fd, summary.good_bytes)
        summary = PcapSummary(
            summary.header,
            summary.packets,
            summary.first_ns,
            summary.last_ns,
            summary.good_bytes,
            summary.good_bytes,
        )
    return summary, removed
