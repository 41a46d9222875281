"""The summariser's fast path: classify a chunk's packets with numpy.

Finding each record depends on the one before, so the walk stays a Python
loop (one unpack per record); everything after it (link layer, VLAN tags,
IPv4/IPv6 headers, ports, ICMP type/code, the Community ID order, grouping
into flows and the per-flow sums) is done on arrays, one pass per field for
the whole chunk. Packets this path does not take (IP fragments, IPv6
extension headers, more than two VLAN tags, headers cut by the snap length)
are handed back to the per-packet parser in summary.py, which is the
reference: tests check that both give the same flows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rollcap.flows.communityid import _ICMP4_PAIRS, _ICMP6_PAIRS

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
BOOL = npt.NDArray[np.bool_]

ETHERNET, RAW, SLL, SLL2, IPV4_LT, IPV6_LT = 1, 101, 113, 276, 228, 229
LINKTYPES = frozenset({ETHERNET, RAW, SLL, SLL2, IPV4_LT, IPV6_LT})
_VLAN = np.array([0x8100, 0x88A8, 0x9100])
_PORTS = np.array([6, 17, 132])
_V6_EXT = np.array([0, 43, 44, 51, 60])


def _pairs(table: dict[int, int]) -> I64:
    t = np.full(256, -1, dtype=np.int64)
    for k, v in table.items():
        t[k] = v
    return t


_PAIR4, _PAIR6 = _pairs(_ICMP4_PAIRS), _pairs(_ICMP6_PAIRS)


@dataclass
class Groups:
    """The flows of one chunk's fast-path packets: one row per flow (the
    columns of the key, the packet index of its first packet, sums)."""

    key: U64  # (n, 10): ip, vlan0+1, vlan1+1, proto, a_hi, a_lo, a_port, b_hi, b_lo, b_port
    has_ports: BOOL  # a port protocol or ICMP: ports/type-code in the key
    first_pkt: I64  # index (in the chunk) of the flow's first packet
    src_is_a: BOOL  # whether that first packet was sent by endpoint a
    first_ns: I64
    last_ns: I64
    packets: I64
    nbytes: I64


@dataclass
class Chunk:
    groups: Groups
    ns: I64  # per packet (for the fallback)
    orig: I64
    non_ip: int
    fallback: I64  # packet indices the per-packet parser must take


def classify(buf: npt.NDArray[np.uint8], offs: I64, endian: str, ns_mult: int,
             linktype: int) -> Chunk:  # fmt: skip
    """buf: the chunk's bytes; offs: where each whole record starts in it."""
    n = len(buf)
    last = n - 1

    def u8(pos: I64) -> I64:
        return buf[np.minimum(pos, last)].astype(np.int64)

    def u16(pos: I64) -> I64:
        return (u8(pos) << 8) | u8(pos + 1)

    def u32(pos: I64) -> U64:
        idx = np.minimum(pos[:, None] + np.arange(4), last)
        out: U64 = buf[idx].copy().view(">u4").astype(np.uint64).ravel()
        return out

    def u64(pos: I64) -> U64:
        idx = np.minimum(pos[:, None] + np.arange(8), last)
        out: U64 = buf[idx].copy().view(">u8").astype(np.uint64).ravel()
        return out

    hdr = buf[np.minimum(offs[:, None] + np.arange(16), last)].copy().view(endian + "u4")
    hdr = hdr.astype(np.int64)
    ns = hdr[:, 0] * 1_000_000_000 + hdr[:, 1] * ns_mult
    incl, orig = hdr[:, 2], hdr[:, 3]
    p = offs + 16
    end = p + incl
    fallback = np.zeros(len(offs), dtype=bool)
    vlan = [np.zeros(len(offs), dtype=np.int64), np.zeros(len(offs), dtype=np.int64)]
    if linktype in (ETHERNET, SLL):
        at = p + (12 if linktype == ETHERNET else 14)  # the ethertype
        short = end < at + 2
        et = u16(at)
        for level in range(2):
            tagged = np.isin(et, _VLAN) & (end >= at + 6)
            vlan[level] = np.where(tagged, (u16(at + 2) & 0x0FFF) + 1, 0)
            et = np.where(tagged, u16(at + 4), et)
            at = np.where(tagged, at + 4, at)
        fallback |= np.isin(et, _VLAN) & (end >= at + 6)  # a third tag
        et = np.where(short, -1, et)
        l3 = at + 2
    elif linktype == SLL2:
        et = np.where(end >= p + 20, u16(p), -1)
        l3 = p + 20
    else:  # raw IP
        ver = u8(p) >> 4
        et = np.where(end > p, np.where(ver == 4, 0x0800, np.where(ver == 6, 0x86DD, 0)), 0)
        l3 = p
    ver = u8(l3) >> 4
    v4 = (et == 0x0800) & (end >= l3 + 20) & (ver == 4)
    v6 = (et == 0x86DD) & (end >= l3 + 40) & (ver == 6)
    ip = v4 | v6
    non_ip = ~ip & ~fallback
    proto = np.where(v4, u8(l3 + 9), u8(l3 + 6))
    frag4 = v4 & ((u16(l3 + 6) & 0x3FFF) != 0)
    ext6 = v6 & np.isin(proto, _V6_EXT)
    fallback |= frag4 | ext6
    l4 = np.where(v4, l3 + (u8(l3) & 0x0F) * 4, l3 + 40)
    # addresses as two big-endian u64 (IPv4: 0 and the address)
    s_hi = np.zeros(len(offs), dtype=np.uint64)
    d_hi = np.zeros(len(offs), dtype=np.uint64)
    s_lo, d_lo = u32(l3 + 12), u32(l3 + 16)
    if v6.any():  # IPv6 addresses only where there is IPv6
        s_hi, d_hi = np.where(v6, u64(l3 + 8), s_hi), np.where(v6, u64(l3 + 24), d_hi)
        s_lo, d_lo = np.where(v6, u64(l3 + 16), s_lo), np.where(v6, u64(l3 + 32), d_lo)
    port_proto = np.isin(proto, _PORTS)
    icmp = (proto == 1) | (proto == 58)
    has_ports = port_proto | icmp
    fallback |= ip & ((port_proto & (end < l4 + 4)) | (icmp & (end < l4 + 2)))
    sport = np.where(port_proto, u16(l4), 0)
    dport = np.where(port_proto, u16(l4 + 2), 0)
    itype, icode = u8(l4), u8(l4 + 1)
    pair = np.where(proto == 1, _PAIR4[itype], _PAIR6[itype])
    sport = np.where(icmp, itype, sport)
    dport = np.where(icmp, np.where(pair >= 0, pair, icode), dport)
    one_way = icmp & (pair < 0)
    take = ip & ~fallback
    # Community ID order: smaller (address, port) first; one-way ICMP kept
    greater = (s_hi > d_hi) | ((s_hi == d_hi) & (
        (s_lo > d_lo) | ((s_lo == d_lo) & (sport > dport))))  # fmt: skip
    swap = greater & ~one_way
    a_hi, b_hi = np.where(swap, d_hi, s_hi), np.where(swap, s_hi, d_hi)
    a_lo, b_lo = np.where(swap, d_lo, s_lo), np.where(swap, s_lo, d_lo)
    a_pt, b_pt = np.where(swap, dport, sport), np.where(swap, sport, dport)
    idx = np.flatnonzero(take)
    cols = [np.where(v4, 4, 6), vlan[0], vlan[1], proto, a_hi, a_lo, a_pt, b_hi, b_lo, b_pt]
    key = np.stack([np.asarray(c)[idx].astype(np.uint64) for c in cols], axis=1)
    groups = _group(key, idx, ~swap[idx], has_ports[idx], ns[idx], orig[idx])
    return Chunk(groups, ns, orig, int(non_ip.sum()), np.flatnonzero(fallback))


