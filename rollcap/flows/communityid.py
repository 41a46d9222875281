"""Community ID v1 (corelight/community-id-spec): the flow hash Zeek and
Suricata log, so an analyst can pivot from an IDS alert to a capture.

Input hashed: seed (2 bytes, big-endian), the two addresses, protocol, a zero
pad byte, then the two ports (2 bytes each, omitted for protocols without
ports), after ordering the endpoints so both directions hash the same. ICMP
type/code stand in for ports; a request/reply pair maps the code to the
counterpart type so both directions meet, other ICMP types are one-way (not
reordered)."""

from __future__ import annotations

import base64
import hashlib
import socket
import struct

ICMP, TCP, UDP, ICMP6, SCTP = 1, 6, 17, 58, 132
PORT_PROTOS = frozenset({TCP, UDP, SCTP})

# request <-> reply types (the spec's tables)
_ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6_PAIRS = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135,
                130: 131, 131: 130, 144: 145, 145: 144}  # fmt: skip


def icmp_ports(proto: int, itype: int, code: int) -> tuple[int, int, bool]:
    """(sport, dport, one_way) for an ICMP(v6) message of this type and code."""
    pairs = _ICMP4_PAIRS if proto == ICMP else _ICMP6_PAIRS
    if itype in pairs:
        return itype, pairs[itype], False
    return itype, code, True


def ordered(
    saddr: bytes, daddr: bytes, sport: int | None, dport: int | None, one_way: bool = False
) -> tuple[bytes, bytes, int | None, int | None]:
    """The endpoints in hash order: smaller address first, then smaller port;
    a one-way ICMP message stays as it is."""
    if one_way:
        return saddr, daddr, sport, dport
    if saddr < daddr or (saddr == daddr and (sport or 0) <= (dport or 0)):
        return saddr, daddr, sport, dport
    return daddr, saddr, dport, sport


def community_id(
    saddr: bytes, daddr: bytes, proto: int, sport: int | None, dport: int | None, seed: int = 0
) -> str:
    """The v1 ID of an already ordered() tuple; addresses as packed bytes
    (4 or 16). sport/dport None: a protocol without ports (or a later fragment)."""
    data = struct.pack("!H", seed) + saddr + daddr + struct.pack("!BB", proto, 0)
    if sport is not None and dport is not None:
        data += struct.pack("!HH", sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode()


def ntop(addr: bytes) -> str:
    """An address's text, from its 4 or 16 bytes."""
    return socket.inet_ntop(socket.AF_INET if len(addr) == 4 else socket.AF_INET6, addr)
