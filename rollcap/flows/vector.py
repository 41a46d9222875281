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
# (+ 4: a multiple of 8, so that the flow cache reads a row as u8 words)
_WIDTH = 16 + 16 + 8 + _IP_WIN + 4


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


def _windows(buf: U8, width: int) -> npt.NDArray[np.void]:
    """Every ``width`` bytes of buf from each offset, as one item each: a
    gather of them copies whole items (about 2.5x faster than indexing a
    sliding_window_view, which copies byte by byte)."""
    return np.ndarray((len(buf) - width + 1,), dtype=np.dtype((np.void, width)), buffer=buf,
                      strides=(1,))  # fmt: skip


def _rows(buf: U8, starts: I64, width: int) -> U8:
    """A copy of the first ``width`` bytes from each start (zeros past the chunk)."""
    n = len(buf)
    if n >= width and (not len(starts) or starts[-1] <= n - width):
        out: U8 = _windows(buf, width)[starts].view(np.uint8).reshape(len(starts), width)
        return out
    out = np.zeros((len(starts), width), dtype=np.uint8)
    inside = starts <= n - width
    if n >= width:
        out[inside] = _windows(buf, width)[starts[inside]].view(np.uint8).reshape(-1, width)
    for i in np.flatnonzero(~inside).tolist():  # the last few records of the chunk
        s = int(starts[i])
        out[i, : n - s] = buf[s:]
    return out


def windows(buf: U8, starts: I64) -> U8:
    """The fixed window of each record (classify()'s rows), a copy."""
    return _rows(buf, starts, _WIDTH)


def classify(buf: U8, starts: I64, endian: str, ns_mult: int, linktype: int,
             rows: U8 | None = None) -> Chunk:  # fmt: skip
    """buf: the chunk's bytes; starts: where each whole record starts in it.

    Every 16-bit field sits at an even column of the window (record header
    16, link headers 14/16/20/0, tags 4, IP field offsets even), so one
    big-endian u16 view of it reads them all without a copy."""
    count = len(starts)
    if rows is None:  # given: windows() of these starts, which classify may change
        rows = _rows(buf, starts, _WIDTH)  # C-contiguous, _WIDTH a multiple of 8
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
        t1 = _IS_VLAN[et]
        if t1.any() and (t1 := t1 & (incl >= link + 4)).any():
            # tagged: read the tags, then move the IP header to l3
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
        rows = rows[take]
        w = rows.view(">u2")
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
    else:
        s_hi = d_hi = None
        sport, dport = p4[0].astype(np.int64), p4[1].astype(np.int64)
    if icmp.any():
        if any6:
            itype = np.where(v4, rows[:, l3 + 20], rows[:, l3 + 40]).astype(np.int64)
            icode = np.where(v4, rows[:, l3 + 21], rows[:, l3 + 41]).astype(np.int64)
        else:
            itype, icode = rows[:, l3 + 20].astype(np.int64), rows[:, l3 + 21].astype(np.int64)
        pair = np.where(proto == 1, _PAIR4[itype], _PAIR6[itype])
        sport = np.where(port_proto, sport, np.where(icmp, itype, 0))
        dport = np.where(port_proto, dport, np.where(icmp, np.where(pair >= 0, pair, icode), 0))
        one_way = icmp & (pair < 0)
    else:
        if not port_proto.all():  # no ports for other protocols (GRE, ...)
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


# per-column odd multipliers of the hash, and its final mix
_MULT = tuple(np.uint64(m) for m in (
    0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
    0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53,
))  # fmt: skip
_MIX = np.uint64(0x94D049BB133111EB)
_S32 = np.uint64(32)


def _hash(key: U64) -> U64:
    """A 64-bit hash of each row: the sum of each column times its own odd
    constant, then mixed. A zero column adds nothing, so a column that is
    zero in every row (IPv4-only chunks: the high halves) is left out and a
    flow hashes the same in every chunk (the summary's table relies on it)."""
    h = np.zeros(key.shape[1], dtype=np.uint64)
    t = np.empty_like(h)
    with np.errstate(over="ignore"):
        for c in range(len(key)):
            col = key[c]
            if c in (0, 2, 4) and not col.any():
                continue
            np.multiply(col, _MULT[c], out=t)
            h += t
        h ^= h >> _S32
        h *= _MIX
        h ^= h >> _S32
    return h


def _collision(key: U64, order: I64, starts: I64, sizes: I64) -> bool:
    """Whether a run of equal hashes holds two different keys."""
    for col in key:
        if col.any():
            c = col[order]
            if not np.array_equal(c, np.repeat(c[starts], sizes)):
                return True
    return False


