"""Removing packets captured twice during a make-before-break switch.

When rollcap replaces a running tcpdump (quiet-link rotation, reload with the
same interface) it starts the new one first and stops the old one only after
both have been listening for more than a second, so no packet is lost. The
packets that arrived in that overlap are in both generations: at the end of
the old one and at the start of the new one, each possibly spread over several
files when -C rotated during the overlap (a burst on a small-file setup). As
each old file is handed off we add a fingerprint of its tail (timestamp and a
hash of lengths and bytes of each record captured since shortly before the new
tcpdump was started) to a sidecar in work/, which survives a supervisor restart.
When a new file is handed off, its records paired in order with that tail (same
bytes, timestamps within 10 ms) are removed. Either tcpdump may have missed a
packet of the overlap (a drop at a high rate, a socket not yet attached): such a
record is kept, the others are still paired. A new file that is all duplicates
is dropped and the rest of the tail waits for the next one. A mismatch only ever
leaves duplicates, never removes a packet that is not in the old generation.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import hashlib
import json
import math
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from rollcap.pcapfile import (
    GLOBAL_HEADER_LEN,
    RECORD_HEADER_LEN,
    PcapHeader,
    read_header,
    record_ok,
)
from rollcap.spool.fs import BadEntry, Dir

TS_TOLERANCE = 0.010
# Records of the old file older than "new tcpdump spawned" minus this are
# certainly not in the new file (its socket opened after we started it); the
# margin covers a kernel timestamp a little behind the wall clock we read.
TAIL_MARGIN = 1.0
# State files are read back as untrusted input: bounded and range-checked.
MAX_SIDECAR_BYTES = 64 * 1024 * 1024
MAX_GENERATION = 999_999_999
_DIGEST_RE = re.compile(r"[0-9a-f]{24}")


@dataclass(frozen=True)
class Fingerprint:
    ts: float
    digest: str

    def same_packet(self, other: Fingerprint) -> bool:
        return self.digest == other.digest and abs(self.ts - other.ts) <= TS_TOLERANCE


def iter_records(
    src: int | str | os.PathLike[str], since: float = 0.0
) -> Iterator[tuple[int, int, Fingerprint]]:
    """(offset, length, fingerprint) of each whole record with a timestamp >= since,
    of the file open on src (an fd, left open; or a path, for tests and tools).

    Earlier records are skipped without reading their bytes: only the tail of
    a big file is hashed.
    """
    if not isinstance(src, int):
        fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
        try:
            yield from iter_records(fd, since)
        finally:
            os.close(fd)
        return
    with os.fdopen(src, "rb", closefd=False) as f:
        f.seek(0)
        header: PcapHeader = read_header(f)
        rec = struct.Struct(header.endian + "IIII")
        size = os.fstat(f.fileno()).st_size
        pos = GLOBAL_HEADER_LEN
        while True:
            raw = f.read(RECORD_HEADER_LEN)
            if len(raw) < RECORD_HEADER_LEN:
                return
            sec, frac, incl, orig = rec.unpack(raw)
            if not record_ok(frac, incl, orig, header.ts_per_second):
                return  # garbage: the rest is a cut-off tail
            ts = sec + frac / header.ts_per_second
            if pos + RECORD_HEADER_LEN + incl > size:
                return  # cut off
            if ts < since:
                f.seek(incl, os.SEEK_CUR)
                pos += RECORD_HEADER_LEN + incl
                continue
            data = f.read(incl)
            if len(data) < incl:
                return
            h = hashlib.blake2b(struct.pack("<II", incl, orig) + data, digest_size=12)
            yield pos, RECORD_HEADER_LEN + incl, Fingerprint(ts, h.hexdigest())
            pos += RECORD_HEADER_LEN + incl


def tail_since(src: int | str | os.PathLike[str], since: float) -> list[Fingerprint]:
    return [fp for _o, _n, fp in iter_records(src, since - TAIL_MARGIN)]


def sidecar_name(new_generation: int) -> str:
    # A dot name: never matches a tcpdump output name, never handed off.
    return f".overlap-g{new_generation:06d}.json"


def write_sidecar(d: Dir, name: str, tail: list[Fingerprint]) -> None:
    d.write_atomic(name, json.dumps([[fp.ts, fp.digest] for fp in tail]).encode())


def append_sidecar(d: Dir, name: str, more: list[Fingerprint]) -> None:
    """Add the tail of one more old file; a file fingerprinted twice (the supervisor
    died before its hand-off) adds nothing the second time."""
    have = read_sidecar(d, name) or []
    seen = set(have)
    write_sidecar(d, name, have + [fp for fp in more if fp not in seen])


def _finite(v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ValueError(f"not a finite number: {v!r}")
    if not 0 <= v < 2**33:  # 1970 .. 2242: a pcap timestamp
        raise ValueError(f"out of range: {v!r}")
    return float(v)


def read_sidecar(d: Dir, name: str) -> list[Fingerprint] | None:
    """None when missing or not a well-formed sidecar (then nothing is stripped:
    a bad sidecar can only leave duplicates, never remove a packet)."""
    try:
        data = d.read_small(name, {os.geteuid()}, MAX_SIDECAR_BYTES)
        if data is None:
            return None
        raw = json.loads(data)
        out = []
        for ts, digest in raw:
            if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
                raise ValueError("bad digest")
            out.append(Fingerprint(_finite(ts), digest))
        return out
    except (BadEntry, OSError, ValueError, TypeError):
        return None


def remove(d: Dir, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        d.unlink(name)


def pair_duplicates(tail: list[Fingerprint], head: list[Fingerprint]) -> tuple[list[int], int]:
    """(indices of head that are duplicates, index of tail after the last pair).

    Both tcpdumps got the overlap's packets in the same order, but either may have
    missed some (kernel drops at a high rate, a socket that was not attached yet
    or any more): each head record is paired with the first unpaired tail record
    after the previous pair with the same bytes and a timestamp within 10 ms, or
    with none and kept. Each tail record pairs once, so n identical packets
    within 10 ms remove at most n. A record that only the new tcpdump saw is
    never removed unless the old one saw identical bytes at nearly the same time.
    """
    where: dict[str, list[int]] = {}
    for k, t in enumerate(tail):
        where.setdefault(t.digest, []).append(k)
    dups: list[int] = []
    after = 0  # tail records before this one are paired or skipped
    for i, h in enumerate(head):
        same = where.get(h.digest)
        if not same:
            continue
        for k in same[bisect.bisect_left(same, after) :]:
            if tail[k].same_packet(h):
                dups.append(i)
                after = k + 1
                break
            if tail[k].ts > h.ts + TS_TOLERANCE:
                break  # later copies of these bytes are other packets
    return dups, after


@dataclass(frozen=True)
class Duplicates:
    records: list[tuple[int, int]]  # (offset, length) of each record captured twice
    rest: list[Fingerprint]  # the tail left for the generation's next file
    unpaired: int = 0  # records within the tail's time span that paired with none

    def __len__(self) -> int:
        return len(self.records)


def find_duplicates(fd: int, tail: list[Fingerprint]) -> Duplicates:
    """The records of the file on fd that the old generation also captured, and
    what is left of the tail for the generation's next file: nothing once the file
    has a packet later than the tail's last (the overlap ended in this file)."""
    if not tail:
        return Duplicates([], [])
    end = max(t.ts for t in tail) + TS_TOLERANCE
    head: list[tuple[int, int, Fingerprint]] = []
    ended = False
    for item in iter_records(fd):
        if item[2].ts > end:
            ended = True
            break
        head.append(item)
    dups, after = pair_duplicates(tail, [f for _o, _n, f in head])
    first, last, paired = min(t.ts for t in tail), max(t.ts for t in tail), set(dups)
    unpaired = sum(
        1 for i, (_o, _n, f) in enumerate(head) if i not in paired and first <= f.ts <= last
    )
    return Duplicates([head[i][:2] for i in dups], [] if ended else tail[after:], unpaired)


