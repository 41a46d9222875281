"""The flow index's verdict on one capture: summaries made by the offload's
summariser (rollcap.flows) from captures built here; the soundness against
tcpdump itself is tests/integration/test_skip_soundness.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from rollcap.flows import index as flowindex
from rollcap.flows.summary import Summariser
from rollcap.pcapfile import parse_header
from rollcap.retrieve import skip, verdict
from rollcap.retrieve.entrycheck import capture_of
from rollcap.storage import manifest
from tests.support import flowpcaps as fp

T = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def summary_of(frames: list[bytes], linktype: int = 1, cap: int = 100_000
               ) -> tuple[skip.Capture, bytes]:  # fmt: skip
    pcap = fp.pcap_bytes(linktype, frames, int(T.timestamp()) * 10**9 + 10**6)
    s = Summariser(parse_header(pcap), cap)
    s.feed(memoryview(pcap)[24:])
    summary = s.finish()
    e = manifest.Entry(
        key="caps/h1/2026/11/26/h1-eth0-20261126T120000Z-000001.pcap.zst", host="h1",
        iface="eth0", opened=T, closed_ts=int(T.timestamp()) + 600,
        first_ns=int(T.timestamp()) * 10**9, last_ns=int(T.timestamp()) * 10**9 + 10**9,
        packets=summary.packets, pcap_bytes=len(pcap), size=100, linktype=linktype,
    )  # fmt: skip
    return capture_of(e), flowindex.summary_body(e, summary)


def tcp(a: str, b: str, sp: int, dp: int, vlans: tuple[int, ...] = ()) -> bytes:
    return fp.eth(fp.ipv4(a, b, 6, fp.l4(6, sp, dp)), 0x0800, vlans)


def why(expr: str, frames: list[bytes], linktype: int = 1, cap: int = 100_000) -> str | None:
    c, body = summary_of(frames, linktype, cap)
    return skip.judge(verdict.compile_filter(expr), c, body, None)


WEB = [tcp("10.0.0.1", "10.0.0.2", 40000, 443), tcp("10.0.0.2", "10.0.0.1", 443, 40000)]


@pytest.mark.parametrize(
    ("expr", "fetched"),
    [
        ("host 203.0.113.7", False),
        ("host 10.0.0.1", True),
        ("src host 10.0.0.2 and dst port 40000", True),  # the reply
        ("src host 10.0.0.2 and dst port 443", False),
        ("udp or port 22", False),
        ("tcp and not host 10.0.0.1", False),
        ("host 10.0.0.9 or 10.0.0.2", True),  # the bare address takes `host`
        ("port 80 or 443", True),
        ("net 10.0.0.0/24 and portrange 440-450", True),
        ("net 10.1", False),  # libpcap: 10.1.0.0/16
        ("host 10.0.0.9 or 10.0.0.1 and port 22", False),  # and/or: left to right
        ("vlan", False),
        ("vlan 5 or host 10.0.0.1", True),  # host then reads past the tags: maybe
        ("ip6 or icmp", False),
    ],
)
def test_a_capture_is_skipped_only_when_no_flow_can_match(expr: str, fetched: bool) -> None:
    assert (why(expr, WEB) is not None) == fetched, why(expr, WEB)


def test_non_ip_packets_or_an_incomplete_summary_mean_the_capture_is_fetched() -> None:
    with_arp = [*WEB, fp.eth(fp.arp("203.0.113.7", "10.0.0.1"), 0x0806)]
    assert why("host 203.0.113.7", with_arp) == skip.NON_IP  # tcpdump's host matches ARP
    many = [tcp("10.0.0.1", "10.0.0.2", 40000 + i, 443) for i in range(5)]
    assert why("host 203.0.113.7", many, cap=2) == skip.INCOMPLETE


def test_a_later_fragment_counts_in_its_flow_but_has_no_port() -> None:
    seg = fp.l4(17, 5000, 80, b"y" * 40)
    first = fp.eth(fp.ipv4("10.0.0.1", "10.0.0.2", 17, seg[:24], ident=7, mf=True), 0x0800)
    later = fp.eth(fp.ipv4("10.0.0.1", "10.0.0.2", 17, seg[24:], ident=7, offset8=3), 0x0800)
    assert why("not port 80", [first, later]) == skip.MAY_MATCH  # tcpdump: the later one
    assert why("not udp", [first, later]) is None


def test_ipv6_extension_headers_make_protocol_tests_maybe() -> None:
    hbh = bytes([6, 0]) + b"\x01\x04\0\0\0\0"
    pkt = fp.eth(fp.ipv6("2001:db8::1", "2001:db8::2", 0, hbh + fp.l4(6, 1, 2)), 0x86DD)
    assert why("ip6 proto 0", [pkt]) == skip.MAY_MATCH  # the summary says 6, tcpdump sees 0
    assert why("not tcp", [pkt]) == skip.MAY_MATCH
    assert why("udp", [pkt]) is None


def test_vlan_tags_shift_what_tcpdump_reads() -> None:
    tagged = [tcp("10.0.0.1", "10.0.0.2", 1, 2, (20,))]
    assert why("host 10.0.0.1", tagged) is None  # tcpdump sees the TPID, not IP
    assert why("vlan 20 and host 10.0.0.1", tagged) == skip.MAY_MATCH
    assert why("vlan 30 and host 10.0.0.1", tagged) is None
    assert why("vlan and vlan", tagged) is None  # the second reads 0x0800: not a tag


def test_a_summary_of_another_capture_is_not_trusted() -> None:
    c, body = summary_of(WEB)
    other, _ = summary_of([*WEB, *WEB])
    with pytest.raises(ValueError, match="another capture, or other packets"):
        skip.judge(verdict.compile_filter("host 1.2.3.4"), other, body, None)
    assert skip.judge(verdict.compile_filter("host 1.2.3.4"), c, body, None) is None


@pytest.mark.parametrize(
    "expr",
    ["host web1", "port https", "ether host 02:00:00:00:00:01", "less 100", "tcp[13] & 2 != 0",
     "ip[8] = 64", "gateway gw", "mpls", "ip6 protochain 6", "inbound", "(10.0.0.1)"],
)  # fmt: skip
def test_filters_a_summary_cannot_answer_are_undecidable(expr: str) -> None:
    with pytest.raises(verdict.Undecidable):
        verdict.compile_filter(expr)


def test_prune_reads_the_summaries_of_a_file_archive_and_says_why(tmp_path: Path) -> None:
    from rollcap.config.schema import OffloadConfig
    from rollcap.storage import open_storage

    st = open_storage(OffloadConfig(destination=f"file://{tmp_path}/archive"))
    x = [tcp("10.0.0.1", "203.0.113.7", 40000, 443)]
    arp = [*WEB, fp.eth(fp.arp("10.0.0.1", "10.0.0.2"), 0x0806)]
    caps = []
    for i, frames in enumerate([WEB, x, arp, WEB]):
        pcap = fp.pcap_bytes(1, frames, int(T.timestamp()) * 10**9 + i * 600 * 10**9)
        s = Summariser(parse_header(pcap))
        s.feed(memoryview(pcap)[24:])
        summary = s.finish()
        opened = datetime.fromtimestamp(T.timestamp() + i * 600, UTC)
        e = manifest.Entry(
            key=f"h1/2026/11/26/h1-eth0-{opened:%Y%m%dT%H%M%S}Z-{i:06d}.pcap.zst", host="h1",
            iface="eth0", opened=opened, closed_ts=int(opened.timestamp()) + 600,
            first_ns=int(opened.timestamp()) * 10**9, last_ns=int(opened.timestamp()) * 10**9,
            packets=summary.packets, pcap_bytes=len(pcap), size=100 + i, linktype=1,
        )  # fmt: skip
        if i < 3:  # the last one has no summary
            flowindex.write_summary(st, e, summary, st.key_prefix)
        caps.append(capture_of(e))
    kept, report = skip.prune(st, caps, "host 203.0.113.7")
    assert [c.key for c in kept] == [c.key for c in caps[1:]]
    assert report.skipped == 1 and report.skipped_bytes == 100
    assert report.fetched == {skip.MAY_MATCH: 1, skip.NON_IP: 1, skip.MISSING: 1}
    assert "skipped 1 of 4 captures" in report.lines()[0]
    # a filter the summaries cannot answer: every capture, and -v says why
    kept, report = skip.prune(st, caps, "less 100")
    assert kept == caps and "flow index not used: 'less'" in report.lines()[0]


@pytest.mark.parametrize(
    "row",
    [b'{"row": "flow", "packets": null}', b'{"row": "flow"}', b"[" * 5000, b'{"row": "flow", '
     b'"packets": 2, "proto": null}'],
)
def test_a_hostile_summary_row_means_the_capture_is_fetched(tmp_path: Path, row: bytes) -> None:
    """Any host writes its own summaries: one row of any shape must not stop a fleet
    fetch, nor skip the capture it describes."""
    import gzip

    from rollcap.config.schema import OffloadConfig
    from rollcap.storage import open_storage

    st = open_storage(OffloadConfig(destination=f"file://{tmp_path}/archive"))
    pcap = fp.pcap_bytes(1, WEB, int(T.timestamp()) * 10**9)
    s = Summariser(parse_header(pcap))
    s.feed(memoryview(pcap)[24:])
    summary = s.finish()
    e = manifest.Entry(
        key="h1/2026/11/26/h1-eth0-20261126T120000Z-000001.pcap.zst", host="h1", iface="eth0",
        opened=T, closed_ts=int(T.timestamp()) + 600, first_ns=int(T.timestamp()) * 10**9,
        last_ns=int(T.timestamp()) * 10**9, packets=summary.packets, pcap_bytes=len(pcap),
        size=100, linktype=1,
    )  # fmt: skip
    head = gzip.decompress(flowindex.summary_body(e, summary)).splitlines()[0]
    key = flowindex.summary_key(e, st.key_prefix)
    st.put_bytes(key, gzip.compress(head + b"\n" + row + b"\n"), "application/gzip")
    kept, report = skip.prune(st, [capture_of(e)], "udp")  # no address: rows are read
    assert [c.key for c in kept] == [e.key]
    assert report.skipped == 0
