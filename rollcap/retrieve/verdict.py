"""Whether a tcpdump filter could match a packet of a capture, decided from
the capture's flow summary alone (rollcap/flows/index.py), conservatively.

``compile_filter(expr)`` parses the part of tcpdump's language a summary can
answer (libpcap 1.10's grammar.y and gencode.c, read for this) into a tree,
or raises Undecidable naming what it cannot decide. ``Verdict.may_match``
then says whether any flow of a summary could hold a matching packet. The
one rule: it never says no for a capture that holds a matching packet (the
soundness test, tests/integration/test_skip_soundness.py, compares with
tcpdump over every object). So every answer is three-valued (no, yes,
maybe) and "maybe" downloads.

What is decided, and how it follows libpcap:

- ``host``/``net`` (IPv4: dotted, with ``/len`` or ``mask``, short forms
  promoted as libpcap does; IPv6 literals), with ``src``/``dst``/``src or
  dst``/``src and dst`` and ``ip``/``ip6``/``arp``/``rarp``; a plain IPv4
  ``host`` also means ARP and RARP, which a flow never is;
- ``port``/``portrange`` (numbers) with ``tcp``/``udp``/``sctp``; libpcap
  never matches a port in an IPv4 fragment after the first, nor in IPv6 when
  the next header is not the transport (extension headers, fragments);
- ``ip``, ``ip6``, ``arp``, ``rarp``, ``tcp``, ``udp``, ``sctp``, ``icmp``,
  ``icmp6``, ``igmp``, ``igrp``, ``pim``, ``vrrp``, ``carp``, ``ah``,
  ``esp``, ``[ip|ip6] proto N``; for IPv6 libpcap reads the first next
  header (or the one after a fragment header) while a flow records the last:
  any of them may be seen, so those answers are "maybe";
- ``vlan [N]``: libpcap moves every primitive after it 4 bytes on (even
  across ``or``); a primitive looking past the flow's tags reads the IP
  header as link header: "maybe";
- ``and``/``&&``, ``or``/``||`` (equal precedence, left to right), ``not``/
  ``!``, parentheses, and a bare address or number after and/or/not taking
  the qualifiers before it (``host a or b``, ``port 80 or 443``).

Anything else (names to resolve, ``ether``, ``len``, ``less``, byte
offsets, ``tcp[...]``, ``gateway``, ``mpls``, ``protochain``, ...) raises
Undecidable: the fetch then downloads every capture, as without the index.

A packet of a flow is any of its views: each direction, and (IPv4) a later
fragment without ports, or (IPv6) extension headers before the transport.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

F, U, T = 0, 1, 2  # no, maybe, yes (Kleene: and = min, or = max, not = 2 - x)

ETHERNET, SLL = 1, 113
ET_IP, ET_IP6, ET_ARP, ET_RARP = 0x0800, 0x86DD, 0x0806, 0x8035
TPID = -1  # the type field holds a VLAN tag's TPID
TCP, UDP, SCTP = 6, 17, 132
V6_EXT = frozenset({0, 43, 44, 51, 60})  # what rollcap's summariser steps over
_PORT_PROTOS = (TCP, UDP, SCTP)

# qualifiers
DEFAULT = "default"
_PROTOS = {"ip", "ip6", "arp", "rarp", "tcp", "udp", "sctp", "icmp", "icmp6", "igmp",
           "igrp", "pim", "vrrp", "carp", "ah", "esp"}  # fmt: skip
_ADDRS = {"host", "net", "port", "portrange"}
_NOT = {"not", "!"}
_AND = {"and", "&&"}
_OR = {"or", "||"}
# pname -> (protocol number, IP versions) as gen_proto_abbrev builds it
_ABBREV = {
    "tcp": (TCP, (4, 6)), "udp": (UDP, (4, 6)), "sctp": (SCTP, (4, 6)),
    "icmp": (1, (4,)), "igmp": (2, (4,)), "igrp": (9, (4,)), "vrrp": (112, (4,)),
    "carp": (112, (4,)), "pim": (103, (4, 6)), "icmp6": (58, (6,)),
    "ah": (51, (4, 6)), "esp": (50, (4, 6)),
}  # fmt: skip
_LINK = {"ip": ET_IP, "ip6": ET_IP6, "arp": ET_ARP, "rarp": ET_RARP}


class Undecidable(ValueError):
    """The filter (or a part of it) is not one a flow summary can answer."""


@dataclass(frozen=True)
class Qual:
    proto: str
    dir: str
    addr: str


QERR = Qual("err", "err", "err")


@dataclass(frozen=True)
class View:
    """What libpcap may see of one packet of a flow."""

    linktype: int
    vlans: tuple[int, ...]
    ip: int  # 4 or 6
    proto: int
    src: int
    dst: int
    sport: int | None
    dport: int | None
    plain: bool  # False: a later IPv4 fragment, or IPv6 with headers before the transport


Eval = Callable[[View], int]


@dataclass
class Node:
    """A compiled filter: ``ev`` gives F/U/T for a view. ``absent`` gives, for
    a set of exact addresses known to be in no flow, F/U/T for every flow
    (used to skip a summary before reading its rows)."""

    ev: Eval
    absent: Callable[[frozenset[int]], int]
    directional: bool = False  # src/dst: both directions are views
    fragile: bool = False  # ports or IPv6 protocols: the other views matter
    hosts: frozenset[tuple[int, int]] = frozenset()  # exact addresses (ip, int) tested at depth 0


def _not(a: Node) -> Node:
    return Node(lambda v: 2 - a.ev(v), lambda s: 2 - a.absent(s), a.directional, a.fragile,
                a.hosts)  # fmt: skip


def _bin(op: str, a: Node, b: Node) -> Node:
    d, fr, h = a.directional or b.directional, a.fragile or b.fragile, a.hosts | b.hosts
    fa, fb = a.ev, b.ev
    if op == "and":

        def ev(v: View) -> int:
            x = fa(v)
            return x and min(x, fb(v))

        return Node(ev, lambda s: min(a.absent(s), b.absent(s)), d, fr, h)

    def ev_or(v: View) -> int:
        x = fa(v)
        return x if x == T else max(x, fb(v))

    return Node(ev_or, lambda s: max(a.absent(s), b.absent(s)), d, fr, h)


def _maybe(_: frozenset[int]) -> int:
    return U


# -- what the type field says at a depth (VLAN tags libpcap skipped) -----------


def _l3(v: View, depth: int) -> int | None:
    """The link-layer type field libpcap reads after ``depth`` VLAN tags:
    an ethertype, TPID, or None (past the tags: bytes of the IP header)."""
    k = len(v.vlans)
    if v.linktype != ETHERNET and depth:
        return None  # `vlan` does not compile for these link types
    if depth < k:
        return TPID
    if depth > k:
        return None
    return ET_IP if v.ip == 4 else ET_IP6


# -- primitives ---------------------------------------------------------------


def _addr_test(dirq: str, hit: Callable[[int], bool]) -> Callable[[View], bool]:
    if dirq == "src":
        return lambda v: hit(v.src)
    if dirq == "dst":
        return lambda v: hit(v.dst)
    if dirq == "and":
        return lambda v: hit(v.src) and hit(v.dst)
    return lambda v: hit(v.src) or hit(v.dst)


def host_node(ip: int, addr: int, mask: int, kinds: tuple[str, ...], dirq: str, depth: int
              ) -> Node:  # fmt: skip
    """``[ip|ip6|arp|rarp] [dir] host|net``: kinds are the protocols tested
    (a plain IPv4 host: ip, arp and rarp). ARP and RARP are never a flow."""
    want = ET_IP if ip == 4 else ET_IP6
    test = _addr_test(dirq, lambda a: a & mask == addr)
    on_ip = ("ip" in kinds) if ip == 4 else ("ip6" in kinds)

    def ev(v: View) -> int:
        t = _l3(v, depth)
        if t is None:
            return U
        if t != want or not on_ip:
            return F
        return T if test(v) else F

    full = mask == (1 << (32 if ip == 4 else 128)) - 1
    exact = frozenset({(ip, addr)}) if full and depth == 0 and on_ip else frozenset()

    def absent(s: frozenset[int]) -> int:
        # in no flow: no packet matches (depth 0: the type field is always known)
        return F if exact and addr in s else U

    return Node(ev, absent, dirq in ("src", "dst"), False, exact)


def port_node(protos: tuple[int, ...], lo: int, hi: int, dirq: str, depth: int) -> Node:
    lo, hi = min(lo, hi), max(lo, hi)

    def hit(p: int | None) -> bool:
        return p is not None and lo <= p <= hi

    if dirq == "src":
        test: Callable[[View], bool] = lambda v: hit(v.sport)  # noqa: E731
    elif dirq == "dst":
        test = lambda v: hit(v.dport)  # noqa: E731
    elif dirq == "and":
        test = lambda v: hit(v.sport) and hit(v.dport)  # noqa: E731
    else:
        test = lambda v: hit(v.sport) or hit(v.dport)  # noqa: E731

    def ev(v: View) -> int:
        t = _l3(v, depth)
        if t is None:
            return U
        if t not in (ET_IP, ET_IP6) or v.proto not in protos or not v.plain:
            return F  # a later fragment, or IPv6 whose next header is not the transport
        return T if test(v) else F

    return Node(ev, _maybe, dirq in ("src", "dst"), True)


def proto_node(n: int, versions: tuple[int, ...], depth: int) -> Node:
    def ev(v: View) -> int:
        t = _l3(v, depth)
        if t is None:
            return U
        if t == ET_IP:
            return T if 4 in versions and v.proto == n else F
        if t != ET_IP6 or 6 not in versions:
            return F
        if v.proto in V6_EXT:  # headers cut short: the chain is unknown
            return U
        if v.plain:  # the next header is the transport
            return T if v.proto == n else F
        return U if n == v.proto or n in V6_EXT else F

    return Node(ev, _maybe, False, True)


def link_node(ethertype: int, depth: int) -> Node:
    def ev(v: View) -> int:
        t = _l3(v, depth)
        if t is None:
            return U
        return T if t == ethertype else F

    return Node(ev, _maybe)


def vlan_node(num: int | None, depth: int) -> Node:
    def ev(v: View) -> int:
        if v.linktype != ETHERNET:
            return U
        k = len(v.vlans)
        if depth > k:
            return U
        if depth == k:
            return F
        return T if num is None or v.vlans[depth] == num else F

    return Node(ev, _maybe)


# -- the parser -----------------------------------------------------------------

_TOKEN = re.compile(r"\s*(&&|\|\||[()!/]|[^\s()!/&|]+|.)")
_WORD_OK = re.compile(r"^[A-Za-z0-9._:\\-]+$")
_NUM = re.compile(r"^(0|[1-9][0-9]*|0[xX][0-9a-fA-F]+)$")
_HID = re.compile(r"^[0-9]+(\.[0-9]+){1,3}$")


def _tokens(expr: str) -> list[str]:
    out: list[str] = []
    pos = 0
    expr = expr.rstrip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:  # pragma: no cover - the pattern matches any character
            raise Undecidable(f"cannot read {expr[pos:]!r}")
        tok = m.group(1)
        pos = m.end()
        if tok == "!" and expr[pos : pos + 1] == "=":
            raise Undecidable("comparisons ('!=') are not in a flow summary")
        if tok not in ("&&", "||", "(", ")", "!", "/") and not _WORD_OK.match(tok):
            raise Undecidable(f"{tok!r} is not in a flow summary")
        out.append(tok)
    return out


def _num(tok: str) -> int:
    return int(tok, 16) if tok[:2] in ("0x", "0X") else int(tok)


def _atoin(tok: str) -> tuple[int, int]:
    """libpcap's __pcap_atoin: (value, bits) of a dotted IPv4 prefix."""
    v, n = 0, 0
    for part in tok.split("."):
        b = int(part)
        if b > 255:
            raise Undecidable(f"{tok!r} is not an IPv4 address")
        v, n = (v << 8) | b, n + 8
    return v, n


