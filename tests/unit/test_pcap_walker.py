"""The one record rule, and every walker that applies it.

The reference below is a deliberately naive walk (whole file in memory, one
record at a time): the chunk-fed RecordWalker, pcapfile.scan(), the fetch
reader and the overlap fingerprinter must all agree with it, whatever the
chunking and whatever garbage follows the last good record.
"""

from __future__ import annotations

import io
import random
import struct
from pathlib import Path

import pytest

from rollcap.capture.switching import iter_records
from rollcap.pcapfile import (
    GLOBAL_HEADER_LEN,
    MAX_RECORD,
    RecordWalker,
    parse_header,
    record_ok,
    scan,
)
from rollcap.retrieve.records import RecordReader
from tests.support.net import TEST_PCAPS

PCAPS = sorted(TEST_PCAPS.glob("*.pcap"))


NS = 1_000_000_000
Result = tuple[int, int | None, int | None, int]


def reference(data: bytes) -> Result:
    """(packets, first_ns, last_ns, good_bytes), the slow obvious way."""
    h = parse_header(data)
    off, stamps = GLOBAL_HEADER_LEN, []
    while off + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack_from(h.endian + "IIII", data, off)
        if frac >= h.ts_per_second or incl > MAX_RECORD or orig < incl:
            break
        if off + 16 + incl > len(data):
            break
        stamps.append(sec * NS + frac * (NS // h.ts_per_second))
        off += 16 + incl
    if not stamps:
        return 0, None, None, off
    return len(stamps), stamps[0], stamps[-1], off


def walk(data: bytes, sizes: list[int]) -> Result:
    w = RecordWalker(parse_header(data))
    off, i = GLOBAL_HEADER_LEN, 0
    while off < len(data):
        n = sizes[i % len(sizes)]
        w.feed(data[off : off + n])
        off += n
        i += 1
    return (*w.finish(), GLOBAL_HEADER_LEN + w.good_bytes)


def scanned(p: Path) -> Result:
    s = scan(p, chunk=997)
    return s.packets, s.first_ns, s.last_ns, s.good_bytes


# (byte order, ns): tcpdump's own files are little-endian µs; a big-endian
# machine writes ">", capture.timestamp_precision = "nano" the ns magic
FORMATS = [("<", False), (">", False), ("<", True), (">", True)]
FORMAT_IDS = ["le-us", "be-us", "le-ns", "be-ns"]


def convert(data: bytes, endian: str, nanos: bool) -> bytes:
    """A little-endian µs test capture rewritten in another byte order and/or
    with ns stamps (each µs stamp plus 1..999 ns, so the ns digits matter).
    Stops at the first record that is not whole (the rest is copied as is)."""
    h = parse_header(data)
    assert h.endian == "<" and h.ts_per_second == 1_000_000
    _magic, major, minor, zone, sigfigs, snaplen, linktype = struct.unpack_from("<IHHiIII", data)
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = [struct.pack(endian + "IHHiIII", magic, major, minor, zone, sigfigs, snaplen, linktype)]
    off, i = GLOBAL_HEADER_LEN, 0
    while off + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack_from("<IIII", data, off)
        if off + 16 + incl > len(data) or not record_ok(frac, incl, orig, 1_000_000):
            break
        if nanos:
            frac = frac * 1000 + 1 + (i * 337) % 999
        out.append(struct.pack(endian + "IIII", sec, frac, incl, orig))
        out.append(data[off + 16 : off + 16 + incl])
        off += 16 + incl
        i += 1
    out.append(data[off:])
    return b"".join(out)


_RANDOM_SIZES = [random.Random(3).randrange(1, 300) for _ in range(50)]
CHUNKINGS = ([1 << 20], [1], [7], [16], [17], _RANDOM_SIZES)


@pytest.mark.parametrize("pcap", PCAPS, ids=lambda p: p.name)
def test_walker_and_scan_match_the_reference_on_every_test_capture(pcap: Path) -> None:
    data = pcap.read_bytes()
    want = reference(data)
    assert want[0] > 0
    assert scanned(pcap) == want
    for sizes in CHUNKINGS:
        assert walk(data, sizes) == want, sizes


@pytest.mark.parametrize(("endian", "nanos"), FORMATS, ids=FORMAT_IDS)
def test_every_walker_reads_both_byte_orders_and_precisions_to_the_ns(
    endian: str, nanos: bool, tmp_path: Path
) -> None:
    src = max(PCAPS, key=lambda p: p.stat().st_size).read_bytes()
    data = convert(src, endian, nanos)
    p = tmp_path / "x.pcap"
    p.write_bytes(data)
    want = reference(data)
    assert want[0] == reference(src)[0] > 10
    if nanos:  # the ns digits survive: not the µs stamps of the source
        assert want[1] != reference(src)[1] and want[2] % 1000 != 0  # type: ignore[operator]
    assert scanned(p) == want
    for sizes in CHUNKINGS:
        assert walk(data, sizes) == want, sizes
    stamps = [ts for ts, _raw in RecordReader(io.BytesIO(data)).records()]
    assert (len(stamps), stamps[0], stamps[-1]) == want[:3]
    prints = list(iter_records(p))
    assert len(prints) == want[0]
    assert prints[0][2].ts == pytest.approx(want[1] / NS, abs=1e-6)  # type: ignore[operator]


@pytest.mark.parametrize("cut", [1, 5, 15, 16, 17, 40])
def test_a_cut_off_last_record_is_not_counted(cut: int, tmp_path: Path) -> None:
    data = max(PCAPS, key=lambda p: p.stat().st_size).read_bytes()[:-cut]
    p = tmp_path / "cut.pcap"
    p.write_bytes(data)
    want = reference(data)
    assert want[3] < len(data)
    assert scanned(p) == want
    for sizes in ([1 << 20], [3], [16], [100]):
        assert walk(data, sizes) == want


def test_header_only_file_has_no_packets() -> None:
    data = PCAPS[0].read_bytes()[:GLOBAL_HEADER_LEN]
    assert walk(data, [4096]) == (0, None, None, GLOBAL_HEADER_LEN)


def _bad(endian: str, per_s: int, kind: str) -> bytes:
    sec, frac, incl, orig = {
        "fraction of a second or more": (1, per_s, 40, 40),
        "caplen above len": (1, 0, 40, 20),
        "caplen above MAX_RECORD": (1, 0, MAX_RECORD + 1, MAX_RECORD + 1),
    }[kind]
    return struct.pack(endian + "IIII", sec, frac, incl, orig) + b"y" * 40


BAD = ["fraction of a second or more", "caplen above len", "caplen above MAX_RECORD"]


@pytest.mark.parametrize(("endian", "nanos"), FORMATS, ids=FORMAT_IDS)
@pytest.mark.parametrize("kind", BAD)
def test_every_walker_stops_at_the_same_garbage(
    kind: str, endian: str, nanos: bool, tmp_path: Path
) -> None:
    good = convert(PCAPS[0].read_bytes(), endian, nanos)
    h = parse_header(good)
    data = good + _bad(h.endian, h.ts_per_second, kind) + good[GLOBAL_HEADER_LEN:]
    p = tmp_path / "g.pcap"
    p.write_bytes(data)
    want = reference(data)
    assert want == reference(good)  # nothing after the garbage counts
    assert scanned(p) == want
    for sizes in ([1 << 20], [13], [16]):
        assert walk(data, sizes) == want
    reader = RecordReader(io.BytesIO(data))
    assert sum(1 for _ in reader.records()) == want[0]
    assert reader.truncated
    assert sum(1 for _ in iter_records(p)) == want[0]


@pytest.mark.parametrize(
    ("frac", "incl", "orig", "ok"),
    [
        (999_999, 60, 60, True),
        (1_000_000, 60, 60, False),
        (0, 60, 1514, True),
        (0, 61, 60, False),
        (0, MAX_RECORD, MAX_RECORD, True),
        (0, MAX_RECORD + 1, MAX_RECORD + 1, False),
    ],
)
def test_the_rule(frac: int, incl: int, orig: int, ok: bool) -> None:
    assert record_ok(frac, incl, orig, 1_000_000) is ok


@pytest.mark.parametrize(
    ("frac", "per_second", "ok"),
    [
        (999_999, 1_000_000, True),
        (1_000_000, 1_000_000, False),  # a ns fraction in a µs file: garbage
        (1_000_000, 1_000_000_000, True),
        (999_999_999, 1_000_000_000, True),
        (1_000_000_000, 1_000_000_000, False),  # a whole second or more
        (0xFFFFFFFF, 1_000_000_000, False),
    ],
)
def test_the_fraction_is_below_one_second_of_the_files_precision(
    frac: int, per_second: int, ok: bool
) -> None:
    assert record_ok(frac, 60, 60, per_second) is ok