def drop_records(d: Dir, name: str, fd: int, drop: list[tuple[int, int]]) -> int:
    """Replace name (open on fd) atomically by a copy without the records at drop
    ((offset, length), in file order); return an fd on the new file (fd itself is
    left open). The copy is an O_EXCL temp file in the same directory, never a
    fixed name."""
    tmp_fd, tmp = d.create_temp("." + name + ".", ".strip")
    try:
        with os.fdopen(os.dup(fd), "rb") as src, os.fdopen(os.dup(tmp_fd), "wb") as dst:
            src.seek(0)
            dst.write(src.read(GLOBAL_HEADER_LEN))
            pos = GLOBAL_HEADER_LEN
            for off, length in [*drop, (os.fstat(fd).st_size, 0)]:
                if off < pos:
                    raise ValueError(f"records to drop overlap or are out of order at {off}")
                _copy(src, dst, off - pos)
                src.seek(length, os.SEEK_CUR)
                pos = off + length
        st = os.fstat(fd)
        os.fchmod(tmp_fd, st.st_mode & 0o777)
        with contextlib.suppress(PermissionError):
            os.fchown(tmp_fd, st.st_uid, st.st_gid)
        d.rename(tmp, d, name)
    except BaseException:
        os.close(tmp_fd)
        with contextlib.suppress(OSError):
            d.unlink(tmp)
        raise
    return tmp_fd


def _copy(src: BinaryIO, dst: BinaryIO, n: int) -> None:
    while n > 0:
        chunk = src.read(min(n, 1 << 20))
        if not chunk:
            raise OSError(errno.EIO, "file shrank while its duplicates were stripped")
        dst.write(chunk)
        n -= len(chunk)


def switch_name(old_generation: int) -> str:
    """Record of a switch in progress: which generation replaces old_generation and
    when it was started (wall clock, like pcap timestamps)."""
    return f".switch-g{old_generation:06d}.json"


def write_switch(d: Dir, name: str, new_generation: int, since: float) -> None:
    # "listening_at": the key of earlier versions, whose records a restart reads
    data = {"new_generation": new_generation, "listening_at": since}
    d.write_atomic(name, json.dumps(data).encode())


def read_switch(d: Dir, name: str) -> tuple[int, float] | None:
    try:
        data = d.read_small(name, {os.geteuid()}, 4096)
        if data is None:
            return None
        raw = json.loads(data)
        gen = raw["new_generation"]
        if isinstance(gen, bool) or not isinstance(gen, int) or not 0 < gen <= MAX_GENERATION:
            raise ValueError(f"generation out of range: {gen!r}")
        return gen, _finite(raw["listening_at"])
    except (BadEntry, OSError, ValueError, TypeError, KeyError):
        return None
