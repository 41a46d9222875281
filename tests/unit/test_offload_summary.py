"""The one-pass record walker agrees with pcapfile.scan() however the file is chunked."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from rollcap.offload.summary import RecordWalker
from rollcap.pcapfile import GLOBAL_HEADER_LEN, parse_header, scan
from tests.support.net import TEST_PCAPS

PCAPS = sorted(TEST_PCAPS.glob("*.pcap"))


def walk(data: bytes, sizes: list[int]) -> tuple[int, float | None, float | None]:
    w = RecordWalker(parse_header(data))
    off, i = GLOBAL_HEADER_LEN, 0
    while off < len(data):
        n = sizes[i % len(sizes)]
        w.feed(data[off : off + n])
        off += n
        i += 1
    return w.finish()


@pytest.mark.parametrize("pcap", PCAPS, ids=lambda p: p.name)
def test_matches_scan_for_every_shared_capture(pcap: Path, tmp_path: Path) -> None:
    data = pcap.read_bytes()
    try:
        parse_header(data)
    except ValueError:
        pytest.skip("not classic pcap")
    want = scan(pcap)
    rng = random.Random(pcap.name)
    for sizes in ([1 << 20], [1], [7], [16], [17], [rng.randrange(1, 300) for _ in range(50)]):
        assert walk(data, sizes) == (want.packets, want.first_ts, want.last_ts), sizes


@pytest.mark.parametrize("cut", [1, 5, 15, 16, 17, 40])
def test_a_cut_off_last_record_is_not_counted(cut: int, tmp_path: Path) -> None:
    data = max(PCAPS, key=lambda p: p.stat().st_size).read_bytes()
    cut_data = data[:-cut]
    p = tmp_path / "cut.pcap"
    p.write_bytes(cut_data)
    want = scan(p)
    assert want.truncated
    for sizes in ([1 << 20], [3], [16], [100]):
        assert walk(cut_data, sizes) == (want.packets, want.first_ts, want.last_ts)


def test_header_only_file_has_no_packets() -> None:
    data = PCAPS[0].read_bytes()[:GLOBAL_HEADER_LEN]
    assert walk(data, [4096]) == (0, None, None)


def test_garbage_length_stops_the_walk(tmp_path: Path) -> None:
    data = PCAPS[0].read_bytes() + b"\xff" * 16 + b"x" * 100
    p = tmp_path / "g.pcap"
    p.write_bytes(data)
    want = scan(p)
    assert walk(data, [1 << 20]) == (want.packets, want.first_ts, want.last_ts)


def test_caplen_above_len_stops_the_walk_like_scan(tmp_path: Path) -> None:
    import struct

    data = PCAPS[0].read_bytes()
    h = parse_header(data)
    bogus = struct.pack(h.endian + "IIII", 1, 0, 40, 20) + b"y" * 40  # caplen 40 > len 20
    p = tmp_path / "b.pcap"
    p.write_bytes(data + bogus + data[GLOBAL_HEADER_LEN:])
    want = scan(p)
    assert want.packets == scan(PCAPS[0]).packets
    assert walk(p.read_bytes(), [1 << 20]) == (want.packets, want.first_ts, want.last_ts)
    assert walk(p.read_bytes(), [13]) == (want.packets, want.first_ts, want.last_ts)
