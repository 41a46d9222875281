"""rollcap/flows/compact.py: one object per slot stands in for the slot's
per-host summaries, for `rollcap flows` (query.py) and `fetch --filter`
(retrieve/skip.py), with the same answers and fewer GETs; what it does not
list, or lists wrongly, is read from the per-host summaries."""

from __future__ import annotations

import gzip
import ipaddress
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rollcap.flows import compact
from rollcap.flows import index as flowindex
from rollcap.flows.query import Query
from rollcap.flows.summary import Summariser
from rollcap.pcapfile import parse_header
from rollcap.retrieve import skip
from rollcap.retrieve.entrycheck import capture_of
from rollcap.storage import manifest
from tests.support import flowpcaps as fp
from tests.unit.flows.test_query import NS, T0, DictStorage, flow, run, window

SLOT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
X = ipaddress.ip_address("203.0.113.7")


class CountingStorage(DictStorage):
    """DictStorage that counts GETs."""

    def __init__(self) -> None:
        super().__init__()
        self.gets: list[str] = []

    def download(self, key: str, dest: Path, *, size: int | None = None) -> None:
        self.gets.append(key)
        super().download(key, dest, size=size)


def capture(st: DictStorage, host: str, flows: list[tuple[Any, Any]]) -> manifest.Entry:
    """A capture of host in SLOT whose summary counts its flows' packets."""
    from rollcap.flows.summary import FlowSummary

    t = int(T0.timestamp()) * NS
    e = manifest.Entry(
        key=f"caps/{host}/2026/11/26/{host}-eth0-{T0:%Y%m%dT%H%M%SZ}-000001.pcap.zst",
        host=host, iface="eth0", opened=T0, closed_ts=int(T0.timestamp()) + 600,
        first_ns=t + NS, last_ns=t + 599 * NS, packets=sum(f.packets for _k, f in flows),
        pcap_bytes=1000, size=500, linktype=1,
    )  # fmt: skip
    manifest.write_entries(st, e, "caps")
    flowindex.write_summary(st, e, FlowSummary(1, dict(flows), packets=e.packets), "caps")
    return e


def fleet(st: DictStorage, hosts: list[str]) -> None:
    t = int(T0.timestamp()) * NS + 30 * NS
    for i, h in enumerate(hosts):
        peer = "203.0.113.7" if h.startswith("web") else "10.9.9.9"
        capture(st, h, [flow(f"10.0.0.{i + 1}", 40000 + i, peer, 443, t),
                        flow(f"10.0.0.{i + 1}", 50000 + i, "10.8.8.8", 53, t, proto=17)])


def answers(st: CountingStorage, **kw: Any) -> tuple[list[tuple[str, int]], Any, int]:
    st.gets.clear()
    search, found = run(st, Query(ip=X), window(T0, 10), **kw)
    return sorted((f.entry.host, f.flow["sport"]) for f in found), search.report, len(st.gets)


def test_a_compacted_slot_gives_the_same_flows_with_one_get() -> None:
    st = CountingStorage()
    fleet(st, ["web1", "web2", "db1", "db2", "db3"])
    before, r0, gets0 = answers(st)
    [res] = [r for r in compact.compact(st, "caps", SLOT, SLOT) if r.kind != "empty"]
    assert res.kind == "written" and res.sources == 5 and "/_index/flows/v1c/" in res.key
    assert "~" not in res.key.rsplit("/", 1)[1]  # no host's IAM scope reaches it
    after, r1, gets1 = answers(st)
    assert after == before == [("web1", 40000), ("web2", 40001)]
    assert gets0 == 5 and gets1 == 1 and r1.from_compaction == 5
    assert r1.summaries == r0.summaries == 5
    # nothing new: the slot is current, no second generation
    assert [r.kind for r in compact.compact(st, "caps", SLOT, SLOT)] == ["current"]


def test_captures_after_the_compaction_are_read_from_their_own_summary() -> None:
    st = CountingStorage()
    fleet(st, ["db1", "db2", "web1"])
    compact.compact_slot(st, "caps", SLOT)
    fleet(st, ["db1", "db2", "web1", "web9"])  # web9 arrives later (the rest exist)
    found, r, gets = answers(st)
    assert [h for h, _ in found] == ["web1", "web9"]
    assert r.from_compaction == 3 and gets == 1 + 1  # the compaction, web9's summary
    # a re-run writes generation 2 with all four; readers take the newest
    res = compact.compact_slot(st, "caps", SLOT)
    assert res.kind == "written" and res.detail == "generation 2" and res.sources == 4
    found2, r2, gets2 = answers(st)
    assert found2 == found and r2.from_compaction == 4 and gets2 == 1


