"""The summariser on packets built here byte by byte (no parser shared with
the code under test)."""

from __future__ import annotations

import ipaddress
import struct
from datetime import UTC, datetime
from pathlib import Path

from rollcap.flows import index
from rollcap.flows.summary import Summariser
from rollcap.pcapfile import parse_header
from rollcap.storage import manifest

REPO_PCAPS = Path(__file__).resolve().parents[3] / "tests" / "data" / "pcaps"


def ip4(src: str, dst: str, proto: int, payload: bytes, ident: int = 1, frag: int = 0) -> bytes:
    a, b = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, frag, 64, proto, 0, a, b)
    return hdr + payload


def ip6(src: str, dst: str, nh: int, payload: bytes) -> bytes:
    a, b = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), nh, 64, a, b) + payload


def ports(sport: int, dport: int, rest: bytes = b"\0" * 16) -> bytes:
    return struct.pack("!HH", sport, dport) + rest


def eth(l3: bytes, etype: int = 0x0800, vlans: tuple[int, ...] = ()) -> bytes:
    tags = b"".join(struct.pack("!HH", 0x8100, v) for v in vlans)
    return b"\x02" * 6 + b"\x04" * 6 + tags + struct.pack("!H", etype) + l3


def pcap(linktype: int, packets: list[bytes], t0: int = 1_800_000_000) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for i, p in enumerate(packets):
        out += struct.pack("<IIII", t0 + i, 500, len(p), len(p) + 10) + p
    return out


def summarise(data: bytes, cap: int = 1000, step: int = 0) -> Summariser:
    s = Summariser(parse_header(data[:24]), cap)
    body = data[24:]
    step = step or len(body)
    for i in range(0, len(body), step):
        s.feed(memoryview(body[i : i + step]))
    return s


def test_both_directions_are_one_flow_named_by_its_first_sender() -> None:
    a = eth(ip4("5.6.7.8", "1.2.3.4", 6, ports(3344, 1122)))
    b = eth(ip4("1.2.3.4", "5.6.7.8", 6, ports(1122, 3344)))
    s = summarise(pcap(1, [a, b, a])).finish()
    assert s.packets == 3 and s.non_ip == 0 and len(s.flows) == 1
    (f,) = s.flows.values()
    assert (f.packets, f.nbytes) == (3, len(a) * 2 + len(b) + 30)  # wire lengths
    assert (str(ipaddress.ip_address(f.src)), f.sport) == ("5.6.7.8", 3344)
    assert f.first_ns == 1_800_000_000 * 10**9 + 500_000
    assert f.last_ns == 1_800_000_002 * 10**9 + 500_000


def test_vlans_are_part_of_the_key() -> None:
    p = ip4("10.0.0.1", "10.0.0.2", 17, ports(53, 5353))
    s = summarise(pcap(1, [eth(p, vlans=(100,)), eth(p, vlans=(100, 200)), eth(p)])).finish()
    assert sorted(k[0] for k in s.flows) == [(), (100,), (100, 200)]


def test_cooked_and_raw_link_types() -> None:
    p = ip4("10.0.0.1", "10.0.0.2", 6, ports(1, 2))
    sll = struct.pack("!HHH8sH", 0, 1, 6, b"\0" * 8, 0x0800) + p
    sll2 = struct.pack("!HHIHBB8s", 0x0800, 0, 2, 1, 0, 6, b"\0" * 8) + p
    for lt, pkt in ((113, sll), (276, sll2), (101, p), (228, p)):
        s = summarise(pcap(lt, [pkt])).finish()
        assert len(s.flows) == 1 and s.non_ip == 0, lt
        assert next(iter(s.flows))[1:] == (6, bytes([10, 0, 0, 1]), 1, bytes([10, 0, 0, 2]), 2)


def test_non_ip_and_unknown_link_types_count_as_non_ip() -> None:
    arp = eth(b"\0" * 28, etype=0x0806)
    s = summarise(pcap(1, [arp, arp])).finish()
    assert (s.packets, s.non_ip, len(s.flows)) == (2, 2, 0)
    s = summarise(pcap(105, [b"\0" * 40])).finish()  # 802.11
    assert (s.packets, s.non_ip) == (1, 1)


def test_later_fragments_join_their_datagram_by_ip_id() -> None:
    first = eth(ip4("1.1.1.1", "2.2.2.2", 17, ports(1000, 53), ident=7, frag=0x2000))
    later = eth(ip4("1.1.1.1", "2.2.2.2", 17, b"x" * 24, ident=7, frag=3))
    orphan = eth(ip4("1.1.1.1", "2.2.2.2", 17, b"x" * 24, ident=8, frag=3))
    s = summarise(pcap(1, [first, later, orphan])).finish()
    rows = {k[3]: f.packets for k, f in s.flows.items()}
    assert rows == {1000: 2, None: 1}  # the orphan: a row without ports


def test_ipv6_fragment_header_and_icmpv6_echo() -> None:
    frag1 = struct.pack("!BBHI", 17, 0, 1, 99) + ports(4000, 53)  # offset 0, M=1
    frag2 = struct.pack("!BBHI", 17, 0, 2 << 3, 99) + b"y" * 16
    req = ip6("fe80::1", "fe80::2", 58, struct.pack("!BBH", 128, 0, 0) + b"\0" * 8)
    rep = ip6("fe80::2", "fe80::1", 58, struct.pack("!BBH", 129, 0, 0) + b"\0" * 8)
    a, b = "2001:db8::1", "2001:db8::2"
    pkts = [ip6(a, b, 44, frag1), ip6(a, b, 44, frag2), req, rep]
    s = summarise(pcap(101, pkts)).finish()
    counts = sorted((k[1], f.packets) for k, f in s.flows.items())
    assert counts == [(17, 2), (58, 2)]


