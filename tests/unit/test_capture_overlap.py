from __future__ import annotations

from pathlib import Path

from rollcap.capture.overlap import (
    Fingerprint,
    duplicate_head,
    iter_records,
    read_sidecar,
    strip_duplicates,
    tail_since,
    write_sidecar,
)
from rollcap.pcapfile import scan
from tests.unit.capture_pcaps import packets, write_pcap


def fp(ts: float, d: str) -> Fingerprint:
    return Fingerprint(ts, d)


def test_longest_head_equal_to_the_tail_end() -> None:
    tail = [fp(1.0, "a"), fp(2.0, "b"), fp(3.0, "c")]
    assert duplicate_head(tail, [fp(2.0, "b"), fp(3.0, "c"), fp(4.0, "d")]) == 2
    assert duplicate_head(tail, [fp(3.005, "c"), fp(4.0, "d")]) == 1  # within 10 ms
    assert duplicate_head(tail, [fp(3.05, "c")]) == 0  # same bytes, another packet
    assert duplicate_head(tail, [fp(4.0, "d")]) == 0
    assert duplicate_head([], [fp(1.0, "a")]) == 0
    # the new file also has packets before the old one's last: no strip (duplicates kept)
    assert duplicate_head(tail, [fp(1.0, "a"), fp(2.5, "x"), fp(3.0, "c")]) == 0


def test_strip_removes_only_the_overlap(tmp_path: Path) -> None:
    pk = packets(100)
    old = write_pcap(tmp_path / "old.pcap", pk[:60])
    new = write_pcap(tmp_path / "new.pcap", pk[40:])
    listening = pk[45][0]
    tail = tail_since(old, listening)
    side = tmp_path / ".overlap.json"
    write_sidecar(side, tail)
    again = read_sidecar(side)
    assert again == tail
    assert strip_duplicates(new, again) == 20
    got = [f.ts for _o, _n, f in iter_records(new)]
    assert got == [fp_ts for fp_ts, _d in pk[60:]]
    assert scan(new).packets == 40 and not scan(new).truncated
    # stripping again finds nothing: the file now starts after the old one's end
    assert strip_duplicates(new, again) == 0
