"""rollcap/flows/query.py: what `rollcap flows` matches, and how it reads the
index (listings per slot, what it counts as missing or unreadable)."""

from __future__ import annotations

import gzip
import ipaddress
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rollcap.cli import main
from rollcap.flows import index as flowindex
from rollcap.flows.query import (
    FlowSearch,
    Query,
    QueryError,
    parse_filter,
    parse_net,
    parse_port,
    parse_proto,
)
from rollcap.flows.summary import Flow, FlowSummary
from rollcap.storage import manifest
from rollcap.storage.base import ObjectInfo, Storage, StorageError

NS = 1_000_000_000
T0 = datetime(2026, 11, 26, 12, 0, 3, tzinfo=UTC)


class DictStorage(Storage):
    """Objects in a dict; counts listings by prefix."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.listed: list[str] = []

    def describe(self) -> str:
        return "dict://"

    def put_file(self, *a: Any, **k: Any) -> ObjectInfo:
        raise NotImplementedError

    def put_bytes(self, key: str, body: bytes, content_type: str) -> None:
        self.objects.setdefault(key, body)

    def head(self, key: str, checksum: bool = False) -> ObjectInfo | None:
        b = self.objects.get(key)
        return None if b is None else ObjectInfo(key, len(b))

    def list(self, prefix: str, with_metadata: bool = False) -> Iterator[ObjectInfo]:
        self.listed.append(prefix)
        for k in sorted(self.objects):
            if k.startswith(prefix):
                yield ObjectInfo(k, len(self.objects[k]))

    def download(self, key: str, dest: Path, *, size: int | None = None) -> None:
        if key not in self.objects:
            raise StorageError(f"{key}: NoSuchKey", code="NoSuchKey")
        dest.write_bytes(self.objects[key])

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)


def _a(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


def flow(src: str, sport: int | None, dst: str, dport: int | None, t: int, proto: int = 6,
         packets: int = 3, vlans: tuple[int, ...] = ()) -> tuple[Any, Flow]:  # fmt: skip
    a, b = sorted([(_a(src), sport), (_a(dst), dport)], key=lambda e: (e[0], e[1] or 0))
    key = (vlans, proto, a[0], a[1], b[0], b[1])
    return key, Flow(t, t + NS, packets, 100 * packets, _a(src), sport, _a(dst), dport, 0)


def store(st: DictStorage, host: str, start: datetime, flows: list[tuple[Any, Flow]] | None,
          *, minutes: int = 10, seq: int = 1, **summary: Any) -> manifest.Entry:  # fmt: skip
    """A capture of host opened at start: its manifest entries, and its
    summary unless flows is None."""
    t = int(start.timestamp()) * NS
    e = manifest.Entry(
        key=f"caps/{host}/2026/11/26/{host}-eth0-{start:%Y%m%dT%H%M%SZ}-{seq:06d}.pcap.zst",
        host=host, iface="eth0", opened=start, closed_ts=int(start.timestamp()) + 60 * minutes,
        first_ns=t + NS, last_ns=t + (60 * minutes - 1) * NS, packets=10, pcap_bytes=1000,
        size=500, linktype=1,
    )  # fmt: skip
    manifest.write_entries(st, e, "caps")
    if flows is not None:
        s = FlowSummary(1, dict(flows), packets=10, **summary)
        flowindex.write_summary(st, e, s, "caps")
    return e


def window(start: datetime, minutes: int) -> tuple[int, int]:
    s = int(start.timestamp()) * NS
    return s, s + minutes * 60 * NS


def run(st: DictStorage, q: Query, win: tuple[int, int], **kw: Any) -> tuple[FlowSearch, list[Any]]:
    search = FlowSearch(st, prefix="caps", window=win, query=q, **kw)
    return search, list(search)


def test_a_query_matches_every_part_on_either_side() -> None:
    row = {"src": "10.0.0.1", "sport": 51000, "dst": "203.0.113.7", "dport": 443, "proto": 6}
    assert Query(ip=ipaddress.ip_address("203.0.113.7")).side(row) == 1
    assert Query(ip=ipaddress.ip_address("10.0.0.1"), port=443).side(row) == 0
    assert Query(net=parse_net("203.0.113.0/24"), proto=6).side(row) == 1
    assert Query(port=443).side(row) == 1 and Query(port=51000).side(row) == 0
    assert Query(ip=ipaddress.ip_address("203.0.113.8")).side(row) is None
    assert Query(port=80).side(row) is None
    assert Query(proto=17).side(row) is None
    assert Query(net=parse_net("2001:db8::/32")).side(row) is None  # another family
    assert Query().side(row) == 0


@pytest.mark.parametrize("bad", [lambda: parse_proto("tcpx"), lambda: parse_proto("256"),
                                 lambda: parse_port("65536"), lambda: parse_port("http"),
                                 lambda: parse_net("10.0.0.0/33")])  # fmt: skip
def test_bad_parts_are_one_line_errors(bad: Any) -> None:
    with pytest.raises(QueryError, match=r"^--\w+ '.*': "):
        bad()


def test_beyond_the_cap_the_sets_decide() -> None:
    cap = {"sets_complete": True, "more_addrs": ["10.9.9.9"], "more_ports": [[17, 53]]}
    assert Query(ip=ipaddress.ip_address("10.9.9.9")).may_be_beyond_cap(cap)
    assert not Query(ip=ipaddress.ip_address("10.9.9.8")).may_be_beyond_cap(cap)
    assert Query(port=53, proto=17).may_be_beyond_cap(cap)
    assert not Query(port=53, proto=6).may_be_beyond_cap(cap)
    assert Query(ip=ipaddress.ip_address("10.9.9.8")).may_be_beyond_cap(
        {**cap, "sets_complete": False})  # fmt: skip
    assert Query(port=1).may_be_beyond_cap({"sets_complete": True})  # broken file: no sets


def test_the_fleet_is_one_listing_per_slot_and_each_host_is_found() -> None:
    st = DictStorage()
    for i, host in enumerate(["web1", "web2", "db1", "idle"]):
        t = int(T0.timestamp()) * NS + 30 * NS
        fl = [flow(f"10.0.0.{i + 1}", 40000 + i, "203.0.113.7", 443, t)] if host != "idle" else [
            flow("10.0.0.9", 1, "10.0.0.8", 2, 0)]
        store(st, host, T0, fl)  # fmt: skip
    st.listed.clear()
    search, found = run(st, Query(ip=ipaddress.ip_address("203.0.113.7")), window(T0, 10),
                        lookback=timedelta(minutes=11))  # fmt: skip
    assert sorted(f.entry.host for f in found) == ["db1", "web1", "web2"]
    assert all(f.side == 1 and f.flow["dst"] == "203.0.113.7" for f in found)
    # flows: 11 min before 12:00:03 .. 12:10:03 -> 11:40..12:10 (4 slots); manifest: 2
    # slots; and the flows slots' compactions (flows/compact.py): 4
    assert len(st.listed) == 4 + 2 + 4 == search.report.slots_listed
    assert search.report.summaries == 4 and search.report.without_summary == 0
    assert set(search.report.hosts) == {"db1", "web1", "web2"}
    assert search.report.hosts["web1"].packets == 3
    # --host: its own prefix per slot
    st.listed.clear()
    _s, found = run(st, Query(), window(T0, 10), hosts=["web2"])
    assert [f.entry.host for f in found] == ["web2"]
    assert all(p.endswith("/web2~") for p in st.listed)


def test_what_has_no_summary_is_counted_and_a_long_capture_is_looked_up_by_key() -> None:
    st = DictStorage()
    t = int(T0.timestamp()) * NS
    store(st, "old1", T0, None)  # stored with the index off
    # opened 3 h before the window and still running in it: its summary's slot
    # is long before the lookback, its manifest entries are in every slot
    fl = [flow("10.0.0.1", 1, "10.0.0.2", 2, t + 5 * NS)]
    long = store(st, "long1", T0 - timedelta(hours=3), fl, minutes=200)
    st.listed.clear()
    search, found = run(st, Query(), window(T0, 10), lookback=timedelta(minutes=11))
    assert [f.entry.key for f in found] == [long.key]
    r = search.report
    assert r.without_summary == 1 and r.captures_in_window == 2
    name = f"old1-eth0-{T0:%Y%m%dT%H%M%SZ}-000001.pcap.zst"
    assert r.without_examples == [f"caps/old1/2026/11/26/{name}"]
    assert not any(p.startswith(flowindex.slot_prefix("caps", flowindex.home_slot(long)))
                   for p in st.listed)  # found by its key, not by listing its slot  # fmt: skip


def test_unreadable_and_lying_summaries_are_counted_not_fatal() -> None:
    st = DictStorage()
    t = int(T0.timestamp()) * NS + 30 * NS
    good = store(st, "web1", T0, [flow("10.0.0.1", 1, "10.0.0.2", 2, t)], seq=1)
    bad = store(st, "web1", T0 + timedelta(seconds=1), [flow("10.0.0.1", 1, "10.0.0.2", 2, t)],
                seq=2)  # fmt: skip
    st.objects[flowindex.summary_key(bad, "caps")] = b"not gzip"
    other = store(st, "web2", T0, [flow("10.0.0.3", 1, "10.0.0.4", 2, t)], seq=3)
    # web1 writes web2's summary under its own name: the body disagrees
    forged = flowindex.summary_key(other, "caps").replace("-000003.", "-000004.")
    forged = forged.replace("/web2~", "/web1~").replace("~web2~2026", "~web1~2026")
    st.objects[forged] = st.objects[flowindex.summary_key(other, "caps")]
    search, found = run(st, Query(), window(T0, 10))
    assert sorted(f.entry.key for f in found) == sorted([good.key, other.key])
    reasons = dict(search.report.unreadable)
    assert set(reasons) == {flowindex.summary_key(bad, "caps"), forged}
    assert "gzip" in reasons[flowindex.summary_key(bad, "caps")]
    assert "its body describes" in reasons[forged]


def test_out_of_scope_names_are_ignored_and_the_window_cuts_flows() -> None:
    st = DictStorage()
    t = int(T0.timestamp()) * NS
    store(st, "web1", T0, [flow("10.0.0.1", 1, "10.0.0.2", 2, t + 30 * NS),
                           flow("10.0.0.1", 3, "10.0.0.2", 4, t + 400 * NS)])  # fmt: skip
    search, found = run(st, Query(), window(T0, 5), in_scope=lambda key, host: False)
    assert found == [] and search.report.rejected >= 1
    _s, found = run(st, Query(), window(T0, 5))
    assert [f.flow["sport"] for f in found] == [1]  # the second flow begins after the window


def test_results_keep_key_order_with_few_reads_in_flight() -> None:
    st = DictStorage()
    t = int(T0.timestamp()) * NS + 30 * NS
    keys = [store(st, f"h{i:02d}", T0, [flow("10.0.0.1", i + 1, "10.0.0.2", 2, t)]).key
            for i in range(20)]  # fmt: skip
    _s, found = run(st, Query(), window(T0, 10), inflight=2, workers=4)
    assert [f.entry.key for f in found] == sorted(keys)


def test_an_address_query_reads_only_rows_that_name_it_exactly() -> None:
    st = DictStorage()
    t = int(T0.timestamp()) * NS + 30 * NS
    store(st, "web1", T0, [flow("10.0.0.1", 1, "10.0.0.2", 2, t),
                           flow("10.0.0.12", 3, "10.0.0.2", 4, t),
                           flow("2001:db8::1", 5, "10.0.0.1", 6, t, proto=17)])  # fmt: skip
    q = Query(ip=ipaddress.ip_address("10.0.0.1"))
    assert q.prefilter == '"10.0.0.1"'
    search, found = run(st, q, window(T0, 10))
    assert sorted(f.flow["sport"] for f in found) == [1, 5]
    assert search.report.flows_scanned == 3
    _s, found = run(st, Query(ip=ipaddress.ip_address("2001:db8:0::1")), window(T0, 10))
    assert [f.flow["sport"] for f in found] == [5]


def test_a_summary_cut_or_flipped_inside_its_gzip_stream_is_unreadable_not_a_crash() -> None:
    st = DictStorage()
    t = int(T0.timestamp()) * NS + 30 * NS
    e = store(st, "web1", T0, [flow(f"10.0.{i // 250}.{i % 250}", i, "10.9.0.1", 443, t)
                               for i in range(500)])  # fmt: skip
    key = flowindex.summary_key(e, "caps")
    body = bytearray(st.objects[key])
    body[10] ^= 0x07  # the first deflate block type: zlib.error, not OSError
    st.objects[key] = bytes(body)
    search, found = run(st, Query(), window(T0, 10))
    assert found == [] and [k for k, _why in search.report.unreadable] == [key]
    with pytest.raises(ValueError, match="not a gzip NDJSON flow summary"):
        flowindex.parse_body(bytes(body))


@pytest.mark.parametrize(
    "row",
    [
        b'{"row": "flow", "host": "web1", "key": "K", "first_ns": "x", "last_ns": 1}',
        b'{"row": "flow", "host": "web1", "key": "K", "first_ns": 0, "last_ns": 1e30,'
        b' "proto": [], "src": 4}',
        b"[" * 5000,
    ],
)
def test_a_summary_row_of_any_shape_is_unreadable_not_a_crash(row: bytes) -> None:
    """Any host writes its own summaries: `rollcap flows` over the fleet must not stop
    at one hostile row."""
    import gzip

    st = DictStorage()
    t = int(T0.timestamp()) * NS + 30 * NS
    e = store(st, "web1", T0, [flow("10.0.0.1", 1, "10.0.0.2", 2, t)])
    key = flowindex.summary_key(e, "caps")
    lines = gzip.decompress(st.objects[key]).splitlines()
    row = row.replace(b'"K"', b'"' + e.key.encode() + b'"')
    st.objects[key] = gzip.compress(b"\n".join([lines[0], row]) + b"\n")
    search, found = run(st, Query(), window(T0, 10))
    assert found == [] and [k for k, _why in search.report.unreadable] == [key]


X = "203.0.113.7"


def _filtered(st: DictStorage, expr: str, **parts: Any) -> dict[str, tuple[int, bool]]:
    """{row label: (side, maybe)} of what `--filter expr` shows (and parts)."""
    _s, found = run(st, Query(filter=parse_filter(expr), **parts), window(T0, 10))
    return {f"{f.flow['src']}:{f.flow['sport']}": (f.side, f.maybe) for f in found}


@pytest.fixture
def mixed() -> DictStorage:
    """One capture: TCP 443 to X, UDP 53 to X, X on VLAN 20, a port-less
    later fragment of X's, and IPv6 TCP 443."""
    st = DictStorage()
    t = int(T0.timestamp()) * NS + 30 * NS
    store(st, "web1", T0, [
        flow("10.0.0.1", 51000, X, 443, t),
        flow("10.0.0.2", 53000, X, 53, t, proto=17),
        flow(X, 5000, "192.168.1.20", 5000, t, proto=17, vlans=(20,)),
        flow(X, None, "198.51.100.9", None, t, proto=17),  # fragments after the first
        flow("2001:db8::1", 40000, "2001:db8::2", 443, t),
    ])  # fmt: skip
    return st


