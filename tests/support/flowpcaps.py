"""Synthetic captures for the flow-index soundness test: packets built
byte by byte (Ethernet with 802.1Q/QinQ tags, Linux cooked, raw IP; IPv4
with fragments, IPv6 with extension headers and fragments, TCP, UDP, SCTP,
ICMP, ICMPv6, GRE, ARP), and a seeded random filter generator from
tcpdump's grammar."""

from __future__ import annotations

import ipaddress
import random
import re
import struct
from dataclasses import dataclass

V4 = ["10.0.0.1", "10.0.0.2", "10.0.1.7", "192.168.1.1", "192.168.1.20", "172.16.5.5",
      "203.0.113.7", "198.51.100.9"]  # fmt: skip
V6 = ["2001:db8::1", "2001:db8::2", "2001:db8:1::7", "fe80::1", "2001:db8::ffff:1"]
PORTS = [22, 53, 80, 123, 443, 5000, 5001, 8080, 33000, 40001]
VLANS = [10, 20, 30]
PROTOS = [1, 2, 6, 17, 47, 50, 51, 58, 103, 112, 132, 0, 43, 44, 60]


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src: str, dst: str, proto: int, payload: bytes, *, ident: int = 1, mf: bool = False,
         offset8: int = 0, options: bytes = b"") -> bytes:  # fmt: skip
    ihl = 5 + len(options) // 4
    frag = (0x2000 if mf else 0) | offset8
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(payload), ident, frag, 64,
                      proto, 0, ipaddress.IPv4Address(src).packed,
                      ipaddress.IPv4Address(dst).packed) + options  # fmt: skip
    hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
    return hdr + payload


def ipv6(src: str, dst: str, nh: int, payload: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 0x60000000, len(payload), nh, 64,
                       ipaddress.IPv6Address(src).packed,
                       ipaddress.IPv6Address(dst).packed) + payload  # fmt: skip


def l4(proto: int, sport: int, dport: int, body: bytes = b"x" * 12) -> bytes:
    if proto == 6:
        return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x18, 512, 0, 0) + body
    if proto == 17:
        return struct.pack("!HHHH", sport, dport, 8 + len(body), 0) + body
    if proto == 132:
        return struct.pack("!HHII", sport, dport, 7, 0) + body
    return body


def eth(payload: bytes, etype: int, vlans: tuple[int, ...] = (), qinq: bool = False) -> bytes:
    out = b"\x02\0\0\0\0\x01\x02\0\0\0\0\x02"
    for i, v in enumerate(vlans):
        tpid = 0x88A8 if qinq and i == 0 and len(vlans) > 1 else 0x8100
        out += struct.pack("!HH", tpid, v)
    return out + struct.pack("!H", etype) + payload


def sll(payload: bytes, etype: int) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, b"\x02\0\0\0\0\x01\0\0", etype) + payload


def arp(sender: str, target: str) -> bytes:
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, b"\x02\0\0\0\0\x01",
                       ipaddress.IPv4Address(sender).packed, b"\0" * 6,
                       ipaddress.IPv4Address(target).packed)  # fmt: skip


@dataclass
class Synth:
    """One synthetic capture: its link type and packets (IP layer and up are
    built per flow; the link layer per capture)."""

    linktype: int
    frames: list[bytes]


