"""The numpy fast path (vector.py, Summariser's table) against the per-packet
reference parser (Summariser(vectorised=False)), on random mixed captures:
every flow row, its order, and the capture row must be the same, whatever
the chunking and the flow cap.

Packets are built here byte by byte from a small grammar: Ethernet with 0-3
VLAN tags, Linux cooked v1/v2 and raw IP; IPv4 (options, a corrupt header length, fragments with and
without their first, orphans) and IPv6 (hop-by-hop, fragment and AH headers);
TCP/UDP/SCTP, ICMP and ICMPv6 (request/reply pairs and one-way types), GRE;
ARP and runts; snap-length cuts anywhere; time stamps that go backwards (a
little, and sometimes by seconds)."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest

from rollcap.flows import vector
from rollcap.flows.summary import FlowSummary, Summariser
from rollcap.pcapfile import parse_header

V4 = [bytes([10, 0, 0, i]) for i in range(1, 6)] + [bytes([192, 0, 2, 200])]
V6 = [bytes.fromhex("20010db8" + "00" * 11) + bytes([i]) for i in range(1, 4)]
PORTS = [53, 80, 443, 1024, 40000, 0]


def _l4(rng: random.Random, proto: int) -> bytes:
    if proto in (6, 17, 132):
        ports = struct.pack("!HH", rng.choice(PORTS), rng.choice(PORTS))
        return ports + bytes(rng.randrange(0, 24))
    if proto in (1, 58):
        types = [0, 8, 3, 11, 13, 14] if proto == 1 else [128, 129, 1, 135, 136, 143]
        return struct.pack("!BBH", rng.choice(types), rng.randrange(0, 4), 0) + bytes(4)
    return bytes(rng.randrange(0, 12))  # GRE and others: no ports


def _ipv4(rng: random.Random) -> bytes:
    proto = rng.choice([6, 6, 17, 17, 132, 1, 1, 47])
    src, dst = rng.choice(V4), rng.choice(V4)
    ident = rng.randrange(0, 4)
    frag = 0
    r = rng.random()
    if r < 0.1:
        frag = 0x2000  # a first fragment (more to come)
    elif r < 0.2:
        frag = rng.choice([0, 0x2000]) | rng.randrange(1, 20)  # a later one
    opts = bytes(4) if rng.random() < 0.05 else b""
    payload = _l4(rng, proto) if not frag & 0x1FFF else bytes(rng.randrange(0, 16))
    ihl = 5 + len(opts) // 4 if rng.random() < 0.97 else rng.randrange(0, 5)  # < 5: corrupt
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(opts) + len(payload), ident,
                      frag, 64, proto, 0, src, dst)  # fmt: skip
    return hdr + opts + payload


def _ipv6(rng: random.Random) -> bytes:
    proto = rng.choice([6, 17, 58, 58, 47])
    src, dst = rng.choice(V6), rng.choice(V6)
    body = _l4(rng, proto)
    nh = proto
    r = rng.random()
    if r < 0.1:  # hop-by-hop
        body, nh = struct.pack("!BB", nh, 0) + bytes(6) + body, 0
    elif r < 0.2:  # fragment header: first or later
        later = rng.random() < 0.5
        fo = (rng.randrange(1, 9) << 3) if later else 1
        body = struct.pack("!BBHI", nh, 0, fo, rng.randrange(0, 3)) + (bytes(8) if later else body)
        nh = 44
    elif r < 0.25:  # AH
        body, nh = struct.pack("!BB", nh, 1) + bytes(10) + body, 51
    return struct.pack("!IHBB16s16s", 6 << 28, len(body), nh, 64, src, dst) + body


def _l3(rng: random.Random) -> tuple[int, bytes]:
    r = rng.random()
    if r < 0.55:
        return 0x0800, _ipv4(rng)
    if r < 0.85:
        return 0x86DD, _ipv6(rng)
    if r < 0.95:
        return 0x0806, bytes(28)  # ARP
    return rng.choice([0x0800, 0x86DD]), bytes(rng.randrange(0, 30))  # runt IP


def _frame(rng: random.Random, linktype: int) -> bytes:
    etype, l3 = _l3(rng)
    if linktype == 1:
        tags = b"".join(struct.pack("!HH", rng.choice([0x8100, 0x88A8]), rng.choice([5, 7, 4095]))
                        for _ in range(rng.choice([0, 0, 0, 1, 2, 3])))  # fmt: skip
        return b"\x02" * 6 + b"\x04" * 6 + tags + struct.pack("!H", etype) + l3
    if linktype == 113:
        return struct.pack("!HHH8sH", 0, 1, 6, bytes(8), etype) + l3
    if linktype == 276:
        return struct.pack("!HHIHBB8s", etype, 0, 2, 1, 0, 6, bytes(8)) + l3
    return l3  # raw


def capture(seed: int, count: int, endian: str = "<", nanos: bool = False) -> bytes:
    rng = random.Random(seed)
    linktype = rng.choice([1, 1, 1, 113, 276, 101, 228])
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)]
    t = 1_800_000_000_000_000
    for _ in range(count):
        p = _frame(rng, linktype)
        orig = len(p)
        if rng.random() < 0.1:
            p = p[: rng.randrange(0, len(p) + 1)]  # the snap length cut it
        t += rng.randrange(-50, 200) if rng.random() < 0.98 else -rng.randrange(10**7)  # µs
        frac = t % 10**6 * 1000 + rng.randrange(1000) if nanos else t % 10**6
        out.append(struct.pack(endian + "IIII", t // 10**6, frac, len(p), orig) + p)
    return b"".join(out)


def run(data: bytes, cap: int, step: int, vectorised: bool) -> FlowSummary:
    s = Summariser(parse_header(data[:24]), cap, vectorised=vectorised)
    body = memoryview(data)[24:]
    for i in range(0, len(body), step):
        s.feed(body[i : i + step])
    return s.finish()


def rows(s: FlowSummary) -> tuple[object, ...]:
    return (s.packets, s.non_ip, s.complete, list(s.flows.items()), s.more_addrs, s.more_ports,
            s.sets_complete)  # fmt: skip


@pytest.mark.parametrize("seed", range(60))
def test_fast_path_gives_the_reference_rows_on_random_mixed_captures(seed: int) -> None:
    rng = random.Random(seed)
    data = capture(seed, rng.choice([50, 300, 1500]))
    want = run(data, 10_000, len(data), vectorised=False)
    assert want.packets > 0
    for step in (len(data), rng.randrange(100, 5000), 997):
        assert rows(run(data, 10_000, step, vectorised=True)) == rows(want), step


@pytest.mark.parametrize("seed", range(20))
def test_above_the_cap_the_fast_path_keeps_the_same_flows_and_sets(seed: int) -> None:
    """A cap so small that flows are dropped and the sets themselves fill up:
    which flows and which set items are kept depends on packet order."""
    data = capture(1000 + seed, 800)
    for cap in (3, 8, 40):
        want = run(data, cap, len(data), vectorised=False)
        assert not want.complete
        for step in (len(data), 1500):
            assert rows(run(data, cap, step, vectorised=True)) == rows(want), (cap, step)


@pytest.mark.parametrize(("endian", "nanos"), [(">", False), ("<", True), (">", True)])
def test_both_byte_orders_and_ns_files(endian: str, nanos: bool) -> None:
    for seed in range(5):
        data = capture(500 + seed, 1000, endian, nanos)
        want = run(data, 10_000, len(data), vectorised=False)
        assert rows(run(data, 10_000, 3000, vectorised=True)) == rows(want), seed


def test_a_hash_collision_is_grouped_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every key hashing the same: the fast path still separates the flows."""
    data = capture(7, 1500)
    want = run(data, 10_000, len(data), vectorised=False)
    monkeypatch.setattr(vector, "_hash", lambda key: np.zeros(key.shape[1], dtype=np.uint64))
    assert rows(run(data, 10_000, 4096, vectorised=True)) == rows(want)
    assert len(want.flows) > 20


