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

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from rollcap.flows import vector
from rollcap.flows.communityid import ICMP, ICMP6, PORT_PROTOS, icmp_ports, ordered
from rollcap.flows.vector import BOOL, ETHERNET, I64, IPV4_LT, IPV6_LT, RAW, SLL, SLL2, U8, U64
from rollcap.pcapfile import RECORD_HEADER_LEN, PcapHeader, Records, RecordWalker

DEFAULT_CAP = 100_000
_CACHE_MIN = 32  # records in a call before the flow cache is worth its fixed cost
_VLAN_TYPES = frozenset({0x8100, 0x88A8, 0x9100})
_IPV6_EXT = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
_FRAG6, _AH = 44, 51
_U16 = struct.Struct("!H").unpack_from
_U32 = struct.Struct("!I").unpack_from

# key: (vlans, proto, addr_a, port_a, addr_b, port_b), endpoints in hash order
FlowKey = tuple[tuple[int, ...], int, bytes, int | None, bytes, int | None]
# a packet of the reference parser, for the fast path: (seq, key, src, sport, ns, bytes)
_Row = tuple[int, FlowKey, bytes, int | None, int, int]


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


class Summariser:
    """feed() the pcap's bytes after its global header, in chunks of any
    size (memoryviews the caller reuses: nothing is kept past the call but a
    record cut by the chunk's end); finish() gives the summary.

    The offload's read walks the records once (pcapfile.RecordWalker, for its
    packet count) and hands the same walk here: feed_walked(). vectorised=False
    runs the per-packet reference parser alone (the tests' oracle)."""

    def __init__(self, header: PcapHeader, cap: int = DEFAULT_CAP, vectorised: bool = True) -> None:
        self.header = header
        self.cap = cap
        self.vectorised = vectorised
        self._walker = RecordWalker(header)  # feed()'s own walk; the offload passes its own
        self._rec = struct.Struct(header.endian + "IIII").unpack_from
        self._broken = False
        self._seq = 0
        self._ns_mult = 1_000_000_000 // header.ts_per_second
        self._carry: list[bytes] = []  # the start of a record the chunk's end cut
        self._frags: dict[tuple[bytes, bytes, int, int], FlowKey] = {}
        self.summary = FlowSummary(header.linktype, {})
        self._table = _Table(cap)
        # the reference parser's packets, as rows for the fast path's grouping
        self._rows: list[_Row] | None = None
        lt = header.linktype
        links: dict[int, Callable[[bytes, int, int], None]] = {
            ETHERNET: self._ethernet, SLL: self._sll, SLL2: self._sll2,
            RAW: self._raw, IPV4_LT: self._raw, IPV6_LT: self._raw,
        }  # fmt: skip
        self._link = links.get(lt)
        # packets of known flows skip classify() (vector.FlowCache: Ethernet)
        self._cache = vector.FlowCache(header.endian) if vectorised and lt == ETHERNET else None
        self._to_cache: list[tuple[U8, U64]] = []

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        data = memoryview(chunk).cast("B")  # read in place: no copy of the chunk
        self.feed_walked(data, self._walker.feed(data))

    def feed_walked(self, data: bytes | memoryview, recs: Records) -> None:
        """The chunk and where RecordWalker.feed() found its records."""
        if self._broken:
            return
        parts: list[_Part] = []  # counted together: one table lookup per chunk
        if self._carry and recs.head >= 0:  # the cut record is whole now
            self._carry.append(bytes(data[: recs.head]))
            rec = b"".join(self._carry)
            self._carry = []
            self._packets(rec, np.zeros(1, dtype=np.int64), parts)
        elif self._carry and not recs.broken:
            self._carry.append(bytes(data))
        if len(recs.whole):
            self._packets(data, recs.whole, parts)
        if parts:
            self._table.add(self.summary, parts)
        if self._cache is not None:
            for rows, key in self._to_cache:
                self._cache.store(rows, self._table.find(key))
            self._to_cache.clear()
        if recs.tail >= 0:
            self._carry = [bytes(data[recs.tail :])]
        if recs.broken:  # not a record: stop, and say so
            self._broken = True
            self._carry = []
            self.summary.complete = False

    def _packets(self, data: bytes | memoryview, starts: I64, parts: list[_Part]) -> None:
        """Classify the records at starts; the fast path's packets (and the
        reference parser's, as columns) go to parts, in that order."""
        s = self.summary
        base = s.packets
        s.packets += len(starts)
        if self._link is None:
            s.non_ip += len(starts)
            return
        if not self.vectorised:
            rec, mult = self._rec, self._ns_mult
            for i, off in enumerate(starts.tolist()):
                sec, frac, incl, orig = rec(data, off)
                self._seq = base + i
                start = off + RECORD_HEADER_LEN
                pkt = bytes(data[start : start + incl])
                self._link(pkt, sec * 1_000_000_000 + frac * mult, orig)
            return
        buf = np.frombuffer(data, dtype=np.uint8)
        rows: U8 | None = None
        took: I64 | None = None  # the records classify() takes, if not all
        if self._cache is not None and len(starts) >= _CACHE_MIN:
            rows = vector.windows(buf, starts)
            hit, r, non_ip = self._cache.lookup(rows)
            if hit.any():
                at = np.flatnonzero(hit)
                hdr = rows.view(self.header.endian + "u4")  # the record header's columns
                ns = hdr[:, 0].astype(np.int64) * 1_000_000_000
                ns += hdr[:, 1].astype(np.int64) * self._ns_mult
                self._table.count(r[at], ns[at], hdr[:, 3].astype(np.int64)[at])
            if non_ip.any():
                s.non_ip += int(non_ip.sum())
                hit |= non_ip
            if hit.any():
                took = np.flatnonzero(~hit)
                starts, rows = starts[took], rows[took]
        c = vector.classify(buf, starts, self.header.endian, self._ns_mult,
                            self.header.linktype, rows)  # fmt: skip
        s.non_ip += c.non_ip
        p = c.packets
        if p.key.shape[1]:
            seq = (p.index if took is None else took[p.index]) + base
            parts.append(_Part(p.key, p.src_is_a, p.ports, p.ns, p.orig, seq))
            if rows is not None:  # stored once the table has their flows
                self._to_cache.append((rows[p.index], p.key))
        if len(c.fallback):
            self._rows = []
            for j in c.fallback.tolist():
                off = int(starts[j])
                incl = self._rec(data, off)[2]
                self._seq = base + (j if took is None else int(took[j]))
                start = off + RECORD_HEADER_LEN
                self._link(bytes(data[start : start + incl]), int(c.ns[j]), int(c.orig[j]))
            rows_, self._rows = self._rows, None
            if rows_:
                fk, fa, fp, fns, fo, fseq = self._table.encode(rows_, base)
                parts.append(_Part(fk, fa, fp, fns, fo, fseq + base))

    def finish(self) -> FlowSummary:
        """The summary; a record cut off at the end of the file is not counted."""
        self._carry = []
        if self.vectorised:
            self.summary.flows = self._table.flows()
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
        if self._rows is not None:  # the fast path's fallback: grouped with its packets
            self._rows.append((self._seq, key, src, sport, ns, size))
            return
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