def group(key: U64, ns: I64, orig: I64, h: U64 | None = None) -> Groups:
    """key: per packet, in packet order; h: its _hash(), if known. A 1-D sort
    of a 64-bit hash of the key (~20x faster than np.unique over rows; not
    stable: a group's first packet is its smallest position); a collision is
    detected, and the rows are then sorted exactly."""
    if not key.shape[1]:
        e = np.zeros(0, dtype=np.int64)
        return Groups(key.T, e, e, e, e, e, e, e, e)
    if h is None:
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


# -- the flow cache: packets of known flows without classify() ----------------
# On Ethernet, for an untagged IPv4 packet without options or fragment bits
# whose record holds its IP header and ports (incl >= 38), classify() gives
# its flow from these bytes of its window alone (bytes 24-55, read as four u8
# words): the ethertype, version/IHL, the fragment field less DF, protocol,
# addresses, and ports (ICMP: type, code and checksum). So a packet whose
# masked bytes equal those of a packet classify() took belongs to that
# packet's flow.
_RAW_AT = 3  # the first u8 word: bytes 24-31
_RAW_MASK = np.frombuffer(bytes([
    0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0,  # 24-31: ethertype (28-29), version/IHL
    0, 0, 0, 0, 0x3F, 0xFF, 0, 0xFF,  # 32-39: fragment field less DF (36-37), protocol
    0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,  # 40-47: addresses (42-49)
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0,  # 48-55: ports (50-53)
]), dtype=np.uint64)  # fmt: skip
_RAW_INCL = 14 + 20 + 4
_CACHE_BITS = 15
_CACHE_MASK = (1 << _CACHE_BITS) - 1


class FlowCache:
    """Raw keys (above) of packets that classify() took -> the row of their
    flow in the summary's table. Two-way: a key lives in one of two slots
    (two parts of its hash), the second taken when the first is."""

    def __init__(self, endian: str) -> None:
        self.endian = endian
        # per slot: the raw key's words, then its row + 1 (0: empty)
        self.slots = np.zeros((1 << _CACHE_BITS, len(_RAW_MASK) + 1), dtype=np.uint64)
        # the same slots as one item each: a gather copies whole slots
        self._items = self.slots.view(np.dtype((np.void, self.slots.shape[1] * 8))).ravel()

    @staticmethod
    def _raw(rows: U8) -> tuple[list[U64], U64]:
        """The raw key's words, and a hash of them."""
        w = rows.view(np.uint64)
        raw = [w[:, _RAW_AT + c] & m for c, m in enumerate(_RAW_MASK)]
        with np.errstate(over="ignore"):  # not word 0 (ethertype, version): nearly constant
            h = raw[1] * _MULT[1]
            for c in range(2, len(raw)):
                h += raw[c] * _MULT[c]
            h ^= h >> _S32
            h *= _MIX
        return raw, h

    @staticmethod
    def _slot(h: U64, way: int) -> U64:
        out: U64 = (h >> np.uint64(64 - _CACHE_BITS * (way + 1))) & np.uint64(_CACHE_MASK)
        return out

    def _match(self, raw: list[U64], slot: U64) -> tuple[BOOL, I64]:
        got = self._items[slot].view(np.uint64).reshape(len(slot), -1)
        r = got[:, len(raw)].astype(np.int64) - 1
        hit = r >= 0
        for c, col in enumerate(raw):
            hit &= got[:, c] == col
        return hit, r

    def lookup(self, rows: U8) -> tuple[BOOL, I64, BOOL]:
        """rows: windows(); which packets are known, (where they are) their
        row, and which are not IP (an ethertype neither IP nor a VLAN tag:
        classify() counts them as non-IP)."""
        raw, h = self._raw(rows)
        hit, r = self._match(raw, self._slot(h, 0))
        et = rows.view(">u2")[:, 14].astype(np.uint16)
        non_ip = (et != 0x0800) & (et != 0x86DD)
        for tag in _VLAN:
            non_ip &= et != tag
        second = np.flatnonzero(~hit & (et == 0x0800))
        if len(second):
            hit2, r2 = self._match([col[second] for col in raw], self._slot(h[second], 1))
            hit[second], r[second] = hit2, r2
        hit &= rows.view(self.endian + "u4")[:, 2] >= _RAW_INCL
        return hit, r, non_ip

    def store(self, rows: U8, table_rows: I64) -> None:
        """rows: windows of packets classify() took; table_rows: their flows' rows
        (-1: none)."""
        ok = (rows.view(">u2")[:, 14] == 0x0800) & (table_rows >= 0)
        ok &= rows.view(self.endian + "u4")[:, 2] >= _RAW_INCL
        if not ok.any():
            return
        raw, h = self._raw(rows[ok])
        slot = self._slot(h, 0)
        taken = self.slots[slot, len(raw)] != 0
        slot[taken] = self._slot(h[taken], 1)
        _, first = np.unique(slot, return_index=True)  # one key per slot
        at = slot[first]
        for c, col in enumerate(raw):
            self.slots[at, c] = col[first]
        self.slots[at, len(raw)] = (table_rows[ok][first] + 1).astype(np.uint64)
