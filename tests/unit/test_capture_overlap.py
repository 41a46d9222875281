from __future__ import annotations

import os
from pathlib import Path

import pytest

from rollcap.capture.overlap import (
    Fingerprint,
    append_sidecar,
    cut_head,
    duplicate_head,
    find_duplicate_head,
    iter_records,
    read_sidecar,
    tail_since,
    write_sidecar,
)
from rollcap.pcapfile import scan
from rollcap.spoolfs import Dir
from tests.unit.capture_pcaps import packets, write_nano_pcap, write_pcap


def strip_duplicates(path: Path, tail: list[Fingerprint]) -> tuple[int, list[Fingerprint]]:
    """What Handoff.hand_off does with a sidecar, minus writing it back."""
    fd = os.open(path, os.O_RDWR)
    try:
        d = find_duplicate_head(fd, tail)
        if d.records:
            os.close(cut_head(Dir(path.parent), path.name, fd, d.cut))
    finally:
        os.close(fd)
    return d.records, d.rest


def fp(ts: float, d: str) -> Fingerprint:
    return Fingerprint(ts, d)


def test_longest_head_equal_to_the_tail_end() -> None:
    tail = [fp(1.0, "a"), fp(2.0, "b"), fp(3.0, "c")]
    more = [fp(4.0, "d")]
    assert duplicate_head(tail, [fp(2.0, "b"), fp(3.0, "c"), *more], whole=False) == (2, 1)
    assert duplicate_head(tail, [fp(3.005, "c"), *more]) == (1, 2)  # within 10 ms
    assert duplicate_head(tail, [fp(3.05, "c")]) == (0, 0)  # same bytes, another packet
    assert duplicate_head(tail, [fp(4.0, "d")]) == (0, 0)
    assert duplicate_head([], [fp(1.0, "a")]) == (0, 0)
    # the new file also has packets before the old one's last: no strip (duplicates kept)
    assert duplicate_head(tail, [fp(1.0, "a"), fp(2.5, "x"), fp(3.0, "c")]) == (0, 0)


def test_a_new_file_that_is_all_overlap_matches_the_middle_of_the_tail() -> None:
    tail = [fp(1.0, "a"), fp(2.0, "b"), fp(3.0, "c"), fp(4.0, "d")]
    # -C rotated the new tcpdump's output during the overlap: its first file is b, c
    assert duplicate_head(tail, [fp(2.0, "b"), fp(3.0, "c")], whole=True) == (2, 1)
    # ... but only if that is the whole file: a file going on with other packets
    # after c is not a duplicate of the middle of the tail
    assert duplicate_head(tail, [fp(2.0, "b"), fp(3.0, "c")], whole=False) == (0, 0)


def test_strip_removes_only_the_overlap(tmp_path: Path) -> None:
    pk = packets(100)
    old = write_pcap(tmp_path / "old.pcap", pk[:60])
    new = write_pcap(tmp_path / "new.pcap", pk[40:])
    listening = pk[45][0]
    tail = tail_since(old, listening)
    side = ".overlap.json"
    write_sidecar(Dir(tmp_path), side, tail)
    again = read_sidecar(Dir(tmp_path), side)
    assert again == tail
    assert strip_duplicates(new, again) == (20, [])
    got = [f.ts for _o, _n, f in iter_records(new)]
    assert got == [fp_ts for fp_ts, _d in pk[60:]]
    assert scan(new).packets == 40 and not scan(new).truncated
    # stripping again finds nothing: the file now starts after the old one's end
    assert strip_duplicates(new, again) == (0, [])


def test_an_overlap_spread_over_several_files_on_both_sides_is_stripped_exactly(
    tmp_path: Path,
) -> None:
    """A burst during a make-before-break switch with small -C files: the old
    tcpdump wrote the overlap into two files, the new one into two as well."""
    pk = packets(100)
    listening = pk[40][0]  # the new tcpdump listened at packet 40; the old one ran to 79
    old_a = write_pcap(tmp_path / "old-a.pcap", pk[:60])
    old_b = write_pcap(tmp_path / "old-b.pcap", pk[60:80])
    side, d = ".overlap.json", Dir(tmp_path)
    for f in (old_a, old_b):
        append_sidecar(d, side, tail_since(f, listening))
    append_sidecar(d, side, tail_since(old_b, listening))  # fingerprinted twice: no change
    new_c = write_pcap(tmp_path / "new-c.pcap", pk[40:70])
    new_d = write_pcap(tmp_path / "new-d.pcap", pk[70:100])
    tail = read_sidecar(d, side)
    assert tail is not None
    removed, rest = strip_duplicates(new_c, tail)
    assert removed == 30 and scan(new_c).packets == 0  # all of it was in the old files
    removed, rest = strip_duplicates(new_d, rest)
    assert removed == 10 and rest == []
    assert [f.ts for _o, _n, f in iter_records(new_d)] == [ts for ts, _d in pk[80:]]


def test_a_bad_sidecar_strips_nothing(tmp_path: Path) -> None:
    """Sidecars are read back as untrusted: out-of-range, malformed or not a plain
    file means "no sidecar" (duplicates kept), never a crash or a wrong cut."""
    d = Dir(tmp_path)
    for i, content in enumerate(
        [b'[[1e300, "00"]]', b'[["x", 1]]', b"{", b'[[-1, "' + b"a" * 24 + b'"]]']
    ):
        (tmp_path / f"s{i}").write_bytes(content)
        assert read_sidecar(d, f"s{i}") is None
    (tmp_path / "link").symlink_to(tmp_path / "s0")
    assert read_sidecar(d, "link") is None


def test_a_reload_from_micro_to_nano_still_strips_the_overlap(tmp_path: Path) -> None:
    """capture.timestamp_precision changed by a reload: the switch's old
    generation writes µs, the new one ns. The fingerprint is the bytes and the
    time within 10 ms, so the precision does not matter (either direction)."""
    pk = packets(100)
    for old_nano in (False, True):
        d = tmp_path / str(old_nano)
        d.mkdir()
        if old_nano:
            old, new = write_nano_pcap(d / "old.pcap", pk[:60]), write_pcap(d / "new.pcap", pk[40:])
        else:
            old = write_pcap(d / "old.pcap", pk[:60])
            new = write_nano_pcap(d / "new.pcap", pk[40:], endian=">")
        header = new.read_bytes()[:24]
        assert strip_duplicates(new, tail_since(old, pk[45][0])) == (20, [])
        assert new.read_bytes()[:24] == header  # still the new generation's format
        s = scan(new)
        assert s.packets == 40 and not s.truncated
        assert s.first_ts == pytest.approx(pk[60][0], abs=1e-6)
