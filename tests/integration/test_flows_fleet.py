"""`rollcap flows` across a fleet: who talked to X, when, on which hosts.

Two hosts, each with its own `rollcap capture` (on its own veth, fed by
tcpreplay) and `rollcap offload` (flow_index on), store into one SeaweedFS
bucket. Address X talks on both hosts, to peers the hosts share and to
peers only one of them sees; port 8080 is on one host only. The hosts'
traffic is replayed one after the other, so each host's "when" is its own
replay's span.

`rollcap flows` (the CLI, a subprocess) must answer with the right hosts,
peers, conversations, packet and byte counts, per-host totals and times,
each checked against tshark over the very pcaps replayed onto that host
(test_flows_command: tunnels not dissected, no reassembly, docs/flows.md);
so must `--filter` (a tcpdump filter answered per flow row), and a filter
the index cannot decide must be a usage error, never an unfiltered answer.
A host whose summaries were not written, or were filed or counted under
the other host, fails it.
"""

from __future__ import annotations

import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.host_daemons import HostDaemons, drain, started
from tests.integration.test_flows_command import Conv, _flows_json, _row, _tshark, rollcap
from tests.integration.test_flows_command import tshark_flows as tshark_convs
from tests.integration.test_index_daemon import _destination
from tests.integration.test_offload import keys_in
from tests.support.flowpcaps import arp, eth, ipv4, l4, pcap_bytes
from tests.support.net import Veth
from tests.support.seaweedfs import SeaweedFS

pytestmark = pytest.mark.integration

X = "203.0.113.7"
HOSTS = ("east1", "west1")
BIG = b"p" * 1200  # ~1 MB of traffic per host: at rotate_megabytes = 1, two captures