def _group(key: U64, idx: I64, src_is_a: BOOL, has_ports: BOOL, ns: I64, orig: I64) -> Groups:
    if not len(idx):
        e = np.zeros(0, dtype=np.int64)
        return Groups(key, np.zeros(0, dtype=bool), e, np.zeros(0, dtype=bool), e, e, e, e)
    # Group by a 64-bit hash of the key (a 1-D sort is ~20x faster than
    # np.unique over rows); a collision is detected and the rows sorted then.
    h = np.zeros(len(key), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for c in range(key.shape[1]):
            h = (h ^ key[:, c]) * np.uint64(0x100000001B3)
            h ^= h >> np.uint64(29)
    _, first, inv = np.unique(h, return_index=True, return_inverse=True)
    inv = inv.ravel()
    uniq = key[first]
    if not np.array_equal(uniq[inv], key):
        uniq, first, inv = np.unique(key, axis=0, return_index=True, return_inverse=True)
        inv = inv.ravel()
    order = np.argsort(inv, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(inv[order]) != 0])
    ts = ns[order]
    return Groups(
        key=uniq, has_ports=has_ports[first], first_pkt=idx[first], src_is_a=src_is_a[first],
        first_ns=np.minimum.reduceat(ts, starts), last_ns=np.maximum.reduceat(ts, starts),
        packets=np.bincount(inv).astype(np.int64),
        nbytes=np.bincount(inv, weights=orig).astype(np.int64),
    )  # fmt: skip