def _ip_packets(rng: random.Random) -> list[tuple[int, bytes]]:
    """(ethertype, IP packet) for one random flow, both directions."""
    v6 = rng.random() < 0.35
    pool = V6 if v6 else V4
    a, b = rng.sample(pool, 2)
    kind = rng.choice(["tcp", "udp", "sctp", "icmp", "frag", "ext", "gre", "other", "tcp", "udp"])
    sp, dp = rng.choice(PORTS), rng.choice(PORTS)
    out: list[tuple[int, bytes]] = []
    et = 0x86DD if v6 else 0x0800

    def ip(s: str, d: str, proto: int, pl: bytes, **kw: object) -> bytes:
        return ipv6(s, d, proto, pl) if v6 else ipv4(s, d, proto, pl, **kw)  # type: ignore[arg-type]

    if kind in ("tcp", "udp", "sctp"):
        proto = {"tcp": 6, "udp": 17, "sctp": 132}[kind]
        for i in range(rng.randint(1, 3)):
            s, d, x, y = (a, b, sp, dp) if i % 2 == 0 else (b, a, dp, sp)
            out.append((et, ip(s, d, proto, l4(proto, x, y))))
    elif kind == "icmp":
        if v6:
            out.append((et, ipv6(a, b, 58, bytes([128, 0, 0, 0, 0, 1, 0, 1]))))
            out.append((et, ipv6(b, a, 58, bytes([129, 0, 0, 0, 0, 1, 0, 1]))))
        else:
            out.append((et, ipv4(a, b, 1, bytes([8, 0, 0, 0, 0, 1, 0, 1]))))
            out.append((et, ipv4(a, b, 1, bytes([3, 3, 0, 0, 0, 0, 0, 0]))))
    elif kind == "frag":
        proto = rng.choice([6, 17])
        seg = l4(proto, sp, dp, b"y" * 20)
        ident = rng.randint(1, 60000)
        if v6:
            fh1 = struct.pack("!BBHI", proto, 0, 0 | 1, ident)
            fh2 = struct.pack("!BBHI", proto, 0, (3 << 3), ident)
            first = ipv6(a, b, 44, fh1 + seg[:24])
            later = ipv6(a, b, 44, fh2 + seg[24:])
            out += [(et, first), (et, later)] if rng.random() < 0.7 else [(et, later)]
        else:
            first = ipv4(a, b, proto, seg[:24], ident=ident, mf=True)
            later = ipv4(a, b, proto, seg[24:], ident=ident, offset8=3)
            out += [(et, first), (et, later)] if rng.random() < 0.7 else [(et, later)]
    elif kind == "ext":
        if v6:
            proto = rng.choice([6, 17, 58])
            inner = l4(proto, sp, dp) if proto != 58 else bytes([128, 0, 0, 0, 0, 1, 0, 1])
            hbh = bytes([proto, 0]) + b"\x01\x04\0\0\0\0"
            out.append((et, ipv6(a, b, 0, hbh + inner)))
        else:  # IPv4 options
            out.append((et, ipv4(a, b, 6, l4(6, sp, dp), options=b"\x01\x01\x01\x00")))
    elif kind == "gre":
        c, d = rng.sample(V4, 2)
        inner = ipv4(c, d, 6, l4(6, sp, dp))
        gre = struct.pack("!HH", 0, 0x0800) + inner
        out.append((et, ip(a, b, 47, gre)))
    else:
        proto = rng.choice([2, 50, 51, 103, 112, 89])
        out.append((et, ip(a, b, proto, b"z" * 16)))
    return out


def synth(rng: random.Random, linktype: int, flows: int, *, non_ip: bool = False) -> Synth:
    frames = []
    for _ in range(flows):
        vlans: tuple[int, ...] = ()
        if linktype == 1 and rng.random() < 0.3:
            vlans = tuple(rng.sample(VLANS, rng.choice([1, 1, 2])))
        for et, pkt in _ip_packets(rng):
            if linktype == 1:
                frames.append(eth(pkt, et, vlans, qinq=rng.random() < 0.5))
            elif linktype == 113:
                frames.append(sll(pkt, et))
            else:
                frames.append(pkt)
    if non_ip and linktype in (1, 113):
        a, b = rng.sample(V4, 2)
        frame = arp(a, b)
        frames.append(eth(frame, 0x0806) if linktype == 1 else sll(frame, 0x0806))
    rng.shuffle(frames)
    return Synth(linktype, frames)


def pcap_bytes(linktype: int, frames: list[bytes], start_ns: int, step_ns: int = 1000) -> bytes:
    """A nanosecond pcap of frames, one step_ns apart from start_ns."""
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, linktype)]
    for i, f in enumerate(frames):
        sec, ns = divmod(start_ns + i * step_ns, 1_000_000_000)
        out.append(struct.pack("<IIII", sec, ns, len(f), len(f)) + f)
    return b"".join(out)


# -- filters from tcpdump's grammar --------------------------------------------------


