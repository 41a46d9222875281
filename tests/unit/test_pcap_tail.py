"""The hand-off's repair from the tail (pcapfile.tail_end, repair_finished): it
finds where the full walk (scan) would cut, or says it cannot; never a wrong cut,
even when packets carry pcap records in their payload."""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import pytest

from rollcap.pcapfile import (
    GLOBAL_HEADER_LEN,
    parse_header,
    record_start_near,
    repair_finished,
    scan,
    stamp_at,
    start_before,
    tail_end,
    tail_window,
)
from tests.unit.test_pcapfile import pcap

SNAP = 2048
T0 = 1_700_000_000
SECS = (
    T0 - 86_400,
    T0 + 86_400,
)  # a small snaplen keeps the window small and the files quick to build


def _records(
    rng: random.Random, n: int, payload: bytes | None = None
) -> list[tuple[int, int, bytes]]:
    out = []
    for i in range(n):
        size = rng.choice((60, 64, 90, 300, 1514, SNAP))
        data = payload[:size] if payload is not None else rng.randbytes(size)
        out.append((1_700_000_000 + i // 1000, (i * 997) % 1_000_000, data))
    return out


def _check(path: Path, data: bytes) -> int | None:
    """tail_end of data (written to path) against the full walk's answer."""
    path.write_bytes(data)
    want = scan(path).good_bytes
    fd = os.open(path, os.O_RDONLY)
    try:
        got = tail_end(fd, len(data), parse_header(data[:GLOBAL_HEADER_LEN]), SECS)
    finally:
        os.close(fd)
    assert got is None or got == want, (got, want)
    return got


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("res", ["us", "ns"])
def test_tail_end_agrees_with_the_full_walk_at_every_cut(
    tmp_path: Path, endian: str, res: str
) -> None:
    rng = random.Random(f"{endian}{res}")
    whole = pcap(_records(rng, 400), endian=endian, res=res, snaplen=SNAP)
    proved = 0
    cuts = [len(whole)] + [len(whole) - rng.randrange(1, SNAP + 16) for _ in range(150)]
    cuts += [len(whole) - k for k in range(1, 17)]  # cut inside the last record header
    for cut in cuts:
        proved += _check(tmp_path / "f.pcap", whole[:cut]) is not None
    assert proved >= len(cuts) * 9 // 10  # random payload: nearly always proved


def test_payload_that_looks_like_records_never_gives_a_wrong_cut(tmp_path: Path) -> None:
    rng = random.Random(7)
    # each packet carries a pcap stream: plausible headers at many offsets
    inner = pcap(_records(rng, 40), snaplen=SNAP)[GLOBAL_HEADER_LEN:]
    whole = pcap(_records(rng, 300, payload=inner * 4), snaplen=SNAP)
    for cut in [len(whole)] + [len(whole) - rng.randrange(1, 3 * SNAP) for _ in range(150)]:
        _check(tmp_path / "f.pcap", whole[:cut])


def test_zero_padding_is_not_taken_for_records(tmp_path: Path) -> None:
    rng = random.Random(3)
    whole = pcap(_records(rng, 300, payload=bytes(SNAP)), snaplen=SNAP)
    assert _check(tmp_path / "f.pcap", whole) == len(whole)
    assert _check(tmp_path / "g.pcap", whole[:-100]) is not None


def test_repair_finished_reads_the_tail_only_and_cuts_a_torn_record(tmp_path: Path) -> None:
    rng = random.Random(11)
    recs = _records(rng, 2000)
    whole = pcap(recs, snaplen=SNAP)
    path = tmp_path / "f.pcap"
    path.write_bytes(whole[:-700])
    fd = os.open(path, os.O_RDWR)
    try:
        r = repair_finished(fd)
    finally:
        os.close(fd)
    full = scan(path)  # after the cut: nothing more to cut
    assert r.packets is None  # not counted: the offload counts them
    assert r.removed > 0 and r.file_bytes == full.good_bytes == full.file_bytes
    assert r.first_ns == recs[0][0] * 10**9 + recs[0][1] * 1000
    assert tail_window(parse_header(whole)) < len(whole) // 50


def test_a_small_file_is_walked_whole_and_counted(tmp_path: Path) -> None:
    rng = random.Random(5)
    whole = pcap(_records(rng, 3), snaplen=SNAP)
    path = tmp_path / "f.pcap"
    path.write_bytes(whole + b"\x01\x02")
    fd = os.open(path, os.O_RDWR)
    try:
        r = repair_finished(fd)
    finally:
        os.close(fd)
    assert (r.packets, r.removed, r.file_bytes) == (3, 2, len(whole))


def test_a_corrupt_record_in_the_tail_falls_back_to_the_full_walk(tmp_path: Path) -> None:
    rng = random.Random(9)
    whole = bytearray(pcap(_records(rng, 500), snaplen=SNAP))
    # the last record's caplen made impossible: the full walk cuts there
    hdr_at = len(whole) - 16 - len(_records(random.Random(9), 500)[-1][2])
    struct.pack_into("<I", whole, hdr_at + 8, 0xFFFFFF)
    _check(tmp_path / "f.pcap", bytes(whole))


def _starts(recs: list[tuple[int, int, bytes]]) -> list[int]:
    out, off = [], GLOBAL_HEADER_LEN
    for _s, _f, data in recs:
        out.append(off)
        off += 16 + len(data)
    return out


def _near_all(tmp_path: Path, whole: bytes, starts: set[int], rng: random.Random) -> int:
    """record_start_near at many offsets: each answer a true record start; how many proved."""
    path = tmp_path / "f.pcap"
    path.write_bytes(whole)
    header = parse_header(whole)
    fd = os.open(path, os.O_RDONLY)
    proved = 0
    try:
        for _ in range(150):
            at = rng.randrange(GLOBAL_HEADER_LEN, len(whole) - 4 * (16 + SNAP))
            got = record_start_near(fd, at, header, SECS)
            assert got is None or (got in starts and got >= at), (at, got)
            proved += got is not None
    finally:
        os.close(fd)
    return proved


@pytest.mark.parametrize("endian", ["<", ">"])
def test_a_record_start_near_any_offset_is_a_true_one(tmp_path: Path, endian: str) -> None:
    rng = random.Random(endian)
    recs = _records(rng, 1500)
    whole = pcap(recs, endian=endian, snaplen=SNAP)
    assert _near_all(tmp_path, whole, set(_starts(recs)), rng) >= 140  # random payload: proved


def test_payload_that_looks_like_records_never_gives_a_false_start(tmp_path: Path) -> None:
    rng = random.Random(8)
    inner = pcap(_records(rng, 40), snaplen=SNAP)[GLOBAL_HEADER_LEN:]
    recs = _records(rng, 800, payload=inner * 4)
    _near_all(tmp_path, pcap(recs, snaplen=SNAP), set(_starts(recs)), rng)


def test_the_walk_of_a_tail_starts_near_the_end_before_its_first_record(tmp_path: Path) -> None:
    """start_before: a true record start stamped before the time asked, close to
    the end when that time is recent (the overlap strip's walk of a big file)."""
    rng = random.Random(4)
    recs = [(T0 + i // 1000, (i % 1000) * 1000, rng.randbytes(rng.choice((60, 600, 1400))))
            for i in range(20_000)]  # fmt: skip
    whole = pcap([], snaplen=SNAP) + b"".join(
        struct.pack("<IIII", sec, frac, len(d), len(d)) + d for sec, frac, d in recs
    )  # joined: pcap() would take a minute over 20,000 records
    starts = _starts(recs)
    path = tmp_path / "f.pcap"
    path.write_bytes(whole)
    header = parse_header(whole)
    fd = os.open(path, os.O_RDONLY)
    try:
        for i in (19_990, 19_000, 15_000, 2_000, 0):
            want_ns = recs[i][0] * 10**9 + recs[i][1] * 1000
            off = start_before(fd, header, want_ns)
            assert off in starts
            ns = stamp_at(fd, off, header)
            assert off == GLOBAL_HEADER_LEN or (ns is not None and ns < want_ns)
            assert off <= starts[i]  # every record stamped since is walked
            if i >= 15_000:  # proportional: from about twice the tail's bytes back
                assert len(whole) - off <= 4 * max(len(whole) - starts[i], 4 * (16 + SNAP))
    finally:
        os.close(fd)
