"""Record streaming, windowing and the bounded k-way merge."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

from rollcap.retrieve.merge import Part, chains, reduce_chains, write_merged
from rollcap.retrieve.records import window_filter
from tests.support.archive import NS, compress, read_timestamps, write_pcap

FRAME = (b"\xff" * 6 + b"\x00" * 54, 60)


def _pcap(path: Path, stamps: list[int], nanos: bool = False) -> Path:
    return write_pcap(path, [(t, *FRAME) for t in stamps], nanos=nanos)


def test_window_filter_keeps_half_open_window_from_any_compression(tmp_path: Path) -> None:
    stamps = [100 * NS + i * 250_000_000 for i in range(20)]  # 100.00 .. 104.75 s
    for kind in ("zstd", "gzip", "none"):
        src = compress(_pcap(tmp_path / f"{kind}.pcap", stamps), kind)
        out = tmp_path / f"{kind}.out.pcap"
        header, n, first, last, truncated = window_filter(src, out, 101 * NS, 103 * NS, nanos=True)
        assert header.linktype == 1 and not truncated
        assert n == 8 and first == 101 * NS and last == 102 * NS + 750_000_000
        assert read_timestamps(out) == [t for t in stamps if 101 * NS <= t < 103 * NS]


def test_window_filter_reports_cut_off_tail(tmp_path: Path) -> None:
    src = _pcap(tmp_path / "cut.pcap", [NS, 2 * NS, 3 * NS])
    src.write_bytes(src.read_bytes()[:-10])
    _h, n, _f, _l, truncated = window_filter(src, tmp_path / "o.pcap", 0, 10 * NS, nanos=False)
    assert n == 2 and truncated


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
