"""Reading classic pcap files: header checks, record walk, repair of a cut-off tail.

Only the libpcap format tcpdump -w writes is accepted (µs or ns, either byte
order). pcapng and anything else is "not a capture" to rollcap.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

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
class PcapSummary:
    header: PcapHeader
    packets: int
    first_ts: float | None  # seconds since the epoch, None when no packet
    last_ts: float | None
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


def _reader(src: str | os.PathLike[str] | int) -> BinaryIO:
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
        rec = struct.Struct(header.endian + "IIII")
        per_s = header.ts_per_second
        packets = 0
        first: tuple[int, int] | None = None
        last: tuple[int, int] | None = None
        pos = GLOBAL_HEADER_LEN  # file offset of buf[0]
        buf = b""
        off = 0
        while True:
            if len(buf) - off < RECORD_HEADER_LEN:
                more = f.read(chunk)
                if not more:
                    break
                pos += off
                buf = buf[off:] + more
                off = 0
                continue
            sec, frac, incl, orig = rec.unpack_from(buf, off)
            # libpcap never writes caplen > len; anything else is not a record
            if incl > MAX_RECORD or frac >= per_s or orig < incl:
                break  # garbage: treat the rest as a cut-off tail
            end = off + RECORD_HEADER_LEN + incl
            if end > len(buf):
                more = f.read(max(chunk, end - len(buf)))
                if not more:
                    break
                pos += off
                buf = buf[off:] + more
                off = 0
                continue
            if first is None:
                first = (sec, frac)
            last = (sec, frac)
            packets += 1
            off = end
        good = pos + off
    return PcapSummary(
        header=header,
        packets=packets,
        first_ts=first[0] + first[1] / per_s if first else None,
        last_ts=last[0] + last[1] / per_s if last else None,
        good_bytes=good,
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
            summary.first_ts,
            summary.last_ts,
            summary.good_bytes,
            summary.good_bytes,
        )
    return summary, removed
