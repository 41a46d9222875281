"""The summariser's fast path: classify a chunk's packets with numpy.

The record walk (pcapfile.RecordWalker, shared with the offload's count)
gives where each whole record starts; everything after it is done on arrays
for the whole chunk: one gather copies a fixed window of every record (record
header, link header, VLAN tags, IP header, ports), then each field is a column
of it. Packets this path does not take (IP fragments, IPv6 extension headers,
IPv4 options, more than two VLAN tags, headers cut by the snap length) are
handed back to the per-packet parser in summary.py, which is the reference:
tests check that both give the same flows.

A packet's flow key is six uint64 columns (KEY_COLS), so that grouping is one
sort of a 64-bit hash of them (checked, exact on a collision):
    vlan:  the VLAN code (vlan_code())
    meta:  IPv6 << 50 | has ports << 49 | protocol << 40 | port a << 16 | port b
    a_hi, a_lo, b_hi, b_lo: the endpoints in Community ID order, each address
           as two big-endian halves (IPv4: 0 and the address)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from rollcap.flows.communityid import _ICMP4_PAIRS, _ICMP6_PAIRS

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]
BOOL = npt.NDArray[np.bool_]

ETHERNET, RAW, SLL, SLL2, IPV4_LT, IPV6_LT = 1, 101, 113, 276, 228, 229
LINKTYPES = frozenset({ETHERNET, RAW, SLL, SLL2, IPV4_LT, IPV6_LT})
KEY_COLS = 6
VLAN_BITS = 13  # a tag's 12-bit ID + 1 (0: no tag)
_VLAN = (0x8100, 0x88A8, 0x9100)
_IS_VLAN = np.zeros(1 << 16, dtype=bool)
_IS_VLAN[list(_VLAN)] = True
_ICMP = np.zeros(256, dtype=bool)
_ICMP[[1, 58]] = True
_V6_EXT = np.zeros(256, dtype=bool)
_V6_EXT[[0, 43, 44, 51, 60]] = True
_PORT_PROTO = np.zeros(256, dtype=bool)
_PORT_PROTO[[6, 17, 132]] = True
# the fixed window copied per record: record header, the longest link header
# with two tags (SLL: 16 + 8), and IPv6 (40) + ports (4); IPv4 without options
# (20 + 4) fits in it
_IP_WIN = 44
_LINK = {ETHERNET: 14, SLL: 16, SLL2: 20, RAW: 0, IPV4_LT: 0, IPV6_LT: 0}
_WIDTH = 16 + 16 + 8 + _IP_WIN


def _pairs(table: dict[int, int]) -> I64:
    t = np.full(256, -1, dtype=np.int64)
    for k, v in table.items():
        t[k] = v
    return t


_PAIR4, _PAIR6 = _pairs(_ICMP4_PAIRS), _pairs(_ICMP6_PAIRS)


def vlan_code(vlans: tuple[int, ...]) -> int | None:
    """The key's VLAN column for up to two tags; None for more (the caller
    interns those)."""
    if len(vlans) > 2:
        return None
    code = 0
    for i, v in enumerate(vlans):
        code |= (v + 1) << (VLAN_BITS * i)
    return code


def vlans_of(code: int) -> tuple[int, ...] | None:
    """vlan_code()'s inverse; None: not a two-tag code (an interned one)."""
    if code >> (2 * VLAN_BITS):
        return None
    mask = (1 << VLAN_BITS) - 1
    v0, v1 = code & mask, code >> VLAN_BITS
    return (v0 - 1, v1 - 1) if v1 else (v0 - 1,) if v0 else ()


@dataclass
class Packets:
    """The fast path's packets of one chunk, in record order."""

    index: I64  # which record of the chunk (position in the starts given)
    key: U64  # (KEY_COLS, n): one contiguous column per field
    src_is_a: BOOL  # the sender is endpoint a
    ports: BOOL  # the packet's own ports were read (a port protocol)
    ns: I64
    orig: I64


@dataclass
class Chunk:
    packets: Packets
    non_ip: int
    fallback: I64  # record indices the per-packet parser must take
    ns: I64  # per record (for the fallback)
    orig: I64


def _rows(buf: U8, starts: I64, width: int) -> U8:
    """A copy of the first ``width`` bytes from each start (zeros past the chunk)."""
    n = len(buf)
    if n >= width and (not len(starts) or starts[-1] <= n - width):
        out: U8 = sliding_window_view(buf, width)[starts]
        return out
    out = np.zeros((len(starts), width), dtype=np.uint8)
    inside = starts <= n - width
    if n >= width:
        out[inside] = sliding_window_view(buf, width)[starts[inside]]
    for i in np.flatnonzero(~inside).tolist():  # the last few records of the chunk
        s = int(starts[i])
        out[i, : n - s] = buf[s:]
    return out