def _addr(rng: random.Random, pool4: list[str], pool6: list[str]) -> tuple[int, str]:
    if rng.random() < 0.3:
        return 6, rng.choice(pool6)
    return 4, rng.choice(pool4)


def _dir(rng: random.Random) -> str:
    return rng.choice(["", "", "", "src ", "dst ", "src or dst ", "src and dst "])


def _primitive(rng: random.Random, pool4: list[str], pool6: list[str]) -> str:
    k = rng.random()
    if k < 0.30:
        ver, a = _addr(rng, pool4, pool6)
        proto = rng.choice(["", "", "ip " if ver == 4 else "ip6 ", "arp " if ver == 4 else ""])
        host = rng.choice(["host ", "host ", ""]) if rng.random() < 0.9 else "host "
        d = _dir(rng)
        if not host and not d and not proto:
            host = "host "
        return f"{proto}{d}{host}{a}"
    if k < 0.42:
        if rng.random() < 0.3:
            a = rng.choice(pool6)
            n = rng.choice([32, 48, 64, 112])
            net = ipaddress.IPv6Network(f"{a}/{n}", strict=False)
            return f"{_dir(rng)}net {net}"
        a = rng.choice(pool4)
        form = rng.choice(["cidr", "short", "mask"])
        n = rng.choice([8, 16, 24, 30])
        net4 = ipaddress.IPv4Network(f"{a}/{n}", strict=False)
        if form == "cidr":
            return f"{_dir(rng)}net {net4}"
        if form == "mask":
            return f"{_dir(rng)}net {net4.network_address} mask {net4.netmask}"
        parts = str(net4.network_address).split(".")[: max(1, n // 8)]
        return f"{_dir(rng)}net {'.'.join(parts)}"
    if k < 0.62:
        p = rng.choice(["", "", "tcp ", "udp ", "sctp "])
        d = rng.choice(["", "", "src ", "dst "])
        if rng.random() < 0.2:
            lo = rng.choice(PORTS)
            return f"{p}{d}portrange {lo}-{lo + rng.choice([0, 1, 100, 10000])}"
        return f"{p}{d}port {rng.choice(PORTS)}"
    if k < 0.80:
        return rng.choice(["ip", "ip6", "arp", "rarp", "tcp", "udp", "sctp", "icmp", "icmp6",
                           "igmp", "pim", "vrrp", "ah", "esp"])  # fmt: skip
    if k < 0.90:
        q = rng.choice(["ip ", "ip6 ", ""])
        return f"{q}proto {rng.choice(PROTOS)}"
    if k < 0.96:
        return rng.choice(["vlan", f"vlan {rng.choice(VLANS)}"])
    return rng.choice(["less 80", "greater 100", "tcp[13] & 2 != 0", "ether broadcast",
                       "ip[8] = 64"])  # fmt: skip


def _expr(rng: random.Random, depth: int, pool4: list[str], pool6: list[str]) -> str:
    if depth <= 0 or rng.random() < 0.35:
        p = _primitive(rng, pool4, pool6)
        return f"{rng.choice(['not ', '! '])}{p}" if rng.random() < 0.15 else p
    a = _expr(rng, depth - 1, pool4, pool6)
    k = rng.random()
    if k < 0.15:
        return f"{rng.choice(['not ', '!'])}({a})"
    if k < 0.25:
        return f"({a})"
    op = rng.choice(["and", "or", "&&", "||", "and", "or"])
    m = re.search(r"\b(host|port) \S+$", a)
    if k < 0.35 and m:
        # a bare value after and/or takes the qualifiers before it
        tail = rng.choice(pool4) if m[1] == "host" else str(rng.choice(PORTS))
        return f"{a} {op} {rng.choice(['', 'not '])}{tail}"
    b = _expr(rng, depth - 1, pool4, pool6)
    return f"{a} {op} {b}"


def filters(seed: int, n: int, pool4: list[str] | None = None, pool6: list[str] | None = None
            ) -> list[str]:  # fmt: skip
    rng = random.Random(seed)
    p4, p6 = pool4 or V4, pool6 or V6
    return [_expr(rng, rng.choice([1, 2, 3]), p4, p6) for _ in range(n)]