class _Parser:
    def __init__(self, expr: str) -> None:
        self.toks = _tokens(expr)
        self.i = 0
        self.depth = 0  # `vlan` keywords seen: libpcap's offset shift

    def peek(self, k: int = 0) -> str | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise Undecidable("the filter ends early")
        self.i += 1
        return tok

    def expect(self, tok: str) -> None:
        if self.take() != tok:
            raise Undecidable(f"expected {tok!r}")

    def parse(self) -> Node:
        if not self.toks:
            raise Undecidable("an empty filter")
        node, _ = self.expr(QERR)
        if self.peek() is not None:
            raise Undecidable(f"{self.peek()!r} is not in a flow summary")
        return node

    # expr: term | expr (and|or) (term|id)
    def expr(self, q: Qual) -> tuple[Node, Qual]:
        node, q = self.term(q, allow_id=False)
        while self.peek() in _AND | _OR:
            op = "and" if self.take() in _AND else "or"
            rhs, q = self.term(q, allow_id=True)
            node = _bin(op, node, rhs)
        return node, q

    def term(self, q: Qual, allow_id: bool) -> tuple[Node, Qual]:
        tok = self.peek()
        if tok is None:
            raise Undecidable("the filter ends early")
        if tok in _NOT:
            self.take()
            n, q2 = self.term(q, allow_id)
            return _not(n), q2
        if tok == "(":
            if allow_id and self._pid_ahead():
                self.take()
                n, q2 = self.pid(q)
                self.expect(")")
                return n, q2
            self.take()
            n, _ = self.expr(q)
            self.expect(")")
            return n, q  # libpcap: the qualifiers before the parenthesis
        if tok == "vlan":
            self.take()
            num = None
            nxt = self.peek()
            if nxt == "(":
                raise Undecidable("'vlan (N)'")
            if nxt is not None and _NUM.match(nxt):
                num = _num(self.take())
                if num > 0x0FFF:
                    raise Undecidable(f"vlan {num}")
            node = vlan_node(num, self.depth)
            self.depth += 1
            return node, QERR
        if tok in _PROTOS or tok in ("src", "dst") or tok in _ADDRS or tok == "proto":
            head = self._head()
            if head is None:  # a protocol name alone
                assert tok is not None
                self.take()
                return self._abbrev(tok), QERR
            return self.id(head)
        if allow_id and tok is not None:
            return self.id(q)
        raise Undecidable(f"{tok!r} is not in a flow summary")

    def _pid_ahead(self) -> bool:
        j = 1
        while self.peek(j) in _NOT:
            j += 1
        nxt = self.peek(j)
        if nxt is None or nxt == "(":
            raise Undecidable("nested parentheses of bare addresses")
        return not (nxt in _PROTOS or nxt in _ADDRS or nxt in ("src", "dst", "proto", "vlan")
                    or nxt in _NOT)  # fmt: skip

    def _head(self) -> Qual | None:
        """pqual [dqual] [aqual|proto]; None for a bare protocol name."""
        start = self.i
        proto = DEFAULT
        if self.peek() in _PROTOS:
            proto = self.take()
        dirq = DEFAULT
        if self.peek() in ("src", "dst"):
            first = self.take()
            if self.peek() in _AND | _OR and self.peek(1) in ("src", "dst") and \
                    self.peek(1) != first:  # fmt: skip
                dirq = "and" if self.take() in _AND else "or"
                self.take()
            else:
                dirq = first
        addr = DEFAULT
        if self.peek() in _ADDRS:
            addr = self.take()
        elif self.peek() == "proto":
            if dirq != DEFAULT:
                raise Undecidable("direction applied to 'proto'")
            self.take()
            addr = "proto"
        if dirq == DEFAULT and addr == DEFAULT:
            self.i = start
            if proto == DEFAULT:
                raise Undecidable(f"{self.peek()!r} is not in a flow summary")
            return None
        return Qual(proto, dirq, addr)

    def _abbrev(self, name: str) -> Node:
        if name in _LINK:
            return link_node(_LINK[name], self.depth)
        n, versions = _ABBREV[name]
        return proto_node(n, versions, self.depth)

    # id: nid | NUM | '(' pid ')'; nid: address forms | not id
    def id(self, q: Qual) -> tuple[Node, Qual]:
        tok = self.take()
        if tok in _NOT:
            n, q2 = self.id(q)
            return _not(n), q2
        if tok == "(":
            n, q2 = self.pid(q)
            self.expect(")")
            return n, q2
        if q == QERR:
            raise Undecidable(f"{tok!r} without a qualifier")
        return self.value(tok, q), q

    def pid(self, q: Qual) -> tuple[Node, Qual]:
        tok = self.peek()
        if tok == "(":
            raise Undecidable("nested parentheses of bare addresses")
        node, q = self.id(q)
        while self.peek() in _AND | _OR:
            op = "and" if self.take() in _AND else "or"
            rhs, q = self.id(q)
            node = _bin(op, node, rhs)
        return node, q

    def value(self, tok: str, q: Qual) -> Node:
        if _NUM.match(tok) and self.peek() != "/":
            return self._number(_num(tok), q)
        if _HID.match(tok):
            return self._ipv4(tok, q)
        if tok.startswith("\\"):
            tok = tok[1:]
        if ":" in tok:
            return self._ipv6(tok, q)
        if q.addr == "proto":
            try:
                n = socket.getprotobyname(tok)
            except OSError:
                raise Undecidable(f"protocol name {tok!r}") from None
            return self._proto(n, q)
        m = re.fullmatch(r"([0-9]+)-([0-9]+)", tok)
        if q.addr == "portrange" and m:
            lo, hi = int(m[1]), int(m[2])
            if max(lo, hi) > 65535:
                raise Undecidable(f"port {max(lo, hi)}")
            return self._ports(q, lo, hi)
        raise Undecidable(f"{tok!r} (a name to resolve) is not in a flow summary")

    def _number(self, v: int, q: Qual) -> Node:
        if q.addr in (DEFAULT, "host", "net"):
            if v > 0xFFFFFFFF:
                raise Undecidable(f"address {v}")
            mask = 0xFFFFFFFF
            if q.addr == "net":  # libpcap: promote a short net number
                while v and not v & 0xFF000000:
                    v, mask = (v << 8) & 0xFFFFFFFF, (mask << 8) & 0xFFFFFFFF
            return self._host(4, v, mask, q)
        if q.addr in ("port", "portrange"):
            if v > 65535:
                raise Undecidable(f"port {v}")
            return self._ports(q, v, v)
        if q.addr == "proto":
            return self._proto(v, q)
        raise Undecidable(f"{q.addr} {v}")

    def _ipv4(self, tok: str, q: Qual) -> Node:
        v, bits = _atoin(tok)
        if self.peek() == "/" or self.peek() == "mask":
            if q.addr != "net":
                raise Undecidable("mask syntax for networks only")
            if self.take() == "/":
                nt = self.take()
                if not _NUM.match(nt) or _num(nt) > 32:
                    raise Undecidable(f"mask length {nt!r}")
                n = _num(nt)
                m = (0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF if n else 0
            else:
                mt = self.take()
                if not _HID.match(mt):
                    raise Undecidable(f"mask {mt!r}")
                m, mbits = _atoin(mt)
                m = (m << (32 - mbits)) & 0xFFFFFFFF
            v = (v << (32 - bits)) & 0xFFFFFFFF
            if v & ~m & 0xFFFFFFFF:
                raise Undecidable("non-network bits set")
            return self._host(4, v, m, q)
        if q.addr not in (DEFAULT, "host", "net"):
            raise Undecidable(f"'{q.addr}' applied to an ip host")
        mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
        return self._host(4, (v << (32 - bits)) & 0xFFFFFFFF, mask, q)

    def _ipv6(self, tok: str, q: Qual) -> Node:
        try:
            a = int(ipaddress.IPv6Address(tok))
        except ValueError:
            raise Undecidable(f"{tok!r} is not an IPv6 address") from None
        n = 128
        if self.peek() == "/":
            self.take()
            nt = self.take()
            if not _NUM.match(nt) or _num(nt) > 128:
                raise Undecidable(f"prefix length {nt!r}")
            n = _num(nt)
        if q.addr not in (DEFAULT, "host", "net") or (q.addr != "net" and n != 128):
            raise Undecidable(f"'{q.addr}' applied to an IPv6 address")
        m = ((1 << 128) - 1) ^ ((1 << (128 - n)) - 1)
        if a & ~m:
            raise Undecidable("non-network bits set")
        return self._host(6, a, m, q)

    def _host(self, ip: int, addr: int, mask: int, q: Qual) -> Node:
        if ip == 4:
            kinds = {DEFAULT: ("ip", "arp", "rarp"), "ip": ("ip",), "arp": ("arp",),
                     "rarp": ("rarp",)}.get(q.proto)  # fmt: skip
        else:
            kinds = ("ip6",) if q.proto in (DEFAULT, "ip6") else None
        if kinds is None or q.dir not in (DEFAULT, "src", "dst", "and", "or"):
            raise Undecidable(f"'{q.proto}' applied to a host")
        return host_node(ip, addr, mask, kinds, q.dir, self.depth)

    def _ports(self, q: Qual, lo: int, hi: int) -> Node:
        protos = {DEFAULT: _PORT_PROTOS, "tcp": (TCP,), "udp": (UDP,), "sctp": (SCTP,)}.get(q.proto)
        if protos is None:
            raise Undecidable(f"'{q.proto}' applied to a port")
        return port_node(protos, lo, hi, q.dir, self.depth)

    def _proto(self, n: int, q: Qual) -> Node:
        versions = {DEFAULT: (4, 6), "ip": (4,), "ip6": (6,)}.get(q.proto)
        if versions is None or n > 255:
            raise Undecidable(f"'{q.proto} proto {n}'")
        return proto_node(n, versions, self.depth)


def compile_filter(expr: str) -> Node:
    """The filter as a tree a summary can answer; Undecidable (naming the
    part) when it depends on anything a flow summary does not hold."""
    return _Parser(expr).parse()


# -- a summary's verdict ----------------------------------------------------------


def _addr(text: str) -> tuple[int, int]:
    a = ipaddress.ip_address(text)
    return a.version, int(a)


def views(linktype: int, row: dict[str, Any], node: Node) -> Iterator[View]:
    """The views of one flow row that can differ for this filter."""
    ip, src = _addr(row["src"])
    _, dst = _addr(row["dst"])
    vlans = tuple(row.get("vlan") or ())
    proto = int(row["proto"])
    sport, dport = row.get("sport"), row.get("dport")
    plains = (True, False) if node.fragile else (True,)
    for plain in plains:
        yield View(linktype, vlans, ip, proto, src, dst, sport, dport, plain)
        if node.directional:
            yield View(linktype, vlans, ip, proto, dst, src, dport, sport, plain)


def flow_may_match(node: Node, linktype: int, row: dict[str, Any]) -> bool:
    return any(node.ev(v) != F for v in views(linktype, row, node))


def flow_verdict(node: Node, linktype: int, row: dict[str, Any]) -> int:
    """T when the flow surely holds a matching packet: its first packet as
    the row keys it (src to dst, with its ports) matches, and that packet is
    known as libpcap reads it (IPv4; or IPv6 for a filter that tests no
    ports and no protocols, since extension headers before the transport
    leave no trace in a row). U when only some other view may match, F when
    none can (`rollcap flows --filter`)."""
    first = next(views(linktype, row, node))  # src to dst, plain
    if node.ev(first) == T and (first.ip == 4 or not node.fragile):
        return T
    return U if flow_may_match(node, linktype, row) else F


def absent_hosts(node: Node, text: str) -> frozenset[int]:
    """The exact addresses the filter tests that appear in no flow of a
    summary's text (as the summariser writes them: inet_ntop, quoted)."""
    out = set()
    for ip, addr in node.hosts:
        fam, width = (socket.AF_INET, 4) if ip == 4 else (socket.AF_INET6, 16)
        quoted = '"' + socket.inet_ntop(fam, addr.to_bytes(width, "big")) + '"'
        if quoted not in text:
            out.add(addr)
    return frozenset(out)


def any_may_match(node: Node, linktype: int, rows: Iterable[dict[str, Any]],
                  window: tuple[int, int] | None = None) -> bool:  # fmt: skip
    """Whether any flow row (in the window, if given: its packets lie between
    its first_ns and last_ns) could hold a matching packet."""
    for row in rows:
        if window is not None:
            lo, hi = row.get("first_ns"), row.get("last_ns")
            if isinstance(lo, int) and isinstance(hi, int) and (lo >= window[1] or hi < window[0]):
                continue
        if flow_may_match(node, linktype, row):
            return True
    return False