def classify(buf: U8, starts: I64, endian: str, ns_mult: int, linktype: int) -> Chunk:
    """buf: the chunk's bytes; starts: where each whole record starts in it.

    Every 16-bit field sits at an even column of the window (record header
    16, link headers 14/16/20/0, tags 4, IP field offsets even), so one
    big-endian u16 view of it reads them all without a copy."""
    count = len(starts)
    rows = _rows(buf, starts, _WIDTH)  # C-contiguous, _WIDTH a multiple of 4
    hdr = rows.view(endian + "u4")
    ns = hdr[:, 0].astype(np.int64) * 1_000_000_000 + hdr[:, 1].astype(np.int64) * ns_mult
    incl, orig = hdr[:, 2].astype(np.int64), hdr[:, 3].astype(np.int64)
    link = _LINK[linktype]
    l3 = 16 + link  # the IP header's column (after the tags, once moved below)
    fallback = np.zeros(count, dtype=bool)
    l4: I64 | int
    s_hi: U64 | None
    d_hi: U64 | None
    have = incl - link  # bytes from the IP header on
    vcode: U64 | None = None
    w = rows.view(">u2")
    if linktype in (ETHERNET, SLL):
        at = (l3 - 2) // 2  # the ethertype, as a u16 column
        et = w[:, at]
        t1 = _IS_VLAN[et] & (incl >= link + 4)
        if t1.any():  # tagged: read the tags, then move the IP header to l3
            t2 = t1 & _IS_VLAN[w[:, at + 2]] & (incl >= link + 8)
            fallback |= t2 & _IS_VLAN[w[:, at + 4]] & (incl >= link + 12)  # a third tag
            et = np.where(t2, w[:, at + 4], np.where(t1, w[:, at + 2], et))
            v0 = np.where(t1, (w[:, at + 1].astype(np.int64) & 0x0FFF) + 1, 0)
            v1 = np.where(t2, (w[:, at + 3].astype(np.int64) & 0x0FFF) + 1, 0)
            vcode = (v0 | (v1 << VLAN_BITS)).astype(np.uint64)
            have = have - 4 * (t1.astype(np.int64) + t2)
            for m, t in ((t1 & ~t2, 4), (t2, 8)):
                rows[m, l3 : _WIDTH - t] = rows[m, l3 + t :]
        is4, is6 = et == 0x0800, et == 0x86DD
    elif linktype == SLL2:
        et = w[:, 8]
        is4, is6 = et == 0x0800, et == 0x86DD
    else:  # raw IP: the version says
        is4 = is6 = np.ones(count, dtype=bool)
    b0 = rows[:, l3]
    ver = b0 >> 4
    v4 = is4 & (ver == 4) & (have >= 20)
    v6 = is6 & (ver == 6) & (have >= 40)
    any6 = bool(v6.any())
    ip_ok = v4 | v6 if any6 else v4
    non_ip = ~ip_ok & ~fallback
    c = l3 // 2  # the IP header as u16 columns
    if any6:
        proto = np.where(v4, rows[:, l3 + 9], rows[:, l3 + 6])
        l4 = np.where(v4, 20, 40)
        fallback |= v6 & _V6_EXT[proto]
    else:
        proto, l4 = rows[:, l3 + 9], 20
    # IPv4 fragments and options: the reference parser
    fallback |= v4 & (((w[:, c + 3] & 0x3FFF) != 0) | ((b0 & 0x0F) != 5))
    port_proto = _PORT_PROTO[proto]
    icmp = _ICMP[proto]
    fallback |= ip_ok & ((port_proto & (have < l4 + 4)) | (icmp & (have < l4 + 2)))
    take_m = ip_ok & ~fallback
    take = np.flatnonzero(take_m)
    if len(take) < count:
        v4, proto, port_proto, icmp = v4[take], proto[take], port_proto[take], icmp[take]
        rows, w = rows[take], w[take]
        if vcode is not None:
            vcode = vcode[take]
    n = len(take)
    # addresses: IPv4 as one u64 (hi 0); IPv6 as two big-endian halves
    s_lo = (w[:, c + 6].astype(np.uint64) << np.uint64(16)) | w[:, c + 7]
    d_lo = (w[:, c + 8].astype(np.uint64) << np.uint64(16)) | w[:, c + 9]
    p4 = (w[:, c + 10], w[:, c + 11])
    if any6:
        a6 = np.ascontiguousarray(rows[:, l3 + 8 : l3 + 40]).view(">u8")
        s_hi, d_hi = np.where(v4, 0, a6[:, 0]), np.where(v4, 0, a6[:, 2])
        s_lo, d_lo = np.where(v4, s_lo, a6[:, 1]), np.where(v4, d_lo, a6[:, 3])
        sport = np.where(v4, p4[0], w[:, c + 20]).astype(np.int64)
        dport = np.where(v4, p4[1], w[:, c + 21]).astype(np.int64)
        itype = np.where(v4, rows[:, l3 + 20], rows[:, l3 + 40]).astype(np.int64)
        icode = np.where(v4, rows[:, l3 + 21], rows[:, l3 + 41]).astype(np.int64)
    else:
        s_hi = d_hi = None
        sport, dport = p4[0].astype(np.int64), p4[1].astype(np.int64)
        itype, icode = rows[:, l3 + 20].astype(np.int64), rows[:, l3 + 21].astype(np.int64)
    if icmp.any():
        pair = np.where(proto == 1, _PAIR4[itype], _PAIR6[itype])
        sport = np.where(port_proto, sport, np.where(icmp, itype, 0))
        dport = np.where(port_proto, dport, np.where(icmp, np.where(pair >= 0, pair, icode), 0))
        one_way = icmp & (pair < 0)
    else:
        sport, dport = sport * port_proto, dport * port_proto
        one_way = None
    # Community ID order: smaller (address, port) first; one-way ICMP kept
    greater = (s_lo > d_lo) | ((s_lo == d_lo) & (sport > dport))
    if s_hi is not None and d_hi is not None:
        greater = (s_hi > d_hi) | ((s_hi == d_hi) & greater)
    swap = greater & ~one_way if one_way is not None else greater
    a_pt, b_pt = np.where(swap, dport, sport), np.where(swap, sport, dport)
    meta = (proto.astype(np.int64) << 40) | (a_pt << 16) | b_pt
    meta |= (port_proto | icmp).astype(np.int64) << 49
    key = np.zeros((KEY_COLS, n), dtype=np.uint64)
    if vcode is not None:
        key[0] = vcode
    key[1] = meta
    key[3] = np.where(swap, d_lo, s_lo)
    key[5] = np.where(swap, s_lo, d_lo)
    if s_hi is not None and d_hi is not None:
        key[1] |= (~v4).astype(np.uint64) << np.uint64(50)
        key[2] = np.where(swap, d_hi, s_hi)
        key[4] = np.where(swap, s_hi, d_hi)
    if n < count:
        ns_t, orig_t = ns[take], orig[take]
    else:
        ns_t, orig_t = ns, orig
    pk = Packets(take, key, ~swap, port_proto, ns_t, orig_t)
    return Chunk(pk, int(non_ip.sum()), np.flatnonzero(fallback), ns, orig)


