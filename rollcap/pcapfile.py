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
import re
import struct
import sys
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, BinaryIO

from rollcap.timestamps import NS, PacketSpan

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

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


@dataclass(frozen=True)
class Records:
    """Where the records of one fed chunk are, for a consumer of the same
    chunks (the flow summariser), so that the file is walked once."""

    head: int  # where the chunk's first own record starts (the bytes before it end
    # a record begun in an earlier chunk); -1: the whole chunk is inside that record
    whole: npt.NDArray[np.int64]  # starts of the records that are whole in the chunk
    tail: int  # start of the record the chunk's end cuts (header or body), -1: none
    broken: bool  # a record failed record_ok() here: nothing after it is a record




@cache
def _numpy() -> Any:
    """numpy, imported at the first walk: capture's daemon imports this module for
    its hand-off checks and stays without numpy (memory, start-up) unless it walks."""
    import numpy

    return numpy


@cache
def _none() -> npt.NDArray[np.int64]:
    return _numpy().zeros(0, dtype=_numpy().int64)  # type: ignore[no-any-return]


@cache
def _inside() -> Records:
    return Records(-1, _none(), -1, False)

# below this many records a chunk is checked in Python (numpy's fixed cost per call)
_VECTOR_MIN = 32
# the walk reads caplen through 4-byte views of the chunk when its byte order is ours
_NATIVE = "<" if sys.byteorder == "little" else ">"