def _rewrite(st: DictStorage, edit: Any) -> None:
    [key] = [k for k in st.objects if "/v1c/" in k]
    st.objects[key] = gzip.compress(edit(gzip.decompress(st.objects[key]).decode()).encode())


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: t.replace('"packets":6', '"packets":7', 1),  # disagrees with the name
        lambda t: t.replace('"row":"flow"', '"row":"flow","packets_x":1', 1)
        .replace('"packets":3,', '"packets":2,', 1),  # flows no longer add up
    ],
)
def test_rows_that_disagree_with_the_capture_are_not_believed(
        edit: Any, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    st = CountingStorage()
    fleet(st, ["web1", "db1", "db2"])
    before, _r, _g = answers(st)
    compact.compact_slot(st, "caps", SLOT)
    _rewrite(st, edit)
    with caplog.at_level(logging.WARNING, "rollcap.retrieve"):
        after, r, gets = answers(st)
    assert after == before
    assert r.from_compaction == 2 and gets == 1 + 1  # web1 read from its own summary
    assert "not believed" in caplog.text


@pytest.mark.parametrize(
    "body",
    [b"garbage", gzip.compress(b'{"row":"compaction","version":9}\n'),
     gzip.compress(b"x" * 100)],
)
def test_a_corrupt_compaction_is_one_line_and_every_summary_is_read(
        body: bytes, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    st = CountingStorage()
    fleet(st, ["web1", "db1", "db2"])
    before, _r, _g = answers(st)
    key = compact.compact_slot(st, "caps", SLOT).key
    st.objects[key] = body
    with caplog.at_level(logging.WARNING, "rollcap.retrieve"):
        after, r, gets = answers(st)
    assert after == before and r.from_compaction == 0 and gets == 1 + 3
    assert len([m for m in caplog.messages if "compaction not used" in m]) == 1


def test_a_compaction_naming_a_summary_not_in_the_slot_is_ignored_for_it() -> None:
    """A listed source with another size (a summary the host never wrote so,
    or one replaced) is read from its own object."""
    st = CountingStorage()
    fleet(st, ["web1", "db1", "db2"])
    compact.compact_slot(st, "caps", SLOT)
    web1 = next(k for k in st.objects if "/flows/v1/" in k and "web1~" in k)
    st.objects[web1] = st.objects[web1] + b""  # same bytes: still believed
    _f, r, _g = answers(st)
    assert r.from_compaction == 3
    body = gzip.decompress(st.objects[web1])
    st.objects[web1] = gzip.compress(body, compresslevel=1, mtime=1)  # another size
    found, r, gets = answers(st)
    assert [h for h, _ in found] == ["web1"] and r.from_compaction == 2 and gets == 2


# -- fetch --filter (retrieve/skip.py) ------------------------------------------


def _real_capture(st: DictStorage, host: str, peer: str) -> skip.Capture:
    """A capture summarised by the offload's summariser, of one TCP flow."""
    frames = [fp.eth(fp.ipv4("10.0.0.1", peer, 6, fp.l4(6, 40000, 443)), 0x0800),
              fp.eth(fp.ipv4(peer, "10.0.0.1", 6, fp.l4(6, 443, 40000)), 0x0800)]
    t = int(T0.timestamp()) * NS
    pcap = fp.pcap_bytes(1, frames, t + NS)
    s = Summariser(parse_header(pcap), 1000)
    s.feed(memoryview(pcap)[24:])
    summary = s.finish()
    e = manifest.Entry(
        key=f"caps/{host}/2026/11/26/{host}-eth0-{T0:%Y%m%dT%H%M%SZ}-000001.pcap.zst",
        host=host, iface="eth0", opened=T0, closed_ts=int(T0.timestamp()) + 600,
        first_ns=t + NS, last_ns=t + NS + 1000, packets=summary.packets,
        pcap_bytes=len(pcap), size=100, linktype=1,
    )  # fmt: skip
    flowindex.write_summary(st, e, summary, "caps")
    return capture_of(e)


def test_fetch_skips_the_same_captures_when_part_of_the_slot_is_compacted() -> None:
    st = CountingStorage()
    st.key_prefix = "caps"
    caps = [_real_capture(st, h, "203.0.113.7" if h == "web1" else "10.9.9.9")
            for h in ("db1", "db2", "web1")]
    compact.compact_slot(st, "caps", SLOT)
    caps += [_real_capture(st, h, "203.0.113.7" if h == "web2" else "10.9.9.9")
             for h in ("db3", "web2")]  # after the compaction
    st.gets.clear()
    plain, r0 = skip.prune(st, caps, "host 203.0.113.7", use_compaction=False)
    gets0 = len(st.gets)
    st.gets.clear()
    kept, r1 = skip.prune(st, caps, "host 203.0.113.7")
    assert [c.host for c in kept] == [c.host for c in plain] == ["web1", "web2"], r0.fetched
    assert r1.skipped == r0.skipped == 3
    assert gets0 == 5 and len(st.gets) == 1 + 2 and r1.from_compaction == 3
    assert any("3 more summaries from 1 slot compactions (" in ln for ln in r1.lines())
    # a compacted row that lies about its packets: the capture's own summary decides
    _rewrite(st, lambda t: t.replace('"packets":2,"non_ip"', '"packets":5,"non_ip"', 1))
    kept, r2 = skip.prune(st, caps, "host 203.0.113.7")
    assert [c.host for c in kept] == ["web1", "web2"] and r2.from_compaction == 2
