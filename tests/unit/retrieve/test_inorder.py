"""Pieces appended to the output while later ones download (retrieve/inorder.py)."""

from __future__ import annotations

from pathlib import Path

from rollcap.pcapfile import parse_header
from rollcap.retrieve.inorder import InOrder
from rollcap.retrieve.merge import Part, write_ordered
from rollcap.retrieve.records import file_header
from tests.support.archive import NS, write_pcap


def _piece(tmp: Path, name: str, stamps: list[int]) -> Part:
    frames = [(t, bytes([len(name), i % 256]) * 30, 60) for i, t in enumerate(stamps)]
    path = write_pcap(tmp / f"{name}.pcap", frames)
    return Part(path, stamps[0], stamps[-1], len(stamps), min(stamps), max(stamps))


def test_pieces_finishing_in_any_order_are_written_as_the_merge_writes_them(
    tmp_path: Path,
) -> None:
    parts = [_piece(tmp_path, f"p{i}", [(i * 10 + j) * NS for j in range(4)]) for i in range(4)]
    head = file_header(linktype=1, snaplen=262144, nanos=False)
    h = parse_header(parts[0].path.read_bytes())
    with open(tmp_path / "want.pcap", "wb") as f:
        write_ordered(f, [Part(**{**vars(p), "path": _copy(p.path)}) for p in parts], tmp_path,
                      linktype=1, snaplen=262144, nanos=False)  # fmt: skip
    io = InOrder(tmp_path / "out.pcap", [0, 1, 2, 3])
    for i in (2, 0, 3, 1):  # the downloads finish out of order
        io.done(i, h, parts[i])
    assert io.complete(parts, head, nanos=False) == 16
    io.close()
    assert (tmp_path / "out.pcap").read_bytes() == (tmp_path / "want.pcap").read_bytes()


def _copy(path: Path) -> Path:
    dest = path.with_name("copy-" + path.name)
    dest.write_bytes(path.read_bytes())
    return dest


def test_a_piece_that_reaches_back_in_time_sends_the_fetch_to_the_merge(tmp_path: Path) -> None:
    # the second capture (by its recorded start) holds a packet before the first's last
    a = _piece(tmp_path, "a", [10 * NS, 20 * NS])
    b = _piece(tmp_path, "b", [15 * NS, 30 * NS])
    h = parse_header(a.path.read_bytes())
    io = InOrder(tmp_path / "out.pcap", [0, 1])
    io.done(0, h, a)
    io.done(1, h, b)
    assert io.complete([a, b], file_header(linktype=1, snaplen=262144, nanos=False),
                       nanos=False) is None  # fmt: skip
    io.close()
    assert (tmp_path / "out.pcap").stat().st_size == 0  # truncated for the merge
    assert a.path.exists() and b.path.exists()  # the pieces are still there to merge


def test_a_missing_or_nanosecond_piece_is_not_taken_for_the_whole(tmp_path: Path) -> None:
    a = _piece(tmp_path, "a", [10 * NS])
    b = _piece(tmp_path, "b", [20 * NS])
    h = parse_header(a.path.read_bytes())
    head = file_header(linktype=1, snaplen=262144, nanos=True)
    io = InOrder(tmp_path / "out.pcap", [0, 1, 2])
    io.done(0, h, a)
    io.done(1, None, None)  # refused
    io.done(2, h, b)
    # another piece (header only) was in ns: the output is ns, these µs records are not
    assert io.complete([a, b], head, nanos=True) is None
    io.close()