A, B, V, FRAG = "10.0.0.1:51000", "10.0.0.2:53000", f"{X}:5000", f"{X}:None"
V6 = "2001:db8::1:40000"


def test_a_filter_with_and_or_not_is_answered_per_flow_row(mixed: DictStorage) -> None:
    # X is the destination of A: the side the filter names
    assert _filtered(mixed, f"host {X} and tcp port 443") == {A: (1, False)}
    # a later fragment is UDP to and from X but has no port; the VLAN flow
    # is not `host X` without `vlan` (tcpdump reads the tag's type field)
    assert _filtered(mixed, f"host {X} and (udp or tcp port 443)") == {
        A: (1, False), B: (1, False), FRAG: (0, False)}  # fmt: skip
    assert _filtered(mixed, "udp port 5000 or udp port 53") == {B: (0, False)}
    assert _filtered(mixed, f"not host {X}") == {V: (0, False), V6: (0, False)}
    assert _filtered(mixed, "udp and host 198.51.100.9 and not port 8080") == {
        FRAG: (1, False)}  # fmt: skip


def test_a_filter_on_vlan_moves_what_follows_past_the_tag(mixed: DictStorage) -> None:
    assert _filtered(mixed, f"vlan 20 and udp port 5000 and host {X}") == {V: (0, False)}
    assert _filtered(mixed, "vlan 21") == {}
    # tcpdump reads `udp port 53` 4 bytes on even after `or`: in an untagged
    # packet that is IP header bytes, which the summary does not hold
    assert _filtered(mixed, "vlan 20 or udp port 53") == {
        V: (0, False), A: (0, True), B: (0, True), FRAG: (0, True), V6: (0, True)}  # fmt: skip