@dataclass
class _Part:
    """Packets to count, as the fast path's columns (vector.Packets); seq:
    each one's number in the capture. Within a part, in packet order."""

    key: U64
    src_is_a: BOOL
    ports: BOOL
    ns: I64
    orig: I64
    seq: I64

    def take(self, idx: I64) -> _Part:
        return _Part(self.key[:, idx], self.src_is_a[idx], self.ports[idx], self.ns[idx],
                     self.orig[idx], self.seq[idx])  # fmt: skip


_MAX_SLOT_BITS = 18
_INTERNED = 1 << (2 * vector.VLAN_BITS)  # VLAN codes from here on: stacks of 3+ tags
_FLOW_FIELDS = ("seq", "src_is_a", "first_ns", "last_ns", "packets", "nbytes")


class _Table:
    """The fast path's flows as numpy columns, in the order they were first
    seen (as the reference's dict is), with a dict from key bytes to row:
    per chunk, Python touches each of the chunk's new flows once, never a
    packet. Packets of flows already in the table are counted without a
    sort: a direct-mapped slot array from each row's key hash (vector._hash,
    the same in every chunk) to its row, checked against the whole key."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.n = 0
        self.index: dict[bytes, int] = {}
        self.key = np.zeros((64, vector.KEY_COLS), dtype=np.uint64)
        self.hash = np.zeros(64, dtype=np.uint64)
        self.cols = {f: np.zeros(64, dtype=bool if f == "src_is_a" else np.int64)
                     for f in _FLOW_FIELDS}  # fmt: skip
        self._col_any = [False] * vector.KEY_COLS  # a row's key has this column nonzero
        self._bits = 0
        self._slots = np.zeros(0, dtype=np.int64)  # hash's top _bits -> row (-1: none)
        self._stacks: dict[tuple[int, ...], int] = {}  # VLAN stacks of 3+ tags, interned
        self._stack_list: list[tuple[int, ...]] = []

    def encode(self, rows: list[_Row], base: int) -> tuple[U64, BOOL, BOOL, I64, I64, I64]:
        """The reference parser's packets (seq, key, src, sport, ns, bytes) as the
        fast path's columns (vector.py), so that both group together."""
        key = np.zeros((vector.KEY_COLS, len(rows)), dtype=np.uint64)
        src_is_a, ports = np.zeros(len(rows), dtype=bool), np.zeros(len(rows), dtype=bool)
        ns, orig, seq = (np.zeros(len(rows), dtype=np.int64) for _ in range(3))
        for i, (sq, (vlans, proto, a, pa, b, pb), src, sport, t, size) in enumerate(rows):
            code = vector.vlan_code(vlans)
            if code is None:
                if vlans not in self._stacks:
                    self._stacks[vlans] = len(self._stack_list)
                    self._stack_list.append(vlans)
                code = _INTERNED + self._stacks[vlans]
            meta = ((len(a) == 16) << 50) | ((pa is not None) << 49) | (proto << 40)
            meta |= ((pa or 0) << 16) | (pb or 0)
            ia, ib = int.from_bytes(a, "big"), int.from_bytes(b, "big")
            key[:, i] = (code, meta, ia >> 64, ia & _LO, ib >> 64, ib & _LO)
            src_is_a[i] = src == a and (sport is None or sport == pa)
            ports[i] = sport is not None
            seq[i], ns[i], orig[i] = sq - base, t, size
        return key, src_is_a, ports, ns, orig, seq

    def _find(self, key: U64, h: U64) -> tuple[BOOL, I64]:
        """Which packets' flows have a row found by its slot, and (where they
        do) that row; the rest: new flows, flows beyond the cap, rows whose
        slot another row holds."""
        r = self._slots[h >> np.uint64(64 - self._bits)]
        hit = r >= 0
        np.maximum(r, 0, out=r)
        hit &= self.hash[r] == h
        for c in range(vector.KEY_COLS):  # the whole key, not just its hash
            if self._col_any[c]:
                hit &= self.key[r, c] == key[c]
            elif key[c].any():
                hit &= key[c] == 0
        return hit, r

    def find(self, key: U64) -> I64:
        """Per packet: its flow's row, or -1 (as _find)."""
        if not self.n or not key.shape[1]:
            return np.full(key.shape[1], -1, dtype=np.int64)
        hit, r = self._find(key, vector._hash(key))
        r[~hit] = -1
        return r

    def count(self, r: I64, ns: I64, orig: I64) -> None:
        """Count packets towards the rows r."""
        c = self.cols
        c["packets"][: self.n] += np.bincount(r, minlength=self.n)
        np.add.at(c["nbytes"], r, orig)
        np.minimum.at(c["first_ns"], r, ns)
        np.maximum.at(c["last_ns"], r, ns)

    def _known(self, p: _Part, h: U64) -> BOOL:
        """Count the packets of p whose flow _find() finds; which ones were."""
        hit, r = self._find(p.key, h)
        if hit.all():
            self.count(r, p.ns, p.orig)
        elif hit.any():
            self.count(r[hit], p.ns[hit], p.orig[hit])
        return hit

    def _slot_rows(self, lo: int, hi: int) -> None:
        """Give rows lo..hi a slot where theirs is free; more slots (all rows
        again) once the rows pass an eighth of them, up to 2**18 slots (2 MiB;
        rows without a slot of their own are found through the dict)."""
        if 8 * hi > len(self._slots) and self._bits < _MAX_SLOT_BITS:
            self._bits = min(_MAX_SLOT_BITS, max(10, (8 * hi - 1).bit_length()))
            self._slots = np.full(1 << self._bits, -1, dtype=np.int64)
            lo = 0
        rows = np.arange(lo, hi)
        at = self.hash[lo:hi] >> np.uint64(64 - self._bits)
        free = self._slots[at] < 0
        self._slots[at[free]] = rows[free]

    def add(self, s: FlowSummary, parts: list[_Part]) -> None:
        """Count a chunk's packets towards their flows: parts in packet order,
        or each in order and their seq saying the order between them."""
        miss: list[tuple[_Part, U64]] = []
        for p in parts:
            h = vector._hash(p.key)
            if self.n:
                hit = self._known(p, h)
                if hit.any():
                    if hit.all():
                        continue
                    left = np.flatnonzero(~hit)
                    p, h = p.take(left), h[left]
            miss.append((p, h))
        if not miss:
            return
        p, h = miss[0]
        if len(miss) > 1:  # merged into packet order
            order = np.argsort(np.concatenate([q.seq for q, _ in miss]), kind="stable")
            p = _Part(*(np.concatenate([getattr(q, f) for q, _ in miss], axis=-1)[..., order]
                        for f in ("key", "src_is_a", "ports", "ns", "orig", "seq")))  # fmt: skip
            h = np.concatenate([hq for _, hq in miss])[order]
        key, src_is_a, ports, ns, orig, seq = p.key, p.src_is_a, p.ports, p.ns, p.orig, p.seq
        g = vector.group(key, ns, orig, h)
        kb = cast(list[bytes], np.ascontiguousarray(g.key).view(_KEY_BYTES).ravel().tolist())
        get = self.index.get
        rows = np.array([get(k, -1) for k in kb], dtype=np.int64)
        old = rows >= 0
        c = self.cols
        if old.any():
            r = rows[old]
            c["packets"][r] += g.packets[old]
            c["nbytes"][r] += g.nbytes[old]
            c["first_ns"][r] = np.minimum(c["first_ns"][r], g.first_ns[old])
            c["last_ns"][r] = np.maximum(c["last_ns"][r], g.last_ns[old])
        new = np.flatnonzero(~old)  # in the order of their first packets
        if not len(new):
            return
        admit, rejected = new[: self.cap - self.n], new[self.cap - self.n :]
        if len(admit):
            lo, hi = self.n, self.n + len(admit)
            self._grow(hi)
            c = self.cols
            at = slice(lo, hi)
            first = g.first[admit]
            self.key[at] = g.key[admit]
            self.hash[at] = h[first]
            for col in range(vector.KEY_COLS):
                self._col_any[col] = self._col_any[col] or bool(g.key[admit, col].any())
            for f, v in (("seq", seq[first]), ("src_is_a", src_is_a[first]),
                         ("first_ns", g.first_ns[admit]), ("last_ns", g.last_ns[admit]),
                         ("packets", g.packets[admit]), ("nbytes", g.nbytes[admit])):  # fmt: skip
                c[f][at] = v
            for i, k in zip(admit.tolist(), range(lo, hi), strict=True):
                self.index[kb[i]] = k
            self.n = hi
            self._slot_rows(lo, hi)
        if len(rejected):  # beyond the cap: only the sets of what they touched
            s.complete = False
            pk = np.isin(g.inv(), rejected)
            self._sets(s, key[:, pk], src_is_a[pk], ports[pk])

    def _grow(self, need: int) -> None:
        size = len(self.key)
        if need <= size:
            return
        while size < need:
            size *= 2
        self.key = np.resize(self.key, (size, vector.KEY_COLS))
        self.hash = np.resize(self.hash, size)
        self.cols = {f: np.resize(v, size) for f, v in self.cols.items()}

    def _sets(self, s: FlowSummary, key: U64, src_is_a: BOOL, ports: BOOL) -> None:
        """The reference's rule (Summariser._add) for packets of flows not kept:
        each packet's source then destination, in packet order, until the set
        holds cap items."""
        meta = key[1]
        v6 = (meta >> np.uint64(50)) & np.uint64(1)
        a, b = key[2:4].T, key[4:6].T
        src = np.where(src_is_a[:, None], a, b)
        dst = np.where(src_is_a[:, None], b, a)
        addrs = np.stack([np.c_[v6, src], np.c_[v6, dst]], axis=1).reshape(-1, 3)
        _, first = np.unique(addrs, axis=0, return_index=True)
        for v, hi, lo in addrs[np.sort(first)].tolist():
            item = ((hi << 64) | lo).to_bytes(16 if v else 4, "big")
            if item not in s.more_addrs:
                if len(s.more_addrs) < self.cap:
                    s.more_addrs.add(item)
                else:
                    s.sets_complete = False
        proto = ((meta >> np.uint64(40)) & np.uint64(0xFF)).astype(np.int64)
        with_ports = ports & np.isin(proto, list(PORT_PROTOS))
        a_pt = ((meta >> np.uint64(16)) & np.uint64(0xFFFF)).astype(np.int64)
        b_pt = (meta & np.uint64(0xFFFF)).astype(np.int64)
        sp, dp = np.where(src_is_a, a_pt, b_pt), np.where(src_is_a, b_pt, a_pt)
        items = np.stack([proto << 16 | sp, proto << 16 | dp], axis=1)[with_ports].ravel()
        _, first = np.unique(items, return_index=True)
        for it in items[np.sort(first)].tolist():
            item = (it >> 16, it & 0xFFFF)
            if item not in s.more_ports:
                if len(s.more_ports) < self.cap:
                    s.more_ports.add(item)
                else:
                    s.sets_complete = False

    def flows(self) -> dict[FlowKey, Flow]:
        out: dict[FlowKey, Flow] = {}
        c = self.cols
        cols = zip(self.key[: self.n].tolist(),
                   *(c[f][: self.n].tolist() for f in _FLOW_FIELDS), strict=True)  # fmt: skip
        for (code, meta, ahi, alo, bhi, blo), seq, a_sent, lo, hi, pk, nb in cols:
            vlans = vector.vlans_of(code)
            if vlans is None:
                vlans = self._stack_list[code - _INTERNED]
            width = 16 if meta >> 50 & 1 else 4
            a = ((ahi << 64) | alo).to_bytes(width, "big")
            b = ((bhi << 64) | blo).to_bytes(width, "big")
            pa, pb = (meta >> 16 & 0xFFFF, meta & 0xFFFF) if meta >> 49 & 1 else (None, None)
            key = (vlans, meta >> 40 & 0xFF, a, pa, b, pb)
            src, sport, dst, dport = (a, pa, b, pb) if a_sent else (b, pb, a, pa)
            out[key] = Flow(lo, hi, pk, nb, src, sport, dst, dport, seq)
        return out


_LO = (1 << 64) - 1
_KEY_BYTES = np.dtype((np.void, 8 * vector.KEY_COLS))
