"""An independent pcap record reader for the ledger (deliberately not rollcap.pcapfile).

The suite must not trust the code it checks, so objects and spool files are
read back here with a second, minimal implementation.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import zstandard

_MAGIC = {
    b"\xd4\xc3\xb2\xa1": "<",
    b"\xa1\xb2\xc3\xd4": ">",
    b"\x4d\x3c\xb2\xa1": "<",
    b"\xa1\xb2\x3c\x4d": ">",
}


class BadPcap(ValueError):
    pass


@dataclass
class Parsed:
    records: list[bytes]  # sha256 digests of (ts_sec, ts_frac, captured bytes)
    whole_bytes: int  # bytes up to the end of the last complete record
    total_bytes: int
    payloads: list[tuple[bytes, float]] = field(default_factory=list)  # (digest of bytes, ts)

    @property
    def truncated(self) -> bool:
        return self.whole_bytes != self.total_bytes


def parse(data: bytes) -> Parsed:
    """Every complete record's identity; a cut-off tail is reported, not hidden."""
    if len(data) < 24 or data[:4] not in _MAGIC:
        raise BadPcap(f"not a classic pcap ({data[:4].hex()!r}, {len(data)} bytes)")
    rec = struct.Struct(_MAGIC[data[:4]] + "IIII")
    per_s = 1e9 if data[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e6
    off, out, payloads = 24, [], []
    while off + 16 <= len(data):
        sec, frac, incl, _orig = rec.unpack_from(data, off)
        end = off + 16 + incl
        if end > len(data) or incl > 16 * 1024 * 1024:
            break
        # The capture timestamp is part of the identity: a replay loop sends the
        # same bytes again, but the kernel stamps each copy with a new time.
        body = data[off + 16 : end]
        out.append(hashlib.sha256(struct.pack("<II", sec, frac) + body).digest())
        payloads.append((hashlib.sha256(body).digest(), sec + frac / per_s))
        off = end
    return Parsed(out, off, len(data), payloads)


def decompress(name: str, blob: bytes) -> bytes:
    if name.endswith(".zst"):
        with zstandard.ZstdDecompressor().stream_reader(blob) as r:
            return r.read()
    if name.endswith(".gz"):
        return gzip.decompress(blob)
    return blob


@dataclass
class Ledger:
    """Packets per source (object or file); duplicates are packets held by more than one.

    A record is identified by (timestamp, bytes). One tcpdump never writes a
    packet twice, so equal records inside one source are distinct packets:
    identical frames replayed back to back that the kernel stamped within the
    same microsecond. The failure this looks for (the same packet stored in two
    objects) spans sources; the one exception is such a pair split by a
    rotation, the last record of one source and the first of another, which
    is allowed once.
    """

    counts: Counter[bytes] = field(default_factory=Counter)  # sources holding each packet
    sources: int = 0
    repeats_within: int = 0
    held: Counter[bytes] = field(default_factory=Counter)  # most copies in one source
    copies: Counter[bytes] = field(default_factory=Counter)  # copies in all sources
    firsts: list[bytes] = field(default_factory=list)
    lasts: list[bytes] = field(default_factory=list)

    def add(self, records: list[bytes]) -> None:
        self.sources += 1
        here = Counter(records)
        self.repeats_within += len(records) - len(here)
        self.counts.update(here.keys())
        self.copies.update(here)
        self.held |= here
        if records:
            self.firsts.append(records[0])
            self.lasts.append(records[-1])

    @property
    def unique(self) -> int:
        """Distinct packets: equal records in one source count separately."""
        return sum(self.held.values()) + self._split_pairs()

    def _split_pairs(self) -> int:
        """Equal records that may be two packets split by a rotation (see above)."""
        pairs = 0
        for i, last in enumerate(self.lasts):
            if self.copies[last] > self.held[last] and any(
                f == last for j, f in enumerate(self.firsts) if j != i
            ):
                pairs += 1
        return pairs

    @property
    def duplicated(self) -> int:
        return sum(self.copies[r] - self.held[r] for r in self.copies) - self._split_pairs()

    def missing_from(self, expected: Iterable[bytes]) -> int:
        """Packets of `expected` (one source's records) that no source holds."""
        want = Counter(expected)
        return sum(max(0, n - self.held[r]) for r, n in want.items())


def timestamps(data: bytes) -> list[float]:
    """Capture times of the complete records (for phase-by-phase counts)."""
    if len(data) < 24 or data[:4] not in _MAGIC:
        raise BadPcap("not a classic pcap")
    endian = _MAGIC[data[:4]]
    per_s = 1e9 if data[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e6
    rec = struct.Struct(endian + "IIII")
    off, out = 24, []
    while off + 16 <= len(data):
        sec, frac, incl, _orig = rec.unpack_from(data, off)
        if off + 16 + incl > len(data):
            break
        out.append(sec + frac / per_s)
        off += 16 + incl
    return out


def synth(src: bytes, loops: int, t0: float) -> bytes:
    """A classic pcap holding src's records `loops` times with fresh, increasing times."""
    if src[:4] != b"\xd4\xc3\xb2\xa1":
        raise BadPcap("synth wants a little-endian microsecond pcap")
    rec = struct.Struct("<IIII")
    bodies = []
    off = 24
    while off + 16 <= len(src):
        _s, _f, incl, orig = rec.unpack_from(src, off)
        bodies.append((incl, orig, src[off + 16 : off + 16 + incl]))
        off += 16 + incl
    out = [src[:24]]
    us = int(t0 * 1_000_000)
    for _ in range(loops):
        for incl, orig, body in bodies:
            us += 37
            out.append(rec.pack(us // 1_000_000, us % 1_000_000, incl, orig) + body)
    return b"".join(out)