def test_a_port_less_fragment_row_never_matches_a_port(mixed: DictStorage) -> None:
    assert _filtered(mixed, "udp port 8080 or udp portrange 1-4999") == {B: (0, False)}
    assert FRAG not in _filtered(mixed, "port 5000")


def test_what_only_may_match_is_marked(mixed: DictStorage) -> None:
    # IPv6: extension headers may stand before the transport
    assert _filtered(mixed, "tcp port 443") == {A: (0, False), V6: (0, True)}
    # only the reverse direction matches: the row does not say B answered
    assert _filtered(mixed, f"src host {X} and udp") == {B: (1, True), FRAG: (0, False)}
    # a later fragment of A (no port) would match `not port 443`
    assert _filtered(mixed, "tcp and not port 443") == {A: (0, True), V6: (0, True)}


def test_a_filter_and_the_other_selectors_must_all_hold(mixed: DictStorage) -> None:
    assert _filtered(mixed, f"host {X}", port=443) == {A: (1, False)}
    assert _filtered(mixed, "tcp", port=443) == {A: (1, False), V6: (1, True)}
    assert _filtered(mixed, "tcp", ip=ipaddress.ip_address("2001:db8::2")) == {V6: (1, True)}
    assert _filtered(mixed, "udp", proto=6) == {}
    assert Query(port=443, filter=parse_filter("tcp")).describe() == "port 443 and filter 'tcp'"


