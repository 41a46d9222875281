"""The summariser: the flows of one capture, from the chunks the offload
already reads to compress it (offload/compress.py), so no second read.

A flow (docs/flows.md) is bidirectional and keyed like its Community ID:
VLAN tags, protocol, and the two endpoints (address and port, or ICMP
type/code) in hash order. Link types: Ethernet (802.1Q/802.1ad/QinQ tags),
Linux cooked v1 and v2 (``-i any``), raw IP; any other link type's packets
count as non-IP. A fragment after the first joins its datagram's flow by
(addresses, protocol, IP ID) when the first fragment was seen, else it is a
flow of its own without ports. Memory is bounded by ``cap`` flows: beyond it
the summary keeps only the sets of addresses and (protocol, port) it saw and
says it is incomplete.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rollcap.flows import vector
from rollcap.flows.communityid import ICMP, ICMP6, PORT_PROTOS, icmp_ports, ordered
from rollcap.flows.vector import ETHERNET, IPV4_LT, IPV6_LT, RAW, SLL, SLL2
from rollcap.pcapfile import MAX_RECORD, RECORD_HEADER_LEN, PcapHeader

DEFAULT_CAP = 100_000
_VLAN_TYPES = frozenset({0x8100, 0x88A8, 0x9100})
_IPV6_EXT = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
_FRAG6, _AH = 44, 51
_U16 = struct.Struct("!H").unpack_from
_U32 = struct.Struct("!I").unpack_from

# key: (vlans, proto, addr_a, port_a, addr_b, port_b), endpoints in hash order
FlowKey = tuple[tuple[int, ...], int, bytes, int | None, bytes, int | None]


@dataclass
class Flow:
    """One flow; src/sport is the side that sent its first packet."""

    first_ns: int
    last_ns: int
    packets: int
    nbytes: int  # wire bytes (original lengths)
    src: bytes
    sport: int | None
    dst: bytes
    dport: int | None
    seq: int  # the packet number of its first packet (which names the sender)


@dataclass
class FlowSummary:
    linktype: int
    flows: dict[FlowKey, Flow]
    packets: int = 0
    non_ip: int = 0  # packets that are not IP (or of a link type not parsed)
    complete: bool = True  # False: more flows than the cap; see the sets
    # beyond the cap: what the flows not kept touched (each set capped too)
    more_addrs: set[bytes] = field(default_factory=set)
    more_ports: set[tuple[int, int]] = field(default_factory=set)
    sets_complete: bool = True


def ntop(addr: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(addr) == 4 else socket.AF_INET6, addr)


class Summariser:
    """feed() the pcap's bytes after its global header, in chunks of any
    size (memoryviews the caller reuses: nothing is kept past the call but a
    record cut by the chunk's end); finish() gives the summary."""

    def __init__(self, header: PcapHeader, cap: int = DEFAULT_CAP, vectorised: bool = True) -> None:
        self.header = header
        self.cap = cap
        self.vectorised = vectorised  # False: the per-packet reference parser alone
        self._rec = struct.Struct(header.endian + "IIII").unpack_from
        self._u32 = struct.Struct(header.endian + "I").unpack_from
        self._broken = False
        self._seq = 0
        self._ns_mult = 1_000_000_000 // header.ts_per_second
        self._carry = b""
        self._frags: dict[tuple[bytes, bytes, int, int], FlowKey] = {}
        self.summary = FlowSummary(header.linktype, {})
        lt = header.linktype
        links: dict[int, Callable[[bytes, int, int], None]] = {
            ETHERNET: self._ethernet, SLL: self._sll, SLL2: self._sll2,
            RAW: self._raw, IPV4_LT: self._raw, IPV6_LT: self._raw,
        }  # fmt: skip
        self._link = links.get(lt)

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        if self._broken:
            return
        data = memoryview(chunk).cast("B")  # read in place: no copy of the chunk
        start = 0
        if self._carry:  # complete the record the last chunk cut, on its own
            c = self._carry
            head = bytes(data[: max(0, RECORD_HEADER_LEN - len(c))])
            hdr = c + head
            if len(hdr) < RECORD_HEADER_LEN:
                self._carry = hdr
                return
            incl = self._u32(hdr, 8)[0]
            if incl > MAX_RECORD:  # not a record: stop, and say so
                self._broken = True
                self.summary.complete = False
                return
            need = RECORD_HEADER_LEN + incl - len(c)
            if need > len(data):
                self._carry = c + bytes(data)
                return
            self._carry = b""
            self._run(c + bytes(data[:need]), 0)
            start = need
        self._run(data, start)

    def _run(self, data: bytes | memoryview, off: int) -> None:
        """Summarise the whole records of data from off; keep a cut-off last one."""
        n = len(data)
        u32 = self._u32
        offs: list[int] = []
        add = offs.append
        last = n - RECORD_HEADER_LEN
        # the walk: each record's start depends on the one before (kept minimal:
        # a record that runs past the end can only be the last one)
        while off <= last:
            add(off)
            off += RECORD_HEADER_LEN + u32(data, off + 8)[0]
        if off > n:  # the last record is cut by the chunk's end: carried over
            off = offs.pop()
            if u32(data, off + 8)[0] > MAX_RECORD:  # not a record: stop, and say so
                self._broken = True
                self.summary.complete = False
        if off < n and not self._broken:
            self._carry = bytes(data[off:])
        if offs:
            self._packets(data, offs)

    def _packets(self, data: bytes | memoryview, offs: list[int]) -> None:
        s = self.summary
        base = s.packets
        s.packets += len(offs)
        if self._link is None:
            s.non_ip += len(offs)
            return
        if not self.vectorised:
            rec, mult = self._rec, self._ns_mult
            for i, off in enumerate(offs):
                sec, frac, incl, orig = rec(data, off)
                self._seq = base + i
                start = off + RECORD_HEADER_LEN
                pkt = bytes(data[start : start + incl])
                self._link(pkt, sec * 1_000_000_000 + frac * mult, orig)
            return
        c = vector.classify(np.frombuffer(data, dtype=np.uint8), np.array(offs, dtype=np.int64),
                            self.header.endian, self._ns_mult, self.header.linktype)  # fmt: skip
        s.non_ip += c.non_ip
        self._merge(c.groups, base)
        for i in c.fallback.tolist():
            off = offs[i]
            incl = self._u32(data, off + 8)[0]
            self._seq = base + i
            start = off + RECORD_HEADER_LEN
            self._link(bytes(data[start : start + incl]), int(c.ns[i]), int(c.orig[i]))

    def _merge(self, g: vector.Groups, base: int) -> None:
        """Add a chunk's fast-path flows, in the order their first packets came."""
        order = np.argsort(g.first_pkt, kind="stable")
        cols = g.key[order].tolist()
        has_ports = g.has_ports[order].tolist()
        rows = zip(cols, has_ports, g.src_is_a[order].tolist(),
                   (g.first_pkt[order] + base).tolist(), g.first_ns[order].tolist(),
                   g.last_ns[order].tolist(), g.packets[order].tolist(),
                   g.nbytes[order].tolist(), strict=True)  # fmt: skip
        for k, ports, a_sent, seq, lo, hi, pk, nb in rows:
            ver, v0, v1, proto, ahi, alo, apt, bhi, blo, bpt = k
            width = 4 if ver == 4 else 16
            a = ((ahi << 64) | alo).to_bytes(width, "big")
            b = ((bhi << 64) | blo).to_bytes(width, "big")
            vlans = (v0 - 1, v1 - 1) if v1 else (v0 - 1,) if v0 else ()
            pa, pb = (apt, bpt) if ports else (None, None)
            key = (vlans, proto, a, pa, b, pb)
            src, sport, dst, dport = (a, pa, b, pb) if a_sent else (b, pb, a, pa)
            self._seq = seq
            self._add(key, src, sport, dst, dport, lo, hi, pk, nb)

    def finish(self) -> FlowSummary:
        """The summary; a record cut off at the end of the file is not counted."""
        self._carry = b""
        return self.summary

    # -- link layers: find the VLAN tags, the ethertype and the IP header ------

    def _ethernet(self, p: bytes, ns: int, size: int) -> None:
        if len(p) < 14:
            self.summary.non_ip += 1
            return
        self._tagged(p, 12, ns, size)

    def _sll(self, p: bytes, ns: int, size: int) -> None:
        if len(p) < 16:
            self.summary.non_ip += 1
            return
        self._tagged(p, 14, ns, size)

    def _sll2(self, p: bytes, ns: int, size: int) -> None:
        if len(p) < 20:
            self.summary.non_ip += 1
            return
        self._ip(p, 20, _U16(p, 0)[0], (), ns, size)

    def _raw(self, p: bytes, ns: int, size: int) -> None:
        v = p[0] >> 4 if p else 0
        self._ip(p, 0, 0x0800 if v == 4 else 0x86DD if v == 6 else 0, (), ns, size)

    def _tagged(self, p: bytes, at: int, ns: int, size: int) -> None:
        """at: the offset of the ethertype; 802.1Q/802.1ad tags before the IP header."""
        etype = _U16(p, at)[0]
        vlans: tuple[int, ...] = ()
        while etype in _VLAN_TYPES and len(p) >= at + 6:
            vlans += (_U16(p, at + 2)[0] & 0x0FFF,)
            at += 4
            etype = _U16(p, at)[0]
        self._ip(p, at + 2, etype, vlans, ns, size)

    # -- IP ----------------------------------------------------------------------

    def _ip(self, p: bytes, at: int, etype: int, vlans: tuple[int, ...], ns: int,
            size: int) -> None:  # fmt: skip
        n = len(p)
        if etype == 0x0800 and n >= at + 20 and p[at] >> 4 == 4:
            ihl = (p[at] & 0x0F) * 4
            proto = p[at + 9]
            src = p[at + 12 : at + 16]
            dst = p[at + 16 : at + 20]
            frag = _U16(p, at + 6)[0]
            frag_id = _U16(p, at + 4)[0]
            more, offset = frag & 0x2000, frag & 0x1FFF
            l4 = at + ihl
        elif etype == 0x86DD and n >= at + 40 and p[at] >> 4 == 6:
            proto = p[at + 6]
            src = p[at + 8 : at + 24]
            dst = p[at + 24 : at + 40]
            l4 = at + 40
            more = offset = frag_id = 0
            while proto in _IPV6_EXT or proto in (_FRAG6, _AH):
                if n < l4 + 8:
                    proto = -1  # headers cut by the snap length: no ports
                    break
                if proto == _FRAG6:
                    fo = _U16(p, l4 + 2)[0]
                    more, offset = fo & 1, fo >> 3
                    frag_id = _U32(p, l4 + 4)[0]
                    proto, l4 = p[l4], l4 + 8
                elif proto == _AH:
                    proto, l4 = p[l4], l4 + (p[l4 + 1] + 2) * 4
                else:
                    proto, l4 = p[l4], l4 + (p[l4 + 1] + 1) * 8
            if proto < 0:
                proto = p[at + 6]
                l4 = n  # no ports
        else:
            self.summary.non_ip += 1
            return
        if offset:  # a later fragment: its datagram's flow, if its first was seen
            key = self._frags.get((src, dst, proto, frag_id))
            if key is None:
                a, b, _, _ = ordered(src, dst, None, None)
                key = (vlans, proto, a, None, b, None)
            self._count(key, src, None, dst, None, ns, size)
            return
        sport: int | None = None
        dport: int | None = None
        one_way = False
        if proto in PORT_PROTOS:
            if n >= l4 + 4:
                sport, dport = _U16(p, l4)[0], _U16(p, l4 + 2)[0]
        elif proto in (ICMP, ICMP6) and n >= l4 + 2:
            sport, dport, one_way = icmp_ports(proto, p[l4], p[l4 + 1])
        a, b, pa, pb = ordered(src, dst, sport, dport, one_way)
        key = (vlans, proto, a, pa, b, pb)
        if more:
            if len(self._frags) >= self.cap:
                self._frags.clear()  # bounded: later fragments then get rows of their own
            self._frags[(src, dst, proto, frag_id)] = key
        self._count(key, src, sport, dst, dport, ns, size)

    def _count(self, key: FlowKey, src: bytes, sport: int | None, dst: bytes,
               dport: int | None, ns: int, size: int) -> None:  # fmt: skip
        self._add(key, src, sport, dst, dport, ns, ns, 1, size)

    def _add(self, key: FlowKey, src: bytes, sport: int | None, dst: bytes, dport: int | None,
             first_ns: int, last_ns: int, packets: int, nbytes: int) -> None:  # fmt: skip
        """Count packets towards a flow; self._seq: the number of the first of them."""
        s = self.summary
        f = s.flows.get(key)
        if f is not None:
            f.packets += packets
            f.nbytes += nbytes
            f.last_ns = max(f.last_ns, last_ns)
            f.first_ns = min(f.first_ns, first_ns)
            if self._seq < f.seq:  # an earlier packet (the fallback runs after the fast path)
                f.src, f.sport, f.dst, f.dport, f.seq = src, sport, dst, dport, self._seq
            return
        if len(s.flows) < self.cap:
            s.flows[key] = Flow(first_ns, last_ns, packets, nbytes, src, sport, dst, dport,
                                self._seq)  # fmt: skip
            return
        s.complete = False
        proto = key[1]
        for item in (src, dst):
            if item not in s.more_addrs:
                if len(s.more_addrs) < self.cap:
                    s.more_addrs.add(item)
                else:
                    s.sets_complete = False
        if proto in PORT_PROTOS:
            for port in (sport, dport):
                if port is not None and (proto, port) not in s.more_ports:
                    if len(s.more_ports) < self.cap:
                        s.more_ports.add((proto, port))
                    else:
                        s.sets_complete = False