def _conversation(a: str, pa: int, b: str, pb: int, proto: int, n: int, body: bytes,
                  vlans: tuple[int, ...] = ()) -> list[bytes]:  # fmt: skip
    """n packets of one TCP/UDP conversation, alternating direction, a first."""
    turns = [(a, pa, b, pb), (b, pb, a, pa)] * (n // 2)
    return [eth(ipv4(s, d, proto, l4(proto, sp, dp, body), ident=i), 0x0800, vlans)
            for i, (s, sp, d, dp) in enumerate(turns)]  # fmt: skip


def _fragmented(a: str, pa: int, b: str, pb: int, n: int) -> list[bytes]:
    """n UDP datagrams a -> b, each in two IPv4 fragments (the later without ports)."""
    out = []
    for i in range(n):
        seg = l4(17, pa, pb, b"f" * 40)
        out.append(eth(ipv4(a, b, 17, seg[:24], ident=900 + i, mf=True), 0x0800))
        out.append(eth(ipv4(a, b, 17, seg[24:], ident=900 + i, offset8=3), 0x0800))
    return out


def _ping(a: str, b: str, n: int) -> list[bytes]:
    echo, reply = bytes([8, 0, 0, 0, 0, 1, 0, 1]), bytes([0, 0, 0, 0, 0, 1, 0, 1])
    return [eth(ipv4(s, d, 1, m), 0x0800) for s, d, m in [(a, b, echo), (b, a, reply)] * (n // 2)]


def _interleave(*streams: list[bytes]) -> list[bytes]:
    """The streams' packets taken in turn: each conversation spans the whole replay."""
    out: list[bytes] = []
    for i in range(max(len(s) for s in streams)):
        out += [s[i] for s in streams if i < len(s)]
    return out


def traffic(host: str) -> list[bytes]:
    if host == "east1":
        return _interleave(
            _conversation(X, 443, "10.0.0.1", 40001, 6, 500, BIG),
            _conversation("192.168.1.1", 22, "172.16.5.5", 5001, 6, 400, BIG),  # not X
            _conversation("10.0.0.2", 33000, X, 53, 17, 40, b"q" * 60),
            _ping(X, "10.0.1.7", 10),
            [eth(arp(X, "10.0.0.1"), 0x0806)] * 6,  # not IP: in no flow
        )  # fmt: skip
    return _interleave(
        _conversation(X, 443, "10.0.0.1", 40002, 6, 400, BIG),  # a peer east1 has too
        _conversation("198.51.100.9", 8080, "10.0.0.2", 33001, 6, 500, BIG),
        _conversation(X, 5000, "192.168.1.20", 5000, 17, 60, b"v" * 200, vlans=(20,)),
        _fragmented(X, 40003, "198.51.100.9", 8080, 20),
        [eth(arp("10.0.0.2", X), 0x0806)] * 4,
    )  # fmt: skip


def tshark_ip(path: Path) -> list[tuple[str, str, int]]:
    """(source, destination, frame length) of every IPv4 packet, its outer header."""
    out = _tshark(path, "-Y", "ip", "-T", "fields", "-E", "occurrence=f", "-E", "separator=,",
                  "-e", "ip.src", "-e", "ip.dst", "-e", "frame.len")  # fmt: skip
    rows = [line.split(",") for line in out.splitlines() if line]
    return [(s, d, int(n)) for s, d, n in rows]


def _peers(packets: list[tuple[str, str, int]], addr: str) -> dict[str, tuple[int, int]]:
    """{peer: (packets, bytes)} of addr's packets."""
    out: dict[str, tuple[int, int]] = {}
    for s, d, n in packets:
        if addr in (s, d):
            peer = d if s == addr else s
            p, b = out.get(peer, (0, 0))
            out[peer] = (p + 1, b + n)
    return out


def _got_peers(rows: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for r in rows:
        p, b = out.get(r["peer"], (0, 0))
        out[r["peer"]] = (p + r["packets"], b + r["bytes"])
    return out


def _convs(rows: list[dict[str, Any]]) -> Counter[Conv]:
    """Packets per TCP/UDP conversation (VLANs merged, as tshark's key has none)."""
    out: Counter[Conv] = Counter()
    for r in rows:
        if r["proto"] in (6, 17) and r["sport"] is not None:
            out[(r["proto"], frozenset({(r["src"], r["sport"]), (r["dst"], r["dport"])}))] += (
                r["packets"])  # fmt: skip
    return out


def _with(convs: Counter[Conv], pred: Callable[[Conv], bool]) -> Counter[Conv]:
    return Counter({c: n for c, n in convs.items() if pred(c)})


def _has_addr(addr: str) -> Callable[[Conv], bool]:
    return lambda c: any(a == addr for a, _p in c[1])


def _has_port(port: int) -> Callable[[Conv], bool]:
    return lambda c: any(p == port for _a, p in c[1])


@pytest.fixture
def veth2(veth: Veth) -> Iterator[Veth]:
    """The second host's own veth pair."""
    v = Veth.create()
    try:
        yield v
    finally:
        v.delete()


def test_flows_says_which_hosts_talked_to_x_when_and_how_much(
    veth: Veth, veth2: Veth, base: Path, seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    if shutil.which("tshark") is None:
        pytest.fail("tshark is not installed (.ci/packages-test.txt lists it)")
    offload, env, bucket = _destination("s3", base, seaweedfs)
    offload = {**offload, "rescan_seconds": 3600, "flow_index": True}
    pcaps = {h: tmp_path / f"{h}.pcap" for h in HOSTS}
    for h, path in pcaps.items():
        path.write_bytes(pcap_bytes(1, traffic(h), 0))
    links = dict(zip(HOSTS, (veth, veth2), strict=True))
    spans: dict[str, tuple[int, int]] = {}
    since = datetime.fromtimestamp(int(time.time()) - 1, UTC)
    fleet = [HostDaemons(base / h, links[h].b, env, hostname=h, rotate_megabytes=1,
                         offload=offload) for h in HOSTS]  # fmt: skip
    with started(fleet):
        for h in HOSTS:  # one host after the other: each host's packets have their own time
            t0 = time.time_ns()
            links[h].replay(pcaps[h], pps=20000)
            spans[h] = (t0, time.time_ns())
        handed = dict(zip(HOSTS, drain(fleet), strict=True))
    until = datetime.fromtimestamp(int(time.time()) + 2, UTC)
    stored = {h: set(keys_in(seaweedfs, bucket, f"caps/{h}/")) for h in HOSTS}
    assert {h: len(k) for h, k in stored.items()} == handed
    assert all(n >= 2 for n in handed.values()), handed  # flows cut across captures

    # what tshark counts in the pcaps replayed onto each host
    ip = {h: tshark_ip(pcaps[h]) for h in HOSTS}
    convs = {h: tshark_convs(pcaps[h]) for h in HOSTS}
    want_peers = {h: _peers(ip[h], X) for h in HOSTS}
    # the traffic is what this test means: X on both, peers shared and not
    assert want_peers["east1"].keys() & want_peers["west1"].keys() == {"10.0.0.1"}
    assert want_peers["east1"].keys() ^ want_peers["west1"].keys()

    cfg = fleet[0].capture.config

    # 1. the whole fleet, no filter: every capture of both hosts has its
    # summary, and each host's totals are its own packets
    everything = _flows_json(cfg, env, since, until)
    idx = everything["index"]
    assert idx["summaries_read"] == idx["captures_in_window"] == sum(handed.values()), idx
    assert (idx["without_summary"], idx["unreadable"], idx["rejected"]) == (0, [], 0), idx
    assert {h: (t["packets"], t["bytes"], t["captures"])
            for h, t in everything["hosts"].items()} == {
        h: (len(ip[h]), sum(n for _s, _d, n in ip[h]), handed[h]) for h in HOSTS}  # fmt: skip
    for h in HOSTS:
        mine = [r for r in everything["flows"] if r["host"] == h]
        assert {r["capture"] for r in mine} == stored[h], h  # filed under its own host
        assert _convs(mine) == convs[h], h

    # 2. who talked to X: the hosts, peers, conversations, packets, bytes, when
    got = _flows_json(cfg, env, since, until, "--ip", X)
    assert set(got["hosts"]) == {h for h in HOSTS if want_peers[h]} == set(HOSTS)
    for h in HOSTS:
        mine = [r for r in got["flows"] if r["host"] == h]
        assert all(r["addr"] == X for r in mine)
        assert _got_peers(mine) == want_peers[h], h
        assert _convs(mine) == _with(convs[h], _has_addr(X)), h
        total = got["hosts"][h]
        # X talks all through each replay: in every capture of both hosts
        assert {r["capture"] for r in mine} == stored[h], h
        assert {r["iface"] for r in mine} == {links[h].b}, h
        assert (total["flows"], total["captures"]) == (len(mine), handed[h])
        assert (total["packets"], total["bytes"]) == (
            sum(p for p, _b in want_peers[h].values()),
            sum(b for _p, b in want_peers[h].values()),
        )
        # when: within this host's own replay (the other host's came before or after)
        assert spans[h][0] <= total["first_ns"] <= total["last_ns"] <= spans[h][1], (h, spans)
        assert all(spans[h][0] <= r["first_ns"] <= r["last_ns"] <= spans[h][1] for r in mine)

    # 3. --host: that host's rows alone, the same as in the fleet-wide answer
    one = _flows_json(cfg, env, since, until, "--ip", X, "--host", "west1")
    assert set(one["hosts"]) == {"west1"} and one["hosts"]["west1"] == got["hosts"]["west1"]
    assert sorted(_row(r["host"], r["capture"], r) for r in one["flows"]) == sorted(
        _row(r["host"], r["capture"], r) for r in got["flows"] if r["host"] == "west1"
    )
    assert one["index"]["summaries_read"] == handed["west1"]

    # 4. --port: only the host that saw it, and every conversation on it
    port = _flows_json(cfg, env, since, until, "--port", "8080")
    want_port = {h: _with(convs[h], _has_port(8080)) for h in HOSTS}
    assert set(port["hosts"]) == {h for h in HOSTS if want_port[h]} == {"west1"}
    assert _convs(port["flows"]) == want_port["west1"]
    assert port["hosts"]["west1"]["packets"] == sum(want_port["west1"].values())
    assert port["index"]["summaries_read"] == sum(handed.values())

    # 5. the table an operator reads: a row per flow, then per-host totals
    p = rollcap(cfg, env, "flows", "--since", since.isoformat(), "--until", until.isoformat(),
                "--ip", X)  # fmt: skip
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split()[:4] == ["HOST", "IFACE", "PROTO", "ADDR"]
    for h in HOSTS:
        t = got["hosts"][h]
        assert len([x for x in lines if x.startswith(f"{h} ")]) == t["flows"]
        [total_line] = [x for x in lines if x.startswith(f"# {h}: ")]
        m = re.match(r"# \S+: (\d+) flows in (\d+) captures, (\d+) packets,", total_line)
        assert m and tuple(map(int, m.groups())) == (t["flows"], t["captures"], t["packets"])
    assert "# 2 hosts; " in p.stdout

    # 6. --filter: a tcpdump filter answered per flow row from the same
    # summaries; both hosts' TCP conversations of X on port 443, not X's
    # UDP, ICMP, VLAN or fragmented flows, nor 10.0.0.1's other ones
    expr = f"host {X} and tcp port 443"
    filt = _flows_json(cfg, env, since, until, "--filter", expr)
    want_443 = {h: _with(convs[h], lambda c: c[0] == 6 and _has_addr(X)(c) and _has_port(443)(c))
                for h in HOSTS}  # fmt: skip
    assert set(filt["hosts"]) == {h for h in HOSTS if want_443[h]} == set(HOSTS)
    for h in HOSTS:
        mine = [r for r in filt["flows"] if r["host"] == h]
        assert _convs(mine) == want_443[h], h
        # IPv4 TCP keyed by its first packet: surely holds a match
        assert {(r["addr"], r["filter_match"]) for r in mine} == {(X, "yes")}, h
        assert {r["capture"] for r in mine} == stored[h], h
    assert filt["query"] == f"filter {expr!r}" and filt["index"]["filter_maybe"] == 0

    # a filter the index cannot decide: a one-line usage error, no answer
    p = rollcap(cfg, env, "flows", "--json", "--since", since.isoformat(), "--until",
                until.isoformat(), "--filter", f"ether host 2:0:0:0:0:1 and host {X}")  # fmt: skip
    assert (p.returncode, p.stdout) == (2, ""), p.stderr
    assert re.fullmatch(r"rollcap: --filter '.*': 'ether' is not in a flow summary; the flow "
                        r"index answers numeric host/net .*\n", p.stderr), p.stderr  # fmt: skip
