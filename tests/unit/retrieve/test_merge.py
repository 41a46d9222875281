"""Record streaming, windowing and the bounded k-way merge."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from rollcap.retrieve.merge import (
    Part,
    chains,
    overlapping,
    reduce_chains,
    write_merged,
    write_ordered,
)
from rollcap.retrieve.records import window_copy
from tests.support.archive import NS, compress, read_timestamps, write_pcap

FRAME = (b"\xff" * 6 + b"\x00" * 54, 60)


def _pcap(path: Path, stamps: list[int], nanos: bool = False) -> Path:
    return write_pcap(path, [(t, *FRAME) for t in stamps], nanos=nanos)


def test_window_copy_keeps_half_open_window_from_any_compression(tmp_path: Path) -> None:
    stamps = [100 * NS + i * 250_000_000 for i in range(20)]  # 100.00 .. 104.75 s
    for kind in ("zstd", "gzip", "none"):
        src = compress(_pcap(tmp_path / f"{kind}.pcap", stamps), kind)
        out = tmp_path / f"{kind}.out.pcap"
        header, kept, truncated = window_copy(src, out, 101 * NS, 103 * NS)
        n, first, last = kept.packets, kept.first, kept.last
        assert header.linktype == 1 and not truncated
        assert n == 8 and first == 101 * NS and last == 102 * NS + 750_000_000
        assert read_timestamps(out) == [t for t in stamps if 101 * NS <= t < 103 * NS]


def test_window_copy_reports_cut_off_tail(tmp_path: Path) -> None:
    src = _pcap(tmp_path / "cut.pcap", [NS, 2 * NS, 3 * NS])
    src.write_bytes(src.read_bytes()[:-10])
    _h, kept, truncated = window_copy(src, tmp_path / "o.pcap", 0, 10 * NS)
    assert kept.packets == 2 and truncated


def test_chains_need_as_many_streams_as_overlap() -> None:
    # two hosts, each with back-to-back files: two chains, not six open files
    parts = [Part(Path(f"{h}{i}"), (i * 10 + h) * NS, (i * 10 + 9 + h) * NS, 1)
             for h in (0, 1) for i in range(3)]  # fmt: skip
    out = chains(parts)
    assert len(out) == 2
    for c in out:
        assert all(a.last_ns <= b.first_ns for a, b in itertools.pairwise(c))


def test_merge_is_sorted_exact_and_bounded(tmp_path: Path) -> None:
    rng = random.Random(7)
    parts = []
    every: list[int] = []
    for i in range(40):  # 40 overlapping files, merged with at most 4 open at a time
        stamps = sorted(rng.randrange(0, 1000 * NS, 1000) for _ in range(50))
        every += stamps
        parts.append(Part(_pcap(tmp_path / f"{i}.pcap", stamps, nanos=True), stamps[0],
                          stamps[-1], 50))  # fmt: skip
    cl = chains(parts)
    assert len(cl) > 4
    reduced = reduce_chains(cl, tmp_path, linktype=1, max_open=4)
    assert len(reduced) <= 4
    out = tmp_path / "out.pcap"
    with open(out, "wb") as f:
        n, first, last = write_merged(f, reduced, linktype=1, snaplen=65535, nanos=False)
    assert n == 2000 and first == min(every) and last == max(every)
    assert read_timestamps(out) == sorted(every)


def _be_pcap(path: Path, stamps: list[int]) -> Path:
    """Big-endian µs pcap, as written on a big-endian machine."""
    import struct

    with open(path, "wb") as f:
        f.write(struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for t in stamps:
            sec, usec = divmod(t // 1000, 1_000_000)
            f.write(struct.pack(">IIII", sec, usec, len(FRAME[0]), FRAME[1]) + FRAME[0])
    return path


def test_merge_normalises_byte_order_and_precision(tmp_path: Path) -> None:
    be = [5 * NS + i * 1_000_000 for i in range(5)]  # whole µs
    nano = [5 * NS + i * 1_000_000 + 1 for i in range(5)]  # 1 ns after each
    a = _be_pcap(tmp_path / "be.pcap", be)
    b = _pcap(tmp_path / "ns.pcap", nano, nanos=True)
    cl = chains([Part(a, be[0], be[-1], 5), Part(b, nano[0], nano[-1], 5)])
    out = tmp_path / "out.pcap"
    with open(out, "wb") as f:
        write_merged(f, cl, linktype=1, snaplen=65535, nanos=True)
    assert read_timestamps(out) == sorted(be + nano)
    data = out.read_bytes()
    assert data[:4] == b"\x4d\x3c\xb2\xa1"  # little-endian, nanoseconds
    assert data[24 + 16 : 24 + 16 + 60] == FRAME[0]  # frame bytes untouched
    with open(out, "wb") as f:
        write_merged(f, cl, linktype=1, snaplen=65535, nanos=False)
    # µs output: the 1 ns is cut off, order is still by the exact stamps
    assert read_timestamps(out) == sorted(t // 1000 * 1000 for t in be + nano)


def test_an_object_that_decompresses_beyond_its_recorded_size_is_stopped(tmp_path: Path) -> None:
    """A bucket object is untrusted: a zstd bomb is cut at its recorded pcap size."""
    import zstandard

    from rollcap.retrieve.records import TooLarge

    pcap = _pcap(tmp_path / "ok.pcap", [NS * i for i in range(1, 4)])
    src = tmp_path / "bomb.pcap.zst"
    # a valid start, then 10 MB of zero records: they compress to almost nothing
    body = pcap.read_bytes() + b"\0" * 10_000_000
    src.write_bytes(zstandard.ZstdCompressor().compress(body))
    with pytest.raises(TooLarge):
        window_copy(src, tmp_path / "o.pcap", 0, 10**20, max_bytes=1_000_000)


def _records(path: Path) -> bytes:
    return path.read_bytes()[24:]


def _merged(parts: list[Part], tmp_path: Path, name: str, *, nanos: bool = False) -> Path:
    out = tmp_path / name
    with open(out, "wb") as f:
        write_merged(f, chains(parts), linktype=1, snaplen=262144, nanos=nanos)
    return out


def _ordered(parts: list[Part], tmp_path: Path, name: str, *, nanos: bool = False) -> Path:
    out = tmp_path / name
    with open(out, "wb") as f:
        n = write_ordered(f, parts, tmp_path, linktype=1, snaplen=262144, nanos=nanos)
    assert n == sum(p.packets for p in parts)
    return out


def test_parts_apart_in_time_are_copied_byte_identical_to_the_record_merge(
    tmp_path: Path,
) -> None:
    # one host's consecutive captures, given out of order; the frames differ per
    # packet so a misplaced record would show
    parts = []
    for i in (2, 0, 1):
        frames = [(i * 10 * NS + j * NS, bytes([i, j]) * 30, 60) for j in range(5)]
        path = write_pcap(tmp_path / f"{i}.pcap", frames)
        parts.append(Part(path, frames[0][0], frames[-1][0], 5))
    want = _records(_merged(parts, tmp_path, "merged.pcap"))
    got = _ordered(parts, tmp_path, "ordered.pcap")
    assert _records(got) == want
    assert read_timestamps(got) == sorted(read_timestamps(got))
    assert not any(p.path.exists() for p in parts)  # each piece is removed once written


def test_overlapping_parts_are_still_merged_by_time(tmp_path: Path) -> None:
    # two hosts at the same time (merged record by record), then one alone
    # (copied): all in time order, the same records as the record merge
    a = [100 * NS + i * 2 * NS for i in range(5)]
    b = [101 * NS + i * 2 * NS for i in range(5)]
    c = [200 * NS + i * NS for i in range(3)]
    parts = [Part(_pcap(tmp_path / f"{k}.pcap", s), s[0], s[-1], len(s))
             for k, s in (("a", a), ("b", b), ("c", c))]  # fmt: skip
    assert [len(g) for g in overlapping(parts)] == [2, 1]
    want = _records(_merged(parts, tmp_path, "merged.pcap"))
    got = _ordered(parts, tmp_path, "ordered.pcap")
    assert read_timestamps(got) == sorted(a + b + c)
    assert _records(got) == want


def test_a_part_in_another_format_is_repacked_not_copied(tmp_path: Path) -> None:
    be = [5 * NS + i * 1_000_000 for i in range(3)]
    nano = [9 * NS + i for i in range(3)]
    parts = [Part(_be_pcap(tmp_path / "be.pcap", be), be[0], be[-1], 3),
             Part(_pcap(tmp_path / "ns.pcap", nano, nanos=True), nano[0], nano[-1], 3)]  # fmt: skip
    got = _ordered(parts, tmp_path, "ordered.pcap", nanos=True)
    assert got.read_bytes()[:4] == b"\x4d\x3c\xb2\xa1"
    assert read_timestamps(got) == be + nano


def test_an_unsorted_part_is_placed_by_its_whole_span(tmp_path: Path) -> None:
    # a capture whose stamps step back (clock adjusted): its last packet is not its
    # latest, so a part starting after its last but before its latest overlaps it
    a = [10 * NS, 50 * NS, 20 * NS]
    src = _pcap(tmp_path / "a.pcap", a)
    _h, kept, _t = window_copy(src, tmp_path / "a.win.pcap", 0, 100 * NS)
    assert (kept.first, kept.last, kept.low, kept.high) == (10 * NS, 20 * NS, 10 * NS, 50 * NS)
    pa = Part(tmp_path / "a.win.pcap", kept.first, kept.last, kept.packets, kept.low, kept.high)
    b = [30 * NS, 40 * NS]
    pb = Part(_pcap(tmp_path / "b.pcap", b), b[0], b[-1], 2)
    assert overlapping([pa, pb]) == [[pa, pb]]


def test_window_copy_keeps_exactly_the_records_inside_even_when_unsorted(tmp_path: Path) -> None:
    frames = [(t * NS, bytes([t]) * 60, 60) for t in (1, 5, 2, 6, 3, 7)]
    src = write_pcap(tmp_path / "u.pcap", frames)
    want = write_pcap(tmp_path / "want.pcap", [f for f in frames if f[0] < 4 * NS])
    _h, kept, truncated = window_copy(src, tmp_path / "out.pcap", NS, 4 * NS)
    assert kept.packets == 3 and not truncated
    assert (tmp_path / "out.pcap").read_bytes() == want.read_bytes()


def test_window_copy_reads_records_larger_than_its_buffer(tmp_path: Path) -> None:
    big = bytes(range(256)) * (3 * 1024 * 1024 // 256)  # 3 MiB, more than one read
    frames = [(NS, b"a" * 60, 60), (2 * NS, big, len(big)), (3 * NS, b"b" * 60, 60)]
    src = compress(write_pcap(tmp_path / "big.pcap", frames), "zstd")
    _h, kept, truncated = window_copy(src, tmp_path / "out.pcap", 0, 10 * NS)
    assert kept.packets == 3 and not truncated
    assert (tmp_path / "out.pcap").read_bytes() == (tmp_path / "big.pcap").read_bytes()


def test_window_copy_stops_at_a_garbage_record_header(tmp_path: Path) -> None:
    import struct

    src = _pcap(tmp_path / "g.pcap", [NS, 2 * NS])
    with open(src, "ab") as f:  # caplen above the original length: not a record
        f.write(struct.pack("<IIII", 3, 0, 100, 60) + b"x" * 100)
    _h, kept, truncated = window_copy(src, tmp_path / "out.pcap", 0, 10 * NS)
    assert kept.packets == 2 and truncated
