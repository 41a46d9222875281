from __future__ import annotations

import json
import os
import random
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from rollcap.capture import switching
from rollcap.capture.handoff import HandoffResult
from rollcap.capture.switching import (
    SO_TIMESTAMPNS,
    STAMP,
    Tail,
    append_sidecar,
    drop_records,
    find_duplicates,
    iter_records,
    pair_duplicates,
    read_sidecar,
    read_switch,
    sidecar_name,
    stamp_fds,
    switch_name,
    tail_since,
    write_sidecar,
    write_switch,
)
from rollcap.pcapfile import scan
from rollcap.spool.fs import Dir
from rollcap.spool.workname import WorkName, list_work
from tests.support.pcaps import packets, write_nano_pcap, write_pcap
from tests.unit.capture.fakes import enospc, supervisor


def strip_duplicates(path: Path, tail: Tail) -> tuple[int, Tail]:
    """What Handoff.hand_off does with a sidecar, minus writing it back."""
    fd = os.open(path, os.O_RDWR)
    try:
        d = find_duplicates(fd, tail)
        if d.records:
            os.close(drop_records(Dir(path.parent), path.name, fd, d.records))
    finally:
        os.close(fd)
    return len(d), d.rest


def fp(ts: float, d: str, tick: int = 1000) -> bytes:
    """The key of a record stamped ts with digest d, at tick."""
    return STAMP.pack(round(ts * 1e9) // tick) + d.encode().ljust(12, b".")


def pair(tail: list[bytes], head: list[bytes], tick: int = 1000,
         head_tick: int | None = None) -> tuple[list[int], list[bytes]]:  # fmt: skip
    """pair_duplicates of keys: (duplicate indices of head, the rest of the tail, sorted)."""
    dups, rest = pair_duplicates(Tail(tail, tick), Tail(head, head_tick or tick))
    return dups, sorted(rest.keys)


def stamps(t: Tail) -> list[float]:
    return sorted(STAMP.unpack_from(k)[0] * t.tick / 1_000_000_000 for k in t.keys)


def test_the_head_paired_with_the_tail_end_is_duplicates() -> None:
    tail = [fp(1.0, "a"), fp(2.0, "b"), fp(3.0, "c")]
    more = [fp(4.0, "d")]
    assert pair(tail, [fp(2.0, "b"), fp(3.0, "c"), *more]) == ([0, 1], tail[:1])
    assert pair(tail, [fp(3.05, "c")]) == ([], tail)  # same bytes, another packet
    assert pair(tail, [fp(4.0, "d")]) == ([], tail)
    assert pair([], [fp(1.0, "a")]) == ([], [])


def test_a_record_pairs_only_with_the_same_timestamp() -> None:
    """The kernel stamps a packet once for every socket: the same bytes 1 µs
    apart are two packets, and the earlier rule (within 10 ms) made them one."""
    tail = [fp(3.0, "c")]
    assert pair(tail, [fp(3.000001, "c")]) == ([], tail)
    assert pair(tail, [fp(3.005, "c")]) == ([], tail)
    assert pair(tail, [fp(3.0, "c")]) == ([0], [])
    assert pair(tail, [fp(3.0, "d")]) == ([], tail)  # the same stamp, other bytes


def test_a_packet_only_one_tcpdump_got_leaves_the_others_paired() -> None:
    """At a high rate either socket may drop a packet of the overlap: the record
    only the new one got is kept, the rest of the overlap is still removed."""
    tail = [fp(1.0, "a"), fp(2.0, "b"), fp(3.0, "c"), fp(4.0, "d")]
    # the old one missed x, the new one missed b
    head = [fp(1.0, "a"), fp(2.5, "x"), fp(3.0, "c"), fp(4.0, "d"), fp(5.0, "e")]
    assert pair(tail, head) == ([0, 2, 3], [tail[1]])
    # the new one's first packet came before the old one's copy of anything
    assert pair(tail, [fp(0.5, "y"), fp(3.0, "c"), fp(4.0, "d")]) == ([1, 2], tail[:2])


def test_identical_packets_pair_as_a_multiset_per_timestamp() -> None:
    """n identical frames with one timestamp (a µs file, a SPAN port that sees a
    frame twice): min(old, new) of them are removed, so max(old, new) stay."""
    tail = [fp(1.0, "a"), fp(1.0, "a"), fp(1.002, "b")]
    head = [fp(1.0, "a"), fp(1.0, "a"), fp(1.0, "a"), fp(1.002, "b")]
    assert pair(tail, head) == ([0, 1, 3], [])
    # one old copy, two new ones: one stays
    assert pair([fp(1.0, "a")], [fp(1.0, "a"), fp(1.0, "a")]) == ([0], [])
    # two old copies, one new one: the other copy is left for the next file
    assert pair([fp(1.0, "a")] * 2, [fp(1.0, "a")]) == ([0], [fp(1.0, "a")])
    # ring order across CPUs may differ a little: the class pairs, not the order
    assert pair([fp(1.0, "c"), fp(1.001, "b")], [fp(1.001, "b"), fp(1.0, "c")]) == ([0, 1], [])


def test_a_ns_record_pairs_with_its_us_copy() -> None:
    """A reload that changes the precision: the ns stamp truncated to µs is what
    libpcap wrote into the µs file."""
    us = [fp(1.000001, "a")]
    assert pair(us, [fp(1.000001999, "a", 1)], head_tick=1) == ([0], [])
    assert pair(us, [fp(1.000002, "a", 1)], head_tick=1) == ([], us)
    # and the other way round: a ns tail, a µs head
    assert pair([fp(1.000001999, "a", 1)], us, tick=1, head_tick=1000) == ([0], [])


LOOP = 185  # frames in the replayed capture of the soak (issue 24)
STEP = 50e-6  # 20k packets/s: a frame recurs every 9.25 ms, within the old 10 ms


def _loop_wire(n: int, tag: str = "") -> list[tuple[float, bytes]]:
    frames = [f"{tag}frame{i:03d}".encode() * 6 for i in range(LOOP)]
    return [(1_800_000_000.0 + i * STEP, frames[i % LOOP]) for i in range(n)]


def test_a_looped_capture_loses_nothing_at_a_switch(tmp_path: Path) -> None:
    """The soak of issue 24: a 185-frame capture replayed in a loop at 20k pps.
    The old rule paired the new head with the previous copy of each frame and
    removed one loop (185 packets) that only the new tcpdump had."""
    wire = _loop_wire(60_000)
    spawned, stopped = 20_000, 44_000  # the old one runs 1.2 s past the new one's start
    old = write_pcap(tmp_path / "old.pcap", wire[:stopped])
    new = write_pcap(tmp_path / "new.pcap", wire[spawned:])
    removed, rest = strip_duplicates(new, tail_since(old, wire[spawned][0]))
    assert removed == stopped - spawned and not rest
    got = [r.ns for f in (old, new) for _o, _n, r in iter_records(f)]
    assert sorted(got) == [round(ts * 1e6) * 1000 for ts, _d in wire]


def test_a_looped_capture_with_drops_and_files_cut_keeps_each_packet_once(
    tmp_path: Path,
) -> None:
    """Repetitive traffic, each socket dropping at random, -C cutting both sides:
    every packet at least one tcpdump got is stored exactly once."""
    rng = random.Random(24)
    for run in range(20):
        d = tmp_path / str(run)
        d.mkdir()
        wire = _loop_wire(3000, tag=f"r{run}")
        spawned, stopped = rng.randrange(300, 900), rng.randrange(1500, 2500)
        loss = rng.choice([0.0, 0.01, 0.2])
        old = [p for i, p in enumerate(wire) if i < stopped and rng.random() >= loss]
        new = [p for i, p in enumerate(wire) if i >= spawned and rng.random() >= loss]
        old_files, new_files = _cut(d, "old", old, rng), _cut(d, "new", new, rng)
        side, work = ".overlap.json", Dir(d)
        for f in old_files:
            append_sidecar(work, side, tail_since(f, wire[spawned][0]), f.name)
        tail = read_sidecar(work, side)
        assert tail is not None
        for f in new_files:
            _removed, tail = strip_duplicates(f, tail)
            if not tail:
                break
            write_sidecar(work, side, tail)  # as the hand-off does: read back for the next
            tail = read_sidecar(work, side)
            assert tail is not None
        got = sorted(r.ts for f in old_files + new_files for _o, _n, r in iter_records(f))
        assert got == pytest.approx(sorted({p[0] for p in old} | {p[0] for p in new})), run


def test_stamps_that_differ_between_sockets_leave_duplicates_never_a_loss(
    tmp_path: Path,
) -> None:
    """Without the kernel's shared stamp (no socket asked for timestamps) each
    socket reads the clock itself, 1-50 µs apart: nothing pairs that should not."""
    wire = _loop_wire(6000)
    old = write_pcap(tmp_path / "old.pcap", wire[:4000])
    late = [(ts + 1e-6, d) for ts, d in wire[2000:]]  # the new socket's own reading
    new = write_pcap(tmp_path / "new.pcap", late)
    removed, _rest = strip_duplicates(new, tail_since(old, wire[2000][0]))
    assert removed == 0


def test_a_sidecar_of_the_earlier_format_strips_nothing(tmp_path: Path) -> None:
    """A restart after an upgrade: the earlier version's sidecar (float stamps,
    paired within 10 ms) is no sidecar, the new file keeps its duplicates."""
    pk = packets(100)
    old = write_pcap(tmp_path / "old.pcap", pk[:60])
    new = write_pcap(tmp_path / "new.pcap", pk[40:])
    tail = [f for _o, _n, f in iter_records(old, pk[45][0] - switching.TAIL_MARGIN)]
    format1 = [[f.ts, f.digest] for f in tail]
    format2 = {"format": 2, "tick_ns": 1000, "records": [[f.ns, f.digest] for f in tail]}
    d, side = Dir(tmp_path), sidecar_name(2)
    for legacy in (format1, format2):
        (tmp_path / side).write_text(json.dumps(legacy))
        assert read_sidecar(d, side) is None
        append_sidecar(d, side, tail_since(old, pk[45][0]), old.name)  # replaced, no crash
        again = read_sidecar(d, side)
        assert again is not None and again.keys == tail_since(old, pk[45][0]).keys
    assert scan(new).packets == 60


def test_a_new_file_inside_the_overlap_leaves_the_rest_of_the_tail(tmp_path: Path) -> None:
    """-C rotated the new tcpdump's output during the overlap: its first file is
    all within the tail's time, so the overlap goes on in its next file, even
    with a packet the old one did not get among them."""
    pk = packets(100)
    old = write_pcap(tmp_path / "old.pcap", pk[:80])
    extra = (pk[50][0] + 0.0004, b"only-the-new-one" * 4)
    new = write_pcap(tmp_path / "new.pcap", [*pk[40:51], extra, *pk[51:60]])
    tail = tail_since(old, pk[40][0])
    removed, rest = strip_duplicates(new, tail)
    assert removed == 20
    assert [f.ts for _o, _n, f in iter_records(new)] == [extra[0]]
    assert stamps(rest) == [ts for ts, _d in pk[60:80]]


def test_records_are_dropped_in_place_and_bad_ranges_refused(tmp_path: Path) -> None:
    pk = packets(10)
    f = write_pcap(tmp_path / "f.pcap", pk)
    recs = list(iter_records(f))
    fd = os.open(f, os.O_RDWR)
    try:
        with pytest.raises(ValueError, match="out of order"):
            drop_records(Dir(tmp_path), f.name, fd, [recs[3][:2], recs[1][:2]])
        assert [p.name for p in tmp_path.iterdir()] == ["f.pcap"]  # no temp left behind
        os.close(drop_records(Dir(tmp_path), f.name, fd, [recs[0][:2], recs[4][:2], recs[9][:2]]))
    finally:
        os.close(fd)
    kept = [i for i in range(10) if i not in (0, 4, 9)]
    assert [r.ts for _o, _n, r in iter_records(f)] == [pk[i][0] for i in kept]
    assert scan(f).packets == 7 and not scan(f).truncated


def test_no_packet_either_tcpdump_got_is_lost_and_no_duplicate_kept(tmp_path: Path) -> None:
    """A simulated switch, many times over: the wire, an old tcpdump that stops
    and a new one that starts during it, each dropping packets at random and
    cutting -C files at random. Old files plus stripped new files hold every
    packet at least one of them got, exactly once."""
    rng = random.Random(14)
    for run in range(60):
        d = tmp_path / str(run)
        d.mkdir()
        wire = packets(400, tag=f"r{run}-")
        spawned, stopped = rng.randrange(50, 150), rng.randrange(200, 350)
        loss = rng.choice([0.0, 0.01, 0.2])
        old = [p for i, p in enumerate(wire) if i < stopped and rng.random() >= loss]
        new = [p for i, p in enumerate(wire) if i >= spawned and rng.random() >= loss]
        old_files = _cut(d, "old", old, rng)
        new_files = _cut(d, "new", new, rng)
        side, work = ".overlap.json", Dir(d)
        for f in old_files:
            append_sidecar(work, side, tail_since(f, wire[spawned][0]), f.name)
        tail = read_sidecar(work, side)
        assert tail is not None
        for f in new_files:
            _removed, tail = strip_duplicates(f, tail)
            if not tail:
                break
        got = sorted(r.ts for f in old_files + new_files for _o, _n, r in iter_records(f))
        assert got == sorted({p[0] for p in old} | {p[0] for p in new}), run


def _cut(d: Path, stem: str, pk: list[tuple[float, bytes]], rng: random.Random) -> list[Path]:
    bounds = sorted(rng.sample(range(1, len(pk)), 3)) if len(pk) > 4 else []
    parts = [pk[a:b] for a, b in zip([0, *bounds], [*bounds, len(pk)], strict=True)]
    return [write_pcap(d / f"{stem}{i}.pcap", part) for i, part in enumerate(parts)]


def test_strip_removes_only_the_overlap(tmp_path: Path) -> None:
    pk = packets(100)
    old = write_pcap(tmp_path / "old.pcap", pk[:60])
    new = write_pcap(tmp_path / "new.pcap", pk[40:])
    listening = pk[45][0]
    tail = tail_since(old, listening)
    side = ".overlap.json"
    write_sidecar(Dir(tmp_path), side, tail)
    again = read_sidecar(Dir(tmp_path), side)
    assert again is not None and again.keys == tail.keys and again.tick == 1000
    assert strip_duplicates(new, again)[0] == 20
    got = [f.ts for _o, _n, f in iter_records(new)]
    assert got == [fp_ts for fp_ts, _d in pk[60:]]
    assert scan(new).packets == 40 and not scan(new).truncated
    # stripping again finds nothing: the file now starts after the old one's end
    assert strip_duplicates(new, again)[0] == 0


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
        append_sidecar(d, side, tail_since(f, listening), f.name)
    before = (tmp_path / side).read_bytes()
    append_sidecar(d, side, tail_since(old_b, listening), old_b.name)  # twice: no change
    assert (tmp_path / side).read_bytes() == before
    new_c = write_pcap(tmp_path / "new-c.pcap", pk[40:70])
    new_d = write_pcap(tmp_path / "new-d.pcap", pk[70:100])
    tail = read_sidecar(d, side)
    assert tail is not None
    removed, rest = strip_duplicates(new_c, tail)
    assert removed == 30 and scan(new_c).packets == 0  # all of it was in the old files
    removed, rest = strip_duplicates(new_d, rest)
    assert removed == 10 and not rest
    assert [f.ts for _o, _n, f in iter_records(new_d)] == [ts for ts, _d in pk[80:]]


def test_a_bad_sidecar_strips_nothing(tmp_path: Path) -> None:
    """Sidecars are read back as untrusted: out-of-range, malformed or not a plain
    file means "no sidecar" (duplicates kept), never a crash or a wrong cut."""
    d = Dir(tmp_path)
    for i, content in enumerate(
        [b'[[1e300, "00"]]', b'[["x", 1]]', b"{", b'[[-1, "' + b"a" * 24 + b'"]]',
         b'{"format": 2, "tick_ns": 7, "records": []}',
         b'{"format": 2, "tick_ns": 1, "records": [[1.5, "' + b"a" * 24 + b'"]]}',
         b'{"format": 2, "tick_ns": 1, "records": [[-1, "' + b"a" * 24 + b'"]]}',
         b'{"format": 2, "tick_ns": 1}']
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
        removed, rest = strip_duplicates(new, tail_since(old, pk[45][0]))
        assert (removed, rest.keys) == (20, [])
        assert new.read_bytes()[:24] == header  # still the new generation's format
        s = scan(new)
        assert s.packets == 40 and not s.truncated
        assert s.first_ts == pytest.approx(pk[60][0], abs=1e-6)


def test_records_only_the_new_tcpdump_got_are_counted(tmp_path: Path) -> None:
    """The hand-off logs them (overlap_unpaired): how often the sockets disagree."""
    pk = packets(50)
    old = write_pcap(tmp_path / "old.pcap", [p for i, p in enumerate(pk[:40]) if i != 30])
    new = write_pcap(tmp_path / "new.pcap", pk[20:])
    fd = os.open(new, os.O_RDONLY)
    try:
        d = find_duplicates(fd, tail_since(old, pk[20][0]))
    finally:
        os.close(fd)
    assert (len(d), d.unpaired, d.rest.keys) == (19, 1, [])  # packet 30: the old one missed it


def test_switch_record_round_trip_and_reload(tmp_path: Path) -> None:
    sup = supervisor(tmp_path)
    write_pcap(sup.spool.work / "g000004-20261126T120000-eth0.pcap", packets(3))
    write_switch(sup.dirs.work, switch_name(4), 5, 1_800_000_000.5)
    assert read_switch(sup.dirs.work, switch_name(4)) == (5, 1_800_000_000.5)
    sup.load_switches()
    overlaps = sup.session.overlaps
    assert overlaps.next_of == {4: 5} and overlaps.since == {5: 1_800_000_000.5}
    (sup.spool.work / ".switch-g000009.json").write_text("{not json")
    assert read_switch(sup.dirs.work, ".switch-g000009.json") is None


def test_a_tail_that_cannot_be_remembered_holds_the_hand_off_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sup = supervisor(tmp_path)
    old = write_pcap(sup.spool.work / "g000004-20261126T120000-eth0.pcap", packets(5))
    sup.session.overlaps.begin(4, 5, packets(5)[2][0])  # generation 5 replaced 4
    monkeypatch.setattr(switching, "append_sidecar", enospc)
    sup.process_work(block=True)  # generation 4 is not live: its file is finished
    assert old.exists() and sup.session.overlaps.next_of == {4: 5}
    assert "No space left on device" in sup.last_error
    monkeypatch.undo()
    sup.process_work(block=True)
    assert not old.exists() and sup.session.overlaps.next_of == {}
    assert (sup.spool.work / sidecar_name(5)).exists()
    assert sup.n.handed_off_files == 1


def test_an_overlap_over_several_files_on_both_sides_is_stored_once(tmp_path: Path) -> None:
    """A burst during a quiet-link switch with small -C files: the old tcpdump
    wrote the overlap into two files, the new one into three."""
    sup = supervisor(tmp_path)
    pk = packets(100)
    old_gen = [pk[:50], pk[50:80]]  # the old tcpdump ran until packet 79
    new_gen = [pk[40:55], pk[55:75], pk[75:]]  # the new one listened from packet 40
    for i, part in enumerate(old_gen):
        write_pcap(sup.spool.work / f"g000004-20261126T120000-eth0.pcap{i or ''}", part)
    for i, part in enumerate(new_gen):
        write_pcap(sup.spool.work / f"g000005-20261126T120000-eth0.pcap{i or ''}", part)
    sup.session.overlaps.begin(4, 5, pk[40][0])
    sup.process_work(block=True)  # neither generation is live
    stored = sorted(fp.ts for f in sup.spool.ready.iterdir() for _o, _n, fp in iter_records(f))
    assert stored == [ts for ts, _d in pk]  # every packet exactly once
    assert sup.n.duplicates_removed == 40
    assert list(sup.spool.work.iterdir()) == []  # no sidecar or switch record left


def test_a_failed_sidecar_update_leaves_duplicates_never_a_double_strip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rollcap.capture import handoff as handoff_mod

    sup = supervisor(tmp_path)
    pk = packets(60)
    old = write_pcap(tmp_path / "old.pcap", pk[:40])  # already handed off
    write_sidecar(sup.dirs.work, sidecar_name(5), tail_since(old, pk[20][0]))
    all_dup = write_pcap(sup.spool.work / "g000005-20261126T120000-eth0.pcap", pk[20:30])
    write_pcap(sup.spool.work / "g000005-20261126T120000-eth0.pcap1", pk[30:60])
    monkeypatch.setattr(handoff_mod, "write_sidecar", enospc)
    sup.process_work(block=True)
    assert all_dup.read_bytes().count(b"p000020") == 8  # untouched: sidecar first
    monkeypatch.undo()
    sup.process_work(block=True)
    stored = sorted(fp.ts for f in sup.spool.ready.iterdir() for _o, _n, fp in iter_records(f))
    assert stored == [ts for ts, _d in pk[40:]]  # the 20 duplicates gone, nothing else


def test_a_crash_after_the_last_strip_never_strips_the_file_again(tmp_path: Path) -> None:
    """The overlap ends in the new file, whose socket holds a record twice (same
    stamp, same bytes) that the old one holds once: the strip removes one copy.
    A supervisor that dies before that file's rename into ready/ must not strip
    the stripped copy again at its next start (it would remove the copy only
    the new socket captured)."""
    sup = supervisor(tmp_path)
    pk = packets(4)
    twice = [pk[0], pk[0], pk[1], pk[2], pk[3]]
    old = write_pcap(tmp_path / "old.pcap", pk[:1])  # already handed off
    write_sidecar(sup.dirs.work, sidecar_name(5), tail_since(old, pk[0][0]))
    name = "g000005-20261126T120000-eth0.pcap"
    new = write_pcap(sup.spool.work / name, twice)
    w = WorkName.parse(name)
    assert w is not None
    p = sup.session.handoff.prepare(w, name)  # stripped; then the supervisor dies
    assert not isinstance(p, HandoffResult) and p.stripped == 1
    p.close()
    assert sum(1 for _ in iter_records(new)) == 4
    sup.process_work(block=True)  # the next start hands it off as it is
    stored = [fp.ts for f in sup.spool.ready.iterdir() for _o, _n, fp in iter_records(f)]
    assert sorted(stored) == [ts for ts, _d in twice[1:]]


def test_every_tcpdump_inherits_the_socket_that_keeps_kernel_stamps_shared() -> None:
    """The exact pairing needs the kernel to stamp each packet once for all
    sockets: the supervisor's SO_TIMESTAMPNS socket turns that on, and each
    tcpdump inherits it so it stays on while a tcpdump runs."""
    fds = stamp_fds()
    assert len(fds) == 1 and stamp_fds() == fds  # one socket per process
    s = socket.socket(fileno=os.dup(fds[0]))
    try:
        assert s.getsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS) == 1
    finally:
        s.close()
    out = subprocess.run(["sh", "-c", f"test -S /proc/self/fd/{fds[0]} && echo inherited"],
                         pass_fds=fds, capture_output=True, text=True)  # fmt: skip
    assert out.stdout.strip() == "inherited"  # as Tcpdump passes it (keep_fds)


def test_the_tail_of_a_big_file_is_walked_from_near_its_end(tmp_path: Path) -> None:
    """tail_since starts at a record proved near the end (not at the first
    record) and finds exactly the records the whole walk finds."""
    rng = random.Random(2)
    pk = [(1_800_000_000.0 + i * 0.0001, rng.randbytes(rng.choice((60, 600, 1400))))
          for i in range(30_000)]  # fmt: skip
    old = write_pcap(tmp_path / "old.pcap", pk)
    since = pk[29_000][0]
    whole = [fp for _o, _n, fp in iter_records(old, since - switching.TAIL_MARGIN, start=24)]
    tail = tail_since(old, since)
    assert [(STAMP.unpack_from(k)[0] * tail.tick, k[8:].hex()) for k in tail.keys] == [
        (f.ns, f.digest) for f in whole]  # fmt: skip
    assert len(whole) > 1000
    first = min(o for o, _n, _f in iter_records(old, since - switching.TAIL_MARGIN))
    walked = [o for o, _n, _f in iter_records(old, 0.0, start=None)]
    assert walked[0] == 24  # no since: from the first record
    assert first > old.stat().st_size // 2


def test_the_loop_goes_on_while_the_strip_runs_and_hands_off_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The overlap's strip runs on the strip worker: the loop's pass returns while
    it runs, the interface's files wait for it, and then each packet is stored once."""
    import threading

    sup = supervisor(tmp_path)
    pk = packets(100)
    write_pcap(sup.spool.work / "g000004-20261126T120000-eth0.pcap", pk[:60])
    write_pcap(sup.spool.work / "g000005-20261126T120000-eth0.pcap", pk[40:70])
    write_pcap(sup.spool.work / "g000005-20261126T120000-eth0.pcap1", pk[70:])
    sup.session.overlaps.begin(4, 5, pk[40][0])
    release, started = threading.Event(), threading.Event()
    fingerprint = sup.session.overlaps.fingerprint

    def held(*a: object) -> None:
        started.set()
        assert release.wait(30)
        fingerprint(*a)  # type: ignore[arg-type]

    monkeypatch.setattr(sup.session.overlaps, "fingerprint", held)
    sup.process_work()  # returns: the strip waits for release
    assert started.wait(30) and sup.session.queue.busy
    assert list(sup.spool.ready.iterdir()) == []  # nothing of eth0 jumped the queue
    release.set()
    sup.process_work(block=True)  # the old file's job, then the new files' strip
    stored = sorted(fp.ts for f in sup.spool.ready.iterdir() for _o, _n, fp in iter_records(f))
    assert stored == [ts for ts, _d in pk]  # every packet exactly once
    assert sup.n.duplicates_removed == 20 and not sup.session.queue.busy


def test_the_sidecar_round_trips_and_each_old_file_is_appended_not_rewritten(
    tmp_path: Path,
) -> None:
    """Format 3: the keys, their resolution and the files they came from come
    back as written; a further old file is appended to the same inode, the
    bytes before it untouched (no rewrite per -C file: quadratic in files)."""
    pk = packets(100)
    old_a = write_nano_pcap(tmp_path / "a.pcap", pk[:60])
    old_b = write_nano_pcap(tmp_path / "b.pcap", pk[60:80])
    d, side = Dir(tmp_path), sidecar_name(7)
    ta, tb = tail_since(old_a, pk[40][0]), tail_since(old_b, pk[40][0])
    assert (len(ta), len(tb), ta.tick) == (60, 20, 1)  # from 0.25 s before packet 40
    write_sidecar(d, side, Tail(ta.keys, ta.tick, frozenset({"a.pcap"})))
    assert read_sidecar(d, side) == Tail(ta.keys, 1, frozenset({"a.pcap"}))
    first = (tmp_path / side).read_bytes()
    ino = (tmp_path / side).stat().st_ino
    append_sidecar(d, side, tb, "b.pcap")
    assert (tmp_path / side).stat().st_ino == ino
    assert (tmp_path / side).read_bytes().startswith(first)
    assert read_sidecar(d, side) == Tail(ta.keys + tb.keys, 1, frozenset({"a.pcap", "b.pcap"}))
    # a section of another resolution: all are read at the coarser one
    append_sidecar(d, side, Tail([fp(pk[85][0], "x")], 1000), "c\udcff.pcap")  # bytes as named
    both = read_sidecar(d, side)
    assert both is not None and both.tick == 1000 and len(both) == 81
    assert both.keys[:80] == Tail(ta.keys + tb.keys, 1).at(1000)
    assert both.files == {"a.pcap", "b.pcap", "c\udcff.pcap"}


def test_an_interrupted_append_is_left_out_and_done_again(tmp_path: Path) -> None:
    """A write cut short (killed, ENOSPC): the section is ignored on reading (fewer
    keys only pair fewer) and cut off when the file is fingerprinted again."""
    pk = packets(100)
    old_a = write_pcap(tmp_path / "a.pcap", pk[:60])
    old_b = write_pcap(tmp_path / "b.pcap", pk[60:80])
    d, side = Dir(tmp_path), sidecar_name(7)
    ta, tb = tail_since(old_a, pk[40][0]), tail_since(old_b, pk[40][0])
    append_sidecar(d, side, ta, "a.pcap")
    whole = (tmp_path / side).stat().st_size
    append_sidecar(d, side, tb, "b.pcap")
    full = (tmp_path / side).read_bytes()
    for cut in (3, 12, 25, len(full) - whole - 1):  # in the section header, name, keys
        (tmp_path / side).write_bytes(full[: whole + cut])
        assert read_sidecar(d, side) == Tail(ta.keys, 1000, frozenset({"a.pcap"}))
        append_sidecar(d, side, tb, "b.pcap")
        assert (tmp_path / side).read_bytes() == full


def test_a_failed_append_leaves_the_sidecar_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pk = packets(100)
    old_a = write_pcap(tmp_path / "a.pcap", pk[:60])
    old_b = write_pcap(tmp_path / "b.pcap", pk[60:80])
    d, side = Dir(tmp_path), sidecar_name(7)
    append_sidecar(d, side, tail_since(old_a, pk[40][0]), "a.pcap")
    before = (tmp_path / side).read_bytes()
    real = os.pwrite

    def short_then_full(fd: int, data: bytes, at: int) -> int:
        if len(data) > 100:
            return real(fd, data[:100], at)  # part of it, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(switching.os, "pwrite", short_then_full)
    with pytest.raises(OSError, match="No space"):
        append_sidecar(d, side, tail_since(old_b, pk[40][0]), "b.pcap")
    monkeypatch.undo()
    assert (tmp_path / side).read_bytes() == before


def test_a_crashed_supervisor_fingerprints_again_and_adds_nothing(tmp_path: Path) -> None:
    """The supervisor died after an old file's tail went into the sidecar, before
    its hand-off: the restarted one fingerprints the file again. Counted twice,
    the frame the new tcpdump holds twice with one stamp (a SPAN copy) and the
    old one once would lose its second copy: min(2, 2) instead of min(1, 2)."""
    pk = packets(100)
    twice = pk[50]
    new_part = [*pk[40:51], twice, *pk[51:]]
    old = write_pcap(tmp_path / "g000004-20261126T120000-eth0.pcap", pk[:60])
    sup = supervisor(tmp_path)
    work = sup.spool.work
    (work / old.name).write_bytes(old.read_bytes())
    write_pcap(work / "g000005-20261126T120000-eth0.pcap", new_part)
    sup.session.overlaps.begin(4, 5, pk[40][0])
    w, name = next((w, n) for w, n in list_work(sup.dirs.work) if w.generation == 4)
    sup.session.overlaps.fingerprint(w, name, {os.geteuid()})  # then the crash
    side = (work / sidecar_name(5)).read_bytes()
    os.close(sup.session.lock_fd)  # the crash: its lock goes with it
    again = supervisor(tmp_path)
    again.load_switches()
    again.process_work(block=True)
    stored = sorted(f.ts for p in again.spool.ready.iterdir() for _o, _n, f in iter_records(p))
    assert stored == sorted([ts for ts, _d in pk] + [twice[0]])  # max(1, 2) copies of it
    assert again.n.duplicates_removed == 20
    assert side  # it was there to be read again


def test_a_malformed_sidecar_strips_nothing(tmp_path: Path) -> None:
    """Format 3 read as untrusted input: a header, section or stamp out of bounds
    is "no sidecar" (the new file keeps its duplicates), and the next old file
    replaces it."""
    pk = packets(100)
    old = write_pcap(tmp_path / "old.pcap", pk[:60])
    d, side = Dir(tmp_path), sidecar_name(9)
    append_sidecar(d, side, tail_since(old, pk[45][0]), "old.pcap")
    good = (tmp_path / side).read_bytes()
    assert read_sidecar(d, side) is not None
    header = 16
    far = STAMP.pack(2**33 * 1_000_000) + b"d" * 12  # a µs stamp past 2242
    bad = {
        "magic": b"X" + good[1:],
        "format 2": good[:12] + struct.pack(">I", 2) + good[16:],
        "tick": good[:header] + struct.pack(">I", 7) + good[header + 4 :],
        "name too long": good[: header + 4] + struct.pack(">H", 300) + good[header + 6 :],
        "name with a slash": good.replace(b"old.pcap", b"ol/.pcap"),
        "name with a NUL": good.replace(b"old.pcap", b"ol\0.pcap"),
        "stamp": good[:header] + struct.pack(">IHI", 1000, 8, 1) + b"old.pcap" + far,
        "garbage section": good + struct.pack(">IHI", 0, 0, 0),
    }
    for what, data in bad.items():
        (tmp_path / side).write_bytes(data)
        assert read_sidecar(d, side) is None, what
        new = write_pcap(tmp_path / "new.pcap", pk[40:])
        fd = os.open(new, os.O_RDWR)
        try:
            tail = read_sidecar(d, side)
            assert not (tail and find_duplicates(fd, tail))
        finally:
            os.close(fd)
        append_sidecar(d, side, tail_since(old, pk[45][0]), "old.pcap")
        if what == "stamp":  # well framed, so appended to (its keys are not read again)
            assert read_sidecar(d, side) is None
        else:  # replaced
            assert (tmp_path / side).read_bytes() == good, what


def test_a_sidecar_over_its_bound_is_no_sidecar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pk = packets(100)
    old = write_pcap(tmp_path / "old.pcap", pk[:60])
    d, side = Dir(tmp_path), sidecar_name(9)
    append_sidecar(d, side, tail_since(old, pk[45][0]), "old.pcap")
    monkeypatch.setattr(switching, "MAX_SIDECAR_BYTES", (tmp_path / side).stat().st_size - 1)
    assert read_sidecar(d, side) is None


def test_the_hand_off_keeps_every_packet_of_a_new_file_whose_sidecar_is_malformed(
    tmp_path: Path,
) -> None:
    sup = supervisor(tmp_path)
    pk = packets(60)
    old = write_pcap(tmp_path / "old.pcap", pk[:40])  # already handed off
    write_sidecar(sup.dirs.work, sidecar_name(5), tail_since(old, pk[20][0]))
    side = sup.spool.work / sidecar_name(5)
    good = side.read_bytes()
    side.write_bytes(good[:16] + struct.pack(">I", 7) + good[20:])  # a section's tick
    write_pcap(sup.spool.work / "g000005-20261126T120000-eth0.pcap", pk[20:])
    sup.process_work(block=True)
    stored = sorted(f.ts for p in sup.spool.ready.iterdir() for _o, _n, f in iter_records(p))
    assert stored == [ts for ts, _d in pk[20:]] and sup.n.duplicates_removed == 0
    side.write_bytes(good)  # the same, well formed: the 20 duplicates go
    write_pcap(sup.spool.work / "g000005-20261126T120000-eth0.pcap1", pk[20:])
    sup.process_work(block=True)
    assert sup.n.duplicates_removed == 20