class RecordWalker:
    """Packet count, first/last timestamps and the end of the last whole record,
    fed chunk by chunk (the bytes after the global header).

    The offload compresses each file in one read; this walks the record headers
    of the same chunks, so the file is not read a second time, and feed() says
    where the records are (Records) for the flow summariser of the same read.
    The hot loop does the least Python per record (read caplen, add): the
    record rule is then checked on all of a chunk's records at once (numpy),
    and timestamps are decoded only for the first and the last records."""

    def __init__(self, header: PcapHeader) -> None:
        self.header = header
        self._rec = struct.Struct(header.endian + "IIII").unpack_from
        self._u32 = struct.Struct(header.endian + "I").unpack_from
        self._ts = struct.Struct(header.endian + "II").unpack
        self._dtype = _numpy().dtype(header.endian + "u4")
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

    @property
    def broken(self) -> bool:
        return self._broken

    def feed(self, data: bytes | memoryview, offset: int = 0) -> Records:
        """Walk data[offset:], the next bytes of the file after the global header;
        return where its records are (positions in data)."""
        n = len(data)
        base = self._fed - offset
        self._fed += n - offset
        if self._broken:
            return Records(-1, _none(), -1, True)
        off = offset
        if self._skip:
            if self._skip >= n - off:
                self._skip -= n - off
                if not self._skip:
                    self._good = base + n
                    return Records(n, _none(), -1, False)
                return _inside()
            off += self._skip
            self._skip = 0
            self._good = base + off
        if self._carry:
            need = RECORD_HEADER_LEN - len(self._carry)
            hdr = self._carry + bytes(data[off : off + need])
            if len(hdr) < RECORD_HEADER_LEN:
                self._carry = hdr
                return _inside()
            self._carry = b""
            off = self._record(hdr, self._carry_at, base, off + need, n)
            if off < 0:
                return Records(-1, _none(), -1, self._broken)
        head = off
        starts, off = self._walk(data, off)
        count = len(starts)
        if count:
            last = int(starts[-1])
            self.packets += count
            if self._first is None:
                self._first = bytes(data[head : head + 8])
            self._prev = self._last if count < 2 else bytes(data[starts[-2] : starts[-2] + 8])
            self._last = bytes(data[last : last + 8])
        tail = -1
        if self._broken:
            self._good = base + off
        elif off > n:
            self._skip = off - n
            self._pending = self._good = base + last
            tail, starts = last, starts[:-1]
        else:
            self._good = base + off
            if off < n:
                self._carry = bytes(data[off:])
                self._carry_at = base + off
                tail = off
        return Records(head, starts, tail, self._broken)

    def _walk(self, data: bytes | memoryview, off: int) -> tuple[npt.NDArray[np.int64], int]:
        """The starts of the records from off whose header is in data and passes
        record_ok(), and where the walk stopped: the end of the last one, or the
        start of the first that fails the rule (then the walker is broken)."""
        n = len(data)
        found: list[int] = []
        add = found.append
        q, end = off + 8, n - 8  # q: where a record's caplen is; its header fits while q <= end
        if self.header.endian == _NATIVE:
            mv = memoryview(data).cast("B")
            views = tuple(mv[k : k + (n - k) // 4 * 4].cast("I") for k in range(4))
            while q <= end:
                add(q)
                q += 16 + views[q & 3][q >> 2]
        else:
            u32 = self._u32
            while q <= end:
                add(q)
                q += 16 + u32(data, q)[0]
        off = q - 8
        if not found:
            return _none(), off
        np = _numpy()
        per_s = self.header.ts_per_second
        bad = -1
        if len(found) < _VECTOR_MIN:
            unpack = self._rec
            for i, at in enumerate(found):
                _sec, frac, incl, orig = unpack(data, at - 8)
                if not (frac < per_s and incl <= MAX_RECORD and orig >= incl):  # record_ok
                    bad = i
                    break
            starts = np.array(found, dtype=np.int64) - 8
        else:
            starts = np.array(found, dtype=np.int64) - 8
            buf = np.frombuffer(data, dtype=np.uint8)
            windows = np.lib.stride_tricks.sliding_window_view(buf, RECORD_HEADER_LEN)
            hdr = windows[starts].view(self._dtype)
            frac, incl, orig = hdr[:, 1], hdr[:, 2], hdr[:, 3]
            ok = (frac < per_s) & (incl <= MAX_RECORD) & (orig >= incl)  # record_ok
            if not ok.all():
                bad = int(np.argmin(ok))
        if bad >= 0:
            self._broken = True
            off = int(starts[bad])
            starts = starts[:bad]
        return starts, off

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


# -- the end of the last whole record, from the tail alone --------------------------
#
# A finished tcpdump file is complete but for, at most, a cut-off last record
# (a tcpdump killed before its stdio buffer was written out). Finding where the
# last whole record ends needs a record boundary near the end, and pcap has no
# sync marker: walking from the header reads every record header of the file.
# tail_end() reads only the last TAIL_RECORDS records' worth instead:
#
# 1. Every record libpcap writes has 1 <= caplen <= the file's snaplen, so any
#    stretch of 16 + snaplen bytes holds the start of a true record, and the
#    window of the last tail_window() bytes holds at least two.
# 2. Every offset in the window where a 16-byte header passes record_ok() (with
#    that caplen bound, and a time stamp within SEC_SLACK of the first record's
#    or of the file's mtime, i.e. of when tcpdump wrote it: the assumption is
#    that the clock did not step by more than that within one file) is a
#    candidate; the true starts are among them. The time bound is what tells
#    a record header from the same header read 4 bytes on (frac as seconds:
#    January 1970), which passes record_ok() whenever caplen == len. From
#    each, follow the chain of records to where it stops: exactly at the end of
#    the file, at a record (or header) the file cuts off, or at a header that
#    fails the rule.
# 3. A chain from a true start is the true chain from there on, so it stops
#    where the full walk stops. If every candidate's chain stops at the same
#    place and none at a failing header, that place is the answer. Any
#    disagreement (packet payload that looks like records, a corrupt file) gives
#    None, and the caller walks the whole file as before: never a wrong cut.
#
# The prefilter is a regular expression over the window (the two fields whose
# high bytes must be small), so Python looks at few offsets.

TAIL_RECORDS = 2
SEC_SLACK = 86_400


def tail_window(header: PcapHeader) -> int:
    """Bytes at the end of a file that tail_end() reads."""
    return TAIL_RECORDS * (RECORD_HEADER_LEN + _caplen_bound(header)) + RECORD_HEADER_LEN


def _caplen_bound(header: PcapHeader) -> int:
    snap = header.snaplen
    return snap if 0 < snap <= MAX_RECORD else MAX_RECORD


def _le_at_most(limit: int) -> list[bytes]:
    """Byte classes (least significant first) that every 4-byte value <= limit
    matches: only the two high bytes are constrained (a necessary condition)."""
    top, second = limit >> 24, (limit >> 16) & 0xFF
    hi = b"[\\x00-\\x%02x]" % top
    if top:
        return [b".", b".", b".", hi]
    return [b".", b".", b"[\\x00-\\x%02x]" % second, b"\\x00"]


def _candidate_re(header: PcapHeader, secs: tuple[int, int]) -> re.Pattern[bytes]:
    frac = _le_at_most(header.ts_per_second - 1)
    incl = _le_at_most(_caplen_bound(header))
    sec = [b"."] * 3 + [b"[\\x%02x-\\x%02x]" % (secs[0] >> 24, secs[1] >> 24)]
    fields = [sec, frac, incl, [b"."] * 4]  # sec, frac, caplen, len
    if header.endian == ">":
        fields = [list(reversed(f)) for f in fields]
    return re.compile(b"(?=" + b"".join(b for f in fields for b in f) + b")", re.DOTALL)


def tail_end(fd: int, size: int, header: PcapHeader, secs: tuple[int, int]) -> int | None:
    """Where the last whole record of the file open on fd ends (size: its size),
    proved from the last tail_window() bytes; None when the tail does not prove
    it, or the file is small enough that the window would reach its header:
    then walk it whole (scan). secs: the range of seconds every record's time
    stamp is in (see above)."""
    lo, hi = max(0, secs[0]), min(secs[1], 2**32 - 1)
    if lo > hi:
        return None
    window = tail_window(header)
    start = size - window
    if start <= GLOBAL_HEADER_LEN:
        return None
    data = os.pread(fd, window, start)
    if len(data) != window:
        return None  # changed under us: let the full walk decide
    unpack = struct.Struct(header.endian + "IIII").unpack_from
    per_s = header.ts_per_second
    bound = _caplen_bound(header)
    ends: dict[int, int | None] = {}  # window offset -> where its chain stops (None: broken)

    def chain_end(off: int) -> int | None:
        seen = []
        end: int | None
        while True:
            if off in ends:
                end = ends[off]
                break
            if off == window:
                end = size  # complete
                break
            if off + RECORD_HEADER_LEN > window:
                end = start + off  # a cut-off header
                break
            sec, frac, incl, orig = unpack(data, off)
            if not (frac < per_s and 1 <= incl <= bound and orig >= incl and lo <= sec <= hi):
                end = None
                break
            seen.append(off)
            nxt = off + RECORD_HEADER_LEN + incl
            if nxt > window:
                end = start + off  # a cut-off body
                break
            off = nxt
        for o in seen:
            ends[o] = end
        return end

    answer: int | None = None
    for m in _candidate_re(header, (lo, hi)).finditer(data):
        off = m.start()
        sec, frac, incl, orig = unpack(data, off)
        if not (frac < per_s and 1 <= incl <= bound and orig >= incl and lo <= sec <= hi):
            continue  # the prefilter is only necessary, not sufficient
        end = chain_end(off)
        if end is None or (answer is not None and end != answer):
            return None
        answer = end
    return answer


def head_record(fd: int, header: PcapHeader) -> int | None:
    """The time stamp (epoch ns) of the file's first record, None when its header
    is not a whole valid one."""
    return stamp_at(fd, GLOBAL_HEADER_LEN, header)


@dataclass(frozen=True)
class Repaired:
    """A finished file after repair_finished()."""

    packets: int | None  # None: not counted (the tail proved the end; at least one)
    first_ns: int | None
    file_bytes: int
    removed: int  # bytes of a cut-off last record, truncated

    @property
    def first_ts(self) -> float | None:
        return None if self.first_ns is None else self.first_ns / NS

    @property
    def empty(self) -> bool:
        return self.packets == 0


def repair_finished(fd: int) -> Repaired:
    """repair() for a file its writer has finished, reading its tail and first
    record only when tail_end() proves the end (then the packets are not
    counted: the offload counts them in its one read); else the full walk."""
    st = os.fstat(fd)
    size = st.st_size
    header = parse_header(os.pread(fd, GLOBAL_HEADER_LEN, 0))
    first = head_record(fd, header)
    end = None
    if first is not None:
        first_s, written = first // NS, int(st.st_mtime)
        secs = (min(first_s, written) - SEC_SLACK, max(first_s, written) + SEC_SLACK)
        end = tail_end(fd, size, header, secs)
    if end is None or first is None:
        summary, removed = repair(fd)
        return Repaired(summary.packets, summary.first_ns, summary.file_bytes, removed)
    if end < size:
        os.ftruncate(fd, end)
    return Repaired(None, first, end, size - end)


# -- a record start in the middle of a file, from a few chains of headers ---------
#
# The overlap strip needs the records of the last second or so of a big file,
# and pcap has no sync marker. record_start_near() proves a record start near
# an offset `at` from the bytes after it alone:
#
# 1. Some record starts in every stretch of RECORD_HEADER_LEN + caplen bound
#    bytes of the records (a record is never longer), so the first `span`
#    bytes from `at` hold a true record start t, provided the file goes on
#    past them (the caller reads a region several spans long, all inside the
#    file).
# 2. Every offset of that span whose 16 bytes pass the rule of tail_end()
#    (record_ok, 1 <= caplen <= bound, the time stamp in secs) is a candidate;
#    t is one. From each, follow the chain of records to the region's end. A
#    chain that meets a failing header is not t's; t's chain is the true chain
#    and reaches the end.
# 3. Chains that meet go on together, so every chain that reaches the end
#    passes through the point where the last of them joined t's: an offset on
#    every surviving chain is on t's, a true record start. Two surviving
#    chains that never meet give None: never a guess.
#
# A wrong answer would only cost the strip some pairs (a record pairs only
# with a byte-identical one of the same kernel stamp), never a packet; the
# proof is what keeps it from leaving duplicates.

START_REGION_SPANS = 4


def record_start_near(fd: int, at: int, header: PcapHeader, secs: tuple[int, int]) -> int | None:
    """A record start proved from the bytes at at.. (above); None when the region
    is not all inside the file or the chains do not prove one."""
    lo, hi = max(0, secs[0]), min(secs[1], 2**32 - 1)
    bound = _caplen_bound(header)
    span = RECORD_HEADER_LEN + bound
    want = START_REGION_SPANS * span
    if at < GLOBAL_HEADER_LEN or lo > hi:
        return None
    data = os.pread(fd, want, at)
    if len(data) != want:
        return None  # the file ends inside the region: step 1 does not hold
    unpack = struct.Struct(header.endian + "IIII").unpack_from
    per_s = header.ts_per_second

    def ok(off: int) -> tuple[bool, int]:
        sec, frac, incl, orig = unpack(data, off)
        good = frac < per_s and 1 <= incl <= bound and orig >= incl and lo <= sec <= hi
        return good, incl

    seen: dict[int, tuple[int, int]] = {}  # offset -> (chain, index in it)
    chains: list[list[int]] = []
    fates: list[tuple[int, int] | None] = []  # None: failed; (-1, 0): reached the end;
    # else (chain, index) where it joined an earlier chain
    for m in _candidate_re(header, (lo, hi)).finditer(data, 0, span + RECORD_HEADER_LEN - 1):
        off = m.start()
        if off >= span or off in seen or not ok(off)[0]:
            continue
        cid, nodes = len(chains), list[int]()
        fate: tuple[int, int] | None
        while True:
            if off in seen:
                fate = seen[off]
                break
            if off + RECORD_HEADER_LEN > want:
                seen[off] = (cid, len(nodes))
                nodes.append(off)
                fate = (-1, 0)
                break
            good, incl = ok(off)
            if not good:
                fate = None
                break
            seen[off] = (cid, len(nodes))
            nodes.append(off)
            off += RECORD_HEADER_LEN + incl
        chains.append(nodes)
        fates.append(fate)
    root: int | None = None  # the one surviving chain that reached the end itself
    joins: list[int | None] = []  # per chain: index in root's chain where it joins, None: failed
    for cid, fate in enumerate(fates):
        if fate is None:
            joins.append(None)
        elif fate == (-1, 0):
            if root is not None:
                return None  # two ends: the bytes do not decide
            root = cid
            joins.append(0)
        else:
            other, idx = fate
            j = joins[other]
            joins.append(None if j is None else idx if other == root else j)
    if root is None:
        return None
    return at + chains[root][max(j for j in joins if j is not None)]


def stamp_at(fd: int, off: int, header: PcapHeader) -> int | None:
    """The time stamp (epoch ns) of the record at off, None when its header is not
    a whole valid one."""
    raw = os.pread(fd, RECORD_HEADER_LEN, off)
    if len(raw) < RECORD_HEADER_LEN:
        return None
    sec, frac, incl, orig = struct.unpack(header.endian + "IIII", raw)
    if not record_ok(frac, incl, orig, header.ts_per_second):
        return None
    return int(sec * NS + frac * (NS // header.ts_per_second))


def stamp_bounds(fd: int, header: PcapHeader) -> tuple[int, int] | None:
    """The seconds every record's stamp of a tcpdump file is in (tail_end's
    assumption: within SEC_SLACK of its first record or its mtime); None when
    the first record is not whole."""
    first = stamp_at(fd, GLOBAL_HEADER_LEN, header)
    if first is None:
        return None
    first_s, written = first // NS, int(os.fstat(fd).st_mtime)
    return min(first_s, written) - SEC_SLACK, max(first_s, written) + SEC_SLACK


def start_before(fd: int, header: PcapHeader, before_ns: int) -> int:
    """A proved record start whose record is stamped before before_ns, found from
    the end backwards in doubling steps: a walk from it reads only about the
    records since before_ns. GLOBAL_HEADER_LEN (the first record) when none is
    proved. Records reach a file in about time order: what a clock step puts
    before the answer is not seen, which costs the overlap strip pairs, never
    a packet."""
    secs = stamp_bounds(fd, header)
    if secs is None:
        return GLOBAL_HEADER_LEN
    size = os.fstat(fd).st_size
    back = START_REGION_SPANS * (RECORD_HEADER_LEN + _caplen_bound(header))
    while size - back > GLOBAL_HEADER_LEN:
        off = record_start_near(fd, size - back, header, secs)
        if off is not None and (ns := stamp_at(fd, off, header)) is not None and ns < before_ns:
            return off
        back *= 2
    return GLOBAL_HEADER_LEN
