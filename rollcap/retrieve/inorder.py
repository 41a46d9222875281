"""Appending pieces to the output file in time order while later ones download.

One host's captures follow each other in time, so their pieces are usually
just concatenated (merge.write_ordered). Waiting for every download before
writing the first byte wastes the time the copies take; instead, as soon as
the pieces before it are done, each piece is appended to the output file
(copy_file_range, in the kernel). Piece files stay until the end, so nothing
is lost when this turns out wrong: ``complete()`` says whether the appended
pieces are exactly what write_ordered would have copied (each after the one
before in time, none overlapping, all in the output's format); if not, the
caller truncates the file and merges as usual. The pieces, the output and the
downloads are what disk_need counts, so keeping the pieces adds nothing to it.

Only for a file output (a pipe cannot take back what it was given) and
classic pcap.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from rollcap.pcapfile import GLOBAL_HEADER_LEN, PcapHeader
from rollcap.retrieve.merge import Part
from rollcap.timestamps import NS


class InOrder:
    """``order``: the capture indexes in the order their pieces should follow
    (by recorded start). ``done(idx, header, part)`` from any thread."""

    def __init__(self, path: Path, order: list[int]) -> None:
        self.path = path
        self._order = order
        self._pos = 0
        self._ready: dict[int, tuple[PcapHeader | None, Part | None]] = {}
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.pwrite(self._fd, b"\0" * GLOBAL_HEADER_LEN, 0)  # the real one at the end
        self._offset = GLOBAL_HEADER_LEN
        self.ok = True
        self.appended: list[Part] = []
        self._format: tuple[int, bool] | None = None  # (linktype, nanos) of what was appended
        self._high = -1

    def done(self, idx: int, header: PcapHeader | None, part: Part | None) -> None:
        """Piece idx is finished (header None: refused or gone; part None: empty)."""
        with self._lock:
            self._ready[idx] = (header, part)
            order = self._order
            while self.ok and self._pos < len(order) and order[self._pos] in self._ready:
                h, p = self._ready.pop(order[self._pos])
                self._pos += 1
                if h is not None and p is not None:
                    self._append(h, p)

    def _append(self, h: PcapHeader, p: Part) -> None:
        fmt = (h.linktype, h.ts_per_second == NS)
        low, high = p.span
        if h.endian != "<" or low <= self._high or self._format not in (None, fmt):
            self.ok = False  # overlaps, or needs repacking: merge as usual
            return
        with open(p.path, "rb") as f:
            hdr = f.read(GLOBAL_HEADER_LEN)  # the piece's own: tcpdump's output for --filter
            if len(hdr) != GLOBAL_HEADER_LEN or hdr[:4] not in (b"\xd4\xc3\xb2\xa1",
                                                                  b"\x4d\x3c\xb2\xa1"):  # fmt: skip
                self.ok = False
                return
            if (hdr[:4] == b"\x4d\x3c\xb2\xa1") != fmt[1]:
                self.ok = False
                return
            end = os.fstat(f.fileno()).st_size
            pos = GLOBAL_HEADER_LEN
            while pos < end:
                n = os.copy_file_range(f.fileno(), self._fd, end - pos, pos, self._offset)
                if n == 0:
                    break
                pos += n
                self._offset += n
        self._format = fmt
        self._high = high
        self.appended.append(p)

    def complete(self, parts: list[Part], header: bytes, nanos: bool) -> int | None:
        """The packets written when the file holds all of parts in order, with
        header (the merged one) in place; None when it does not (then the
        caller truncates and merges)."""
        with self._lock:
            whole = self.ok and self._pos == len(self._order)
            whole = whole and {id(p) for p in self.appended} == {id(p) for p in parts}
            whole = whole and (self._format is None or self._format[1] == nanos)
            if not whole:
                os.ftruncate(self._fd, 0)
                return None
            os.pwrite(self._fd, header, 0)
            return sum(p.packets for p in self.appended)

    def close(self) -> None:
        os.close(self._fd)
