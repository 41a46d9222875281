"""Community ID v1 against the published vectors (Zeek's community_id_v1
test, the spec's README and its seed-1 variants)."""

from __future__ import annotations

import ipaddress

import pytest

from rollcap.flows.communityid import community_id, icmp_ports, ordered


def _cid(src: str, dst: str, proto: int, sport: int | None, dport: int | None,
         seed: int = 0) -> str:  # fmt: skip
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    one_way = False
    if proto in (1, 58) and sport is not None and dport is not None:
        sport, dport, one_way = icmp_ports(proto, sport, dport)
    a, b, pa, pb = ordered(s, d, sport, dport, one_way)
    return community_id(a, b, proto, pa, pb, seed)


V6A = "fe80:0001:0203:0405:0607:0809:0A0B:0C0D"
V6B = "fe80:1011:1213:1415:1617:1819:1A1B:1C1D"


@pytest.mark.parametrize(
    ("src", "dst", "proto", "sport", "dport", "seed", "want"),
    [
        ("1.2.3.4", "5.6.7.8", 6, 1122, 3344, 0, "1:wCb3OG7yAFWelaUydu0D+125CLM="),
        ("1.2.3.4", "5.6.7.8", 17, 1122, 3344, 0, "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg="),
        ("1.2.3.4", "5.6.7.8", 1, 8, 0, 0, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0="),
        ("5.6.7.8", "1.2.3.4", 1, 0, 0, 0, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0="),  # the reply
        (V6A, V6B, 58, 128, 0, 0, "1:0bf7hyMJUwt3fMED7z8LIfRpBeo="),
        ("1.2.3.4", "5.6.7.8", 46, None, None, 0, "1:ikv3kmf89luf73WPz1jOs49S768="),  # RSVP
        ("1.2.3.4", "5.6.7.8", 6, 1122, 3344, 1, "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk="),
        ("1.2.3.4", "5.6.7.8", 17, 1122, 3344, 1, "1:OShq+iKDAMVouh/4bMxB9Sz4amw="),
        ("1.2.3.4", "5.6.7.8", 1, 8, 0, 1, "1:9pr4ZGTICiuZoIh90RRYE2RyXpU="),
        (V6A, V6B, 58, 128, 0, 1, "1:IO27GQzPuCtNnwFvjWALMHu5tJE="),
    ],
)
def test_published_vectors(src: str, dst: str, proto: int, sport: int | None,
                           dport: int | None, seed: int, want: str) -> None:  # fmt: skip
    assert _cid(src, dst, proto, sport, dport, seed) == want
    if proto in (6, 17):  # both directions of a flow have one ID
        assert _cid(dst, src, proto, dport, sport, seed) == want


def test_one_way_icmp_is_not_reordered() -> None:
    """Destination unreachable (3) has no counterpart: the sender stays first."""
    assert icmp_ports(1, 3, 1) == (3, 1, True)
    assert _cid("9.9.9.9", "1.1.1.1", 1, 3, 1) != _cid("1.1.1.1", "9.9.9.9", 1, 3, 1)
