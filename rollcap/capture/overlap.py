"""Removing packets captured twice during a make-before-break switch.

When rollcap replaces a running tcpdump (quiet-link rotation, reload with the
same interface) it starts the new one first and stops the old one only after
both have been listening for more than a second, so no packet is lost. The
packets that arrived in that overlap are in both generations: at the end of
the old one and at the start of the new one, each possibly spread over several
files when -C rotated during the overlap (a burst on a small-file setup). As
each old file is handed off we add a fingerprint of its tail (timestamp and a
hash of lengths and bytes of each record captured since shortly before the new
tcpdump listened) to a sidecar in work/, which survives a supervisor restart.
When a new file is handed off, its head that continues to the end of that tail
(same bytes, timestamps within 10 ms) is cut off; a new file that is all
duplicates is dropped and the rest of the tail waits for the next one. A
mismatch only ever leaves duplicates, never removes a packet that is not in
the old generation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rollcap.pcapfile import (
    GLOBAL_HEADER_LEN,
    RECORD_HEADER_LEN,
    PcapHeader,
    read_header,
    record_ok,
)

TS_TOLERANCE = 0.010
# Records of the old file older than "new tcpdump listening" minus this are
# certainly not in the new file (its socket opened after we started it).
TAIL_MARGIN = 1.0


@dataclass(frozen=True)
class Fingerprint:
    ts: float
    digest: str

    def same_packet(self, other: Fingerprint) -> bool:
        return self.digest == other.digest and abs(self.ts - other.ts) <= TS_TOLERANCE


def iter_records(path: Path, since: float = 0.0) -> Iterator[tuple[int, int, Fingerprint]]:
    """(offset, length, fingerprint) of each whole record with a timestamp >= since.

    Earlier records are skipped without reading their bytes: only the tail of
    a big file is hashed.
    """
    with open(path, "rb") as f:
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


def tail_since(path: Path, since: float) -> list[Fingerprint]:
    return [fp for _o, _n, fp in iter_records(path, since - TAIL_MARGIN)]


def sidecar_path(work_dir: Path, new_generation: int) -> Path:
    # A dot name: never matches a tcpdump output name, never handed off.
    return work_dir / f".overlap-g{new_generation:06d}.json"


def write_sidecar(path: Path, tail: list[Fingerprint]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps([[fp.ts, fp.digest] for fp in tail]))
    os.replace(tmp, path)


def append_sidecar(path: Path, more: list[Fingerprint]) -> None:
    """Add the tail of one more old file; a file fingerprinted twice (the supervisor
    died before its hand-off) adds nothing the second time."""
    have = read_sidecar(path) or []
    seen = set(have)
    write_sidecar(path, have + [fp for fp in more if fp not in seen])


def read_sidecar(path: Path) -> list[Fingerprint] | None:
    try:
        raw = json.loads(path.read_text())
        return [Fingerprint(float(ts), str(d)) for ts, d in raw]
    except (FileNotFoundError, ValueError, TypeError):
        return None


def duplicate_head(
    tail: list[Fingerprint], head: list[Fingerprint], whole: bool = True
) -> tuple[int, int]:
    """(n, start): the longest head[:n] equal to tail[start:start + n] where either
    the match runs to the tail's end (the overlap ended in this file) or, when
    head is the whole file (whole), covers all of it (the overlap goes on in the
    next file). (0, 0) when there is none."""
    for start in range(len(tail)):
        n = min(len(tail) - start, len(head))
        if n == 0 or (start + n < len(tail) and not (whole and n == len(head))):
            continue
        # cheap first test before the full comparison
        if not head[0].same_packet(tail[start]):
            continue
        if all(head[i].same_packet(tail[start + i]) for i in range(n)):
            return n, start
    return 0, 0


@dataclass(frozen=True)
class DuplicateHead:
    records: int  # 0: nothing to strip
    cut: int  # file offset where the first record to keep starts
    rest: list[Fingerprint]  # the tail left for the generation's next file


def find_duplicate_head(path: Path, tail: list[Fingerprint]) -> DuplicateHead:
    """The head of path that was captured twice, and what is left of the tail for
    the generation's next file (empty unless this whole file is duplicates)."""
    none = DuplicateHead(0, GLOBAL_HEADER_LEN, [])
    if not tail:
        return none
    head: list[tuple[int, int, Fingerprint]] = []
    for item in iter_records(path):
        head.append(item)
        if len(head) > len(tail):
            break
    whole = len(head) <= len(tail)  # every record of the file was read
    n, start = duplicate_head(tail, [fp for _o, _l, fp in head], whole)
    if n == 0:
        return none
    return DuplicateHead(n, head[n - 1][0] + head[n - 1][1], tail[start + n :])


def cut_head(path: Path, cut: int) -> None:
    """Rewrite path (atomically) without the records before offset cut."""
    tmp = path.with_name("." + path.name + ".strip")
    try:
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            dst.write(src.read(GLOBAL_HEADER_LEN))
            src.seek(cut)
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        st = os.stat(path)
        os.chmod(tmp, st.st_mode & 0o777)
        with contextlib.suppress(PermissionError):
            os.chown(tmp, st.st_uid, st.st_gid)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def switch_path(work_dir: Path, old_generation: int) -> Path:
    """Record of a switch in progress: which generation replaces old_generation and
    when it started listening (wall clock, like pcap timestamps)."""
    return work_dir / f".switch-g{old_generation:06d}.json"


def write_switch(path: Path, new_generation: int, listening_at: float) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"new_generation": new_generation, "listening_at": listening_at}))
    os.replace(tmp, path)


def read_switch(path: Path) -> tuple[int, float] | None:
    try:
        raw = json.loads(path.read_text())
        return int(raw["new_generation"]), float(raw["listening_at"])
    except (FileNotFoundError, ValueError, TypeError, KeyError):
        return None