@dataclass
class Groups:
    """Packets grouped by flow key: one row per flow, in the order of the
    flows' first packets."""

    key: U64  # (groups, KEY_COLS)
    first: I64  # the position (in the packets given) of the flow's first packet
    first_ns: I64
    last_ns: I64
    packets: I64
    nbytes: I64
    order: I64  # the packets, grouped
    sizes: I64  # packets per group, in that order
    gid: I64  # the group of each run in order

    def inv(self) -> I64:
        """Per packet: its group."""
        inv = np.empty(len(self.order), dtype=np.int64)
        inv[self.order] = np.repeat(self.gid, self.sizes)
        return inv


def _hash(key: U64) -> U64:
    """A 64-bit hash of each row (FNV-style multiply and shift per column);
    columns that are zero in every row (IPv4-only chunks: the high halves)
    are left out, which changes no grouping."""
    h = np.zeros(key.shape[1], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for c in range(len(key)):
            col = key[c]
            if c in (0, 2, 4) and not col.any():
                continue
            h = (h ^ col) * np.uint64(0x100000001B3)
            h ^= h >> np.uint64(29)
    return h


def _collision(key: U64, order: I64, starts: I64, sizes: I64) -> bool:
    """Whether a run of equal hashes holds two different keys."""
    for col in key:
        if col.any():
            c = col[order]
            if not np.array_equal(c, np.repeat(c[starts], sizes)):
                return True
    return False


def group(key: U64, ns: I64, orig: I64) -> Groups:
    """key: per packet, in packet order. A 1-D sort of a 64-bit hash of the
    key (~20x faster than np.unique over rows; not stable: a group's first
    packet is its smallest position); a collision is detected, and the rows
    are then sorted exactly."""
    if not key.shape[1]:
        e = np.zeros(0, dtype=np.int64)
        return Groups(key.T, e, e, e, e, e, e, e, e)
    h = _hash(key)
    order = np.argsort(h)
    hs = h[order]
    starts = np.flatnonzero(np.r_[True, hs[1:] != hs[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    if _collision(key, order, starts, sizes):
        order = np.lexsort(key[::-1])  # exact
        ks = key[:, order]
        starts = np.flatnonzero(np.r_[True, (ks[:, 1:] != ks[:, :-1]).any(axis=0)])
        sizes = np.diff(np.r_[starts, len(order)])
    first = np.minimum.reduceat(order, starts)
    by_first = np.argsort(first)
    gid = np.empty(len(starts), dtype=np.int64)
    gid[by_first] = np.arange(len(starts))
    ts = ns[order]
    return Groups(
        key=np.ascontiguousarray(key[:, first[by_first]].T), first=first[by_first],
        first_ns=np.minimum.reduceat(ts, starts)[by_first],
        last_ns=np.maximum.reduceat(ts, starts)[by_first],
        packets=sizes[by_first], nbytes=np.add.reduceat(orig[order], starts)[by_first],
        order=order, sizes=sizes, gid=gid,
    )  # fmt: skip