def test_chunk_boundaries_do_not_matter() -> None:
    pkts = [eth(ip4(f"10.0.{i}.1", "10.9.9.9", 6, ports(1000 + i, 80))) for i in range(30)]
    data = pcap(1, pkts)
    whole = summarise(data).finish()
    for step in (1, 7, 16, 17, 100):
        s = summarise(data, step=step).finish()
        assert (s.packets, s.flows) == (whole.packets, whole.flows), step


def test_above_the_cap_only_sets_are_kept_and_the_summary_says_so() -> None:
    pkts = [eth(ip4(f"10.0.0.{i}", "10.9.9.9", 6, ports(1000 + i, 80))) for i in range(1, 6)]
    s = summarise(pcap(1, pkts), cap=3).finish()
    assert len(s.flows) == 3 and not s.complete
    assert {str(ipaddress.ip_address(a)) for a in s.more_addrs} == {
        "10.0.0.4", "10.0.0.5", "10.9.9.9"}  # fmt: skip
    assert s.more_ports == {(6, 1004), (6, 1005), (6, 80)} and s.sets_complete


def test_body_round_trip_and_key_is_host_scoped() -> None:
    pkts = [eth(ip4("1.2.3.4", "5.6.7.8", 6, ports(1122, 3344)))]
    s = summarise(pcap(1, pkts)).finish()
    e = manifest.Entry(key="caps/web1/x.pcap.zst", host="web1", iface="eth0",
                       opened=datetime(2027, 1, 15, 8, 0, 5, tzinfo=UTC), closed_ts=1_800_000_100,
                       first_ns=1_800_000_000 * 10**9, last_ns=1_800_000_000 * 10**9, packets=1,
                       pcap_bytes=100, size=80, linktype=1)  # fmt: skip
    key = index.summary_key(e, "caps")
    assert key.startswith("caps/_index/flows/v1/date=2027-01-15/hour=08/minute=00/web1~")
    assert index.parse_key(key, "caps") == e
    got = index.parse_body(index.summary_body(e, s))
    assert got.complete and got.capture["flows"] == 1 and got.capture["non_ip"] == 0
    (row,) = got.flows
    assert row["community_id"] == "1:wCb3OG7yAFWelaUydu0D+125CLM="
    got_row = (row["src"], row["sport"], row["dst"], row["dport"])
    assert got_row == ("1.2.3.4", 1122, "5.6.7.8", 3344)
    assert (row["host"], row["key"], row["vlan"], row["ip"]) == ("web1", e.key, None, 4)


def _both(data: bytes, step: int = 0, cap: int = 1000) -> tuple[object, object]:
    out = []
    for vectorised in (True, False):
        s = Summariser(parse_header(data[:24]), cap, vectorised=vectorised)
        body = data[24:]
        n = step or len(body)
        for i in range(0, len(body), n):
            s.feed(memoryview(body[i : i + n]))
        f = s.finish()
        out.append((f.packets, f.non_ip, f.complete, f.flows))
    return out[0], out[1]


def test_fast_path_equals_the_per_packet_parser_on_every_test_capture() -> None:
    """The numpy path and the reference parser agree flow by flow (sums,
    times, first sender), on real captures and on fragments/IPv6/VLAN/ICMP."""
    pcaps = sorted(REPO_PCAPS.glob("*.pcap"))
    assert len(pcaps) >= 20
    for p in pcaps:
        data = p.read_bytes()
        fast, ref = _both(data, step=4096)
        assert fast == ref, p.name


def test_fast_path_equals_the_per_packet_parser_on_tricky_packets() -> None:
    first = eth(ip4("1.1.1.1", "2.2.2.2", 17, ports(1000, 53), ident=7, frag=0x2000))
    later = eth(ip4("1.1.1.1", "2.2.2.2", 17, b"x" * 24, ident=7, frag=3))
    plain = eth(ip4("2.2.2.2", "1.1.1.1", 17, ports(53, 1000)))
    echo = eth(ip4("9.9.9.9", "8.8.8.8", 1, struct.pack("!BBH", 8, 0, 0) + b"\0" * 4))
    reply = eth(ip4("8.8.8.8", "9.9.9.9", 1, struct.pack("!BBH", 0, 0, 0) + b"\0" * 4))
    unreach = eth(ip4("8.8.8.8", "9.9.9.9", 1, struct.pack("!BBH", 3, 1, 0) + b"\0" * 4))
    gre = eth(ip4("3.3.3.3", "4.4.4.4", 47, b"\0" * 8), vlans=(5, 6))
    v6 = eth(ip6("2001:db8::2", "2001:db8::1", 6, ports(443, 5000)), etype=0x86DD, vlans=(7,))
    short = eth(ip4("1.1.1.1", "2.2.2.2", 6, b""))  # no room for ports
    triple = eth(ip4("1.1.1.1", "2.2.2.2", 6, ports(1, 2)), vlans=(1, 2, 3))
    pkts = [plain, first, later, echo, reply, unreach, gre, v6, short, triple, b"\0" * 10]
    fast, ref = _both(pcap(1, pkts * 3))
    assert fast == ref
    fast, ref = _both(pcap(1, pkts * 3), cap=4)
    assert fast == ref


def test_a_record_that_is_not_one_stops_the_summary_and_marks_it_incomplete() -> None:
    good = eth(ip4("1.1.1.1", "2.2.2.2", 6, ports(1, 2)))
    data = pcap(1, [good, good])
    bad = data + struct.pack("<IIII", 1, 0, 0xFFFFFFF0, 0xFFFFFFF0) + b"\0" * 100
    for step in (0, 50):
        s = summarise(bad, step=step).finish()
        assert s.packets == 2 and not s.complete, step