def test_an_incomplete_summary_is_judged_by_its_address_set_as_ip_is() -> None:
    st = DictStorage()
    t = int(T0.timestamp()) * NS + 30 * NS
    e = store(st, "web1", T0, [flow("10.0.0.1", 1, X, 443, t)], complete=False,
              more_addrs={_a("10.9.9.9")}, more_ports={(6, 80)})  # fmt: skip
    for expr, more in [(f"host {X}", False), ("host 10.9.9.9", True), ("tcp port 443", True),
                       (f"not host {X}", True), (f"host {X} or host 10.9.9.9", True)]:
        search, _found = run(st, Query(filter=parse_filter(expr)), window(T0, 10))
        assert search.report.incomplete == ([e.key] if more else []), expr
    # as --ip is judged by the same set
    head = json.loads(gzip.decompress(st.objects[flowindex.summary_key(e, "caps")]
                                      ).splitlines()[0])  # fmt: skip
    assert not Query(ip=ipaddress.ip_address(X)).may_be_beyond_cap(head)
    assert Query(ip=ipaddress.ip_address("10.9.9.9")).may_be_beyond_cap(head)


@pytest.mark.parametrize(
    ("expr", "part"),
    [
        ("ether host 00:11:22:33:44:55", "'ether' is not in a flow summary"),
        ("host web1", "'web1' (a name to resolve)"),
        ("tcp[13] & 2 != 0", "'tcp[13]'"),
        (f"host {X} and", "the filter ends early"),
        ("", "an empty filter"),
    ],
)
def test_an_undecidable_filter_is_a_one_line_usage_error(
    expr: str, part: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(QueryError, match=r"^--filter "):
        parse_filter(expr)
    # before any config or storage is read: nothing is answered unfiltered
    assert main(["flows", "--filter", expr, "--config", "/nonexistent/rollcap.toml"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith(f"rollcap: --filter {expr!r}: {part}")
    assert "the flow index answers numeric host/net" in line and "vlan [N]" in line