def test_the_mix_covers_what_the_fast_path_hands_back() -> None:
    """The generator makes packets of every kind the fast path must leave to
    the reference parser, and plenty it takes itself."""
    data = np.frombuffer(capture(3, 3000), dtype=np.uint8)
    h = parse_header(data[:24].tobytes())
    starts, off = [], 24
    while off < len(data):
        starts.append(off)
        off += 16 + int(data[off + 8 : off + 12].view("<u4")[0])
    c = vector.classify(data, np.array(starts), "<", 1000, h.linktype)
    taken = len(c.packets.index)
    assert taken > 1000 and len(c.fallback) > 100 and c.non_ip > 100


def _repeating(seed: int, count: int) -> bytes:
    """Ethernet captures where a few flows repeat, so that later chunks take
    the flow cache (vector.FlowCache), with the packets it must not take
    mixed in: the same addresses and ports with MF or options (fragments, the
    reference parser), a VLAN tag, cut below the ports, or another protocol."""
    rng = random.Random(seed)
    flows = [(rng.choice(V4), rng.choice(V4), rng.choice([6, 17, 1, 47]), rng.choice(PORTS),
              rng.choice(PORTS)) for _ in range(6)]  # fmt: skip
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    t = 1_800_000_000_000_000
    for i in range(count):
        src, dst, proto, sp, dp = rng.choice(flows)
        if rng.random() < 0.5:
            src, dst, sp, dp = dst, src, dp, sp
        l4 = (struct.pack("!HH", sp, dp) if proto != 1 else struct.pack("!BBH", rng.choice(
            [8, 0, 3]), 0, 0)) + bytes(rng.randrange(0, 20))  # fmt: skip
        # later fragments (offset > 0) carry what looks like the ports
        frag = rng.choice([0, 0x4000, 0x2000, 0x8000, 3, 0x2003]) if rng.random() < 0.2 else 0x4000
        opts = bytes(4) if rng.random() < 0.05 else b""
        ip = struct.pack("!BBHHHBBH4s4s", 0x45 + len(opts) // 4, 0, 20 + len(opts) + len(l4),
                         i & 0xFFFF, frag, rng.randrange(1, 255), proto, rng.randrange(65536),
                         src, dst) + opts + l4  # fmt: skip
        tags = struct.pack("!HH", 0x8100, 5) if rng.random() < 0.05 else b""
        p = bytes([2, rng.randrange(256)] * 3) + b"\x04" * 6 + tags + b"\x08\x00" + ip
        if rng.random() < 0.05:
            p = b"\x02" * 12 + b"\x08\x06" + bytes(28)  # ARP
        orig = len(p)
        if rng.random() < 0.05:
            p = p[: rng.randrange(0, len(p) + 1)]
        t += rng.randrange(-50, 200)
        out.append(struct.pack("<IIII", t // 10**6, t % 10**6, len(p), orig) + p)
    return b"".join(out)


@pytest.mark.parametrize("seed", range(6))
def test_known_flows_counted_from_the_cache_give_the_reference_rows(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _repeating(seed, 4000)
    classified = [0]
    classify = vector.classify

    def counting(buf: vector.U8, starts: vector.I64, *a: object, **k: object) -> vector.Chunk:
        classified[0] += len(starts)
        return classify(buf, starts, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(vector, "classify", counting)
    want = run(data, 10_000, len(data), vectorised=False)
    for step in (len(data), 20_000, 7001):
        classified[0] = 0
        assert rows(run(data, 10_000, step, vectorised=True)) == rows(want), step
        if step < len(data):  # after the first chunk, the cache took most
            assert classified[0] < want.packets // 2, step
    for cap in (2, 5):
        want = run(data, cap, len(data), vectorised=False)
        assert rows(run(data, cap, 9000, vectorised=True)) == rows(want), cap
