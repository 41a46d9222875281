"""Packet count and first/last timestamps of a pcap, fed chunk by chunk.

The compressor reads each file once; this walks the record headers of the same
chunks, so the file is not read a second time. The hot loop does the least
Python per record (one 8-byte unpack, a check and an add): timestamps are decoded only
for the first and the last records. Same results as rollcap.pcapfile.scan().
"""

from __future__ import annotations

import struct

from rollcap.pcapfile import MAX_RECORD, RECORD_HEADER_LEN, PcapHeader


class RecordWalker:
    def __init__(self, header: PcapHeader) -> None:
        self.header = header
        self._lens = struct.Struct(header.endian + "II").unpack_from  # caplen, len
        self._ts = struct.Struct(header.endian + "II").unpack
        self.packets = 0  # records whose header was seen (the last may lack its body)
        self._skip = 0  # bytes of the current record body still to come
        self._carry = b""  # a record header split across chunks
        self._first: bytes | None = None  # 8 timestamp bytes
        self._last: bytes | None = None  # of the last record whose header was seen
        self._prev: bytes | None = None  # of the record before it
        self._broken = False

    def feed(self, data: bytes | memoryview, offset: int = 0) -> None:
        """Walk data[offset:], the next bytes of the file after the global header."""
        if self._broken:
            return
        n = len(data)
        off = offset
        if self._skip:
            if self._skip >= n - off:
                self._skip -= n - off
                return
            off += self._skip
            self._skip = 0
        if self._carry:
            need = RECORD_HEADER_LEN - len(self._carry)
            hdr = self._carry + bytes(data[off : off + need])
            if len(hdr) < RECORD_HEADER_LEN:
                self._carry = hdr
                return
            self._carry = b""
            off = self._record(hdr, off + need, n)
            if off < 0:
                return
        unpack = self._lens
        start = off
        last = prev = -1
        count = 0
        while off + RECORD_HEADER_LEN <= n:
            incl, orig = unpack(data, off + 8)
            # garbage (as pcapfile.scan sees it): the rest is a cut-off tail
            if incl > MAX_RECORD or orig < incl:
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
        if self._broken:
            return
        if off > n:
            self._skip = off - n
        elif off < n:
            self._carry = bytes(data[off:])

    def _record(self, hdr: bytes, body_off: int, n: int) -> int:
        """Account a record whose header was split; return where the next one starts
        in the current chunk, or -1 if the chunk ends first."""
        incl, orig = self._lens(hdr, 8)
        if incl > MAX_RECORD or orig < incl:
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
            return -1
        return end

    def finish(self) -> tuple[int, float | None, float | None]:
        """(packets, first_ts, last_ts) once the whole file was fed. A last record
        cut off in its header or body is not counted, as in pcapfile.scan()."""
        packets, last = self.packets, self._last
        if self._skip:  # the last record's body never arrived
            packets -= 1
            last = self._prev
        if not packets:
            return 0, None, None
        return packets, self._decode(self._first), self._decode(last)

    def _decode(self, ts: bytes | None) -> float | None:
        if ts is None:
            return None
        sec, frac = self._ts(ts)
        return float(sec + frac / self.header.ts_per_second)
