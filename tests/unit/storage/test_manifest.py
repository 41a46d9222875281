"""Manifest entries (storage/manifest.py) and the coverage of a window: pure logic."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta

import pytest

from rollcap.config.schema import DEFAULT_KEY_TEMPLATE
from rollcap.keys import check_key
from rollcap.retrieve import select as select_mod
from rollcap.retrieve.coverage import Gap, holes, host_gaps
from rollcap.storage import manifest
from rollcap.storage.base import META
from tests.support.archive import NS, MemoryStorage, utc

KEY = "caps/web1/2026/11/26/web1-eth0-20261126T115501Z-000042.pcap.zst"


def _entry(key: str = KEY, **kw: object) -> manifest.Entry:
    start = utc(2026, 11, 26, 11, 55, 1)
    base: dict[str, object] = dict(
        key=key, host="web1", iface="eth0", opened=start,
        closed_ts=int(start.timestamp()) + 601, first_ns=int(start.timestamp()) * NS + 250_000_000,
        last_ns=int(start.timestamp() + 599) * NS + 500_000_000, packets=1047,
        pcap_bytes=20040509, size=19442632, linktype=1,
    )  # fmt: skip
    base.update(kw)
    return manifest.Entry(**base)  # type: ignore[arg-type]


def test_a_file_is_filed_under_every_slot_it_covers() -> None:
    keys = manifest.entry_keys(_entry(), "caps")
    assert [k.rsplit("/", 1)[0] for k in keys] == [
        "caps/_index/manifest/v1/date=2026-11-26/hour=11/minute=50",
        "caps/_index/manifest/v1/date=2026-11-26/hour=12/minute=00",
    ]
    assert all(k.rsplit("/", 1)[1].startswith("web1~eth0~20261126T115501Z~") for k in keys)
    # a file across midnight lands in both days' partitions
    midnight = int(utc(2026, 11, 27).timestamp())
    late = _entry(opened=utc(2026, 11, 26, 23, 58), closed_ts=midnight + 5,
                  first_ns=None, last_ns=None, packets=0)  # fmt: skip
    parts = [k.rsplit("/", 1)[0].rsplit("/v1/", 1)[1] for k in manifest.entry_keys(late, "caps")]
    assert parts == ["date=2026-11-26/hour=23/minute=50", "date=2026-11-27/hour=00/minute=00"]


@pytest.mark.parametrize("prefix", ["caps", "", "a/b"])
def test_keys_parse_back_to_the_entry(prefix: str) -> None:
    key = (prefix + "/" if prefix else "") + "web1/2026/11/26/x-000001.pcap"
    e = _entry(key=key)
    for k in manifest.entry_keys(e, prefix):
        assert manifest.parse_key(k, prefix) == e
        assert manifest.host_of(k) == "web1"
    empty = _entry(key=key, first_ns=None, last_ns=None, packets=0)
    nano = _entry(key=key, first_ns=1_795_694_101_104_000_123, last_ns=1_795_694_101_999_999_999)
    for k in manifest.entry_keys(nano, prefix):
        assert "~1795694101.104000123~1795694101.999999999~" in k  # to the ns
        assert manifest.parse_key(k, prefix) == nano
    assert manifest.parse_key(manifest.entry_keys(empty, prefix)[0], prefix) == empty


def test_entry_keys_are_plain_s3_keys_and_the_tilde_is_unambiguous() -> None:
    # '~' stands for '/' in the embedded capture key: no capture key may contain one
    with pytest.raises(ValueError):
        check_key("caps/web1/a~b.pcap", "caps")
    for k in manifest.entry_keys(_entry(), "caps"):
        assert len(k.encode()) < 1024 and k.isascii() and " " not in k


@pytest.mark.parametrize(
    "key",
    [
        "caps/_index/manifest/v1/date=2026-11-26/hour=12/minute=00/web1~eth0~junk.ndjson.gz",
        "caps/_index/manifest/v1/date=2026-11-26/hour=12/minute=00/..~eth0~x",
        "caps/_index/manifest/v1/date=2026-11-26/hour=12/x/web1~eth0~20261126T115501Z~1~2~3~4~5~6~7"
        "~web1~a.pcap.ndjson.gz",
        "caps/web1/2026/11/26/web1-eth0-20261126T115501Z-000042.pcap.zst",
        "other/_index/manifest/v1/date=2026-11-26/hour=12/minute=00/"
        "web1~eth0~20261126T115501Z~1~2~3~4~5~6~7~web1~a.pcap.ndjson.gz",
    ],
)
def test_foreign_or_damaged_keys_are_not_entries(key: str) -> None:
    assert manifest.parse_key(key, "caps") is None


def test_body_is_one_ndjson_line_same_bytes_each_time() -> None:
    e = _entry()
    body = manifest.entry_body(e)
    assert body == manifest.entry_body(e)  # a rewrite after a crash changes nothing
    text = gzip.decompress(body).decode()
    assert text.endswith("\n") and text.count("\n") == 1
    rec = json.loads(text)
    assert rec["key"] == KEY and rec["opened_ns"] == int(e.opened.timestamp()) * NS
    assert rec["packets"] == 1047 and rec["linktype"] == 1 and rec["iface"] == "eth0"
    # every time an integer ns (SQL types it without guessing a zone), exact
    assert rec["first_ns"] == e.first_ns and rec["closed_ns"] == e.closed_ts * NS
    assert all(isinstance(rec[k], int) for k in ("opened_ns", "closed_ns", "last_ns"))


def test_only_the_first_slot_of_a_span_is_the_entrys_home() -> None:
    """SQL that counts rows with home_slot counts a capture once, however many
    slots its span crosses."""
    e = _entry()  # 11:55:01 .. past 12:00: two slots
    first, second = manifest.slots(*e.span)[:2]
    home = json.loads(gzip.decompress(manifest.entry_body(e, first)))
    other = json.loads(gzip.decompress(manifest.entry_body(e, second)))
    assert home["home_slot"] is True and other["home_slot"] is False


def test_window_slots() -> None:
    s = manifest.window_slots(utc(2026, 11, 26, 12, 0), utc(2026, 11, 26, 12, 10))
    assert s == [utc(2026, 11, 26, 12, 0)]  # half-open: 12:10 is not in it
    s = manifest.window_slots(utc(2026, 11, 26, 12, 3), utc(2026, 11, 26, 12, 13))
    assert s == [utc(2026, 11, 26, 12, 0), utc(2026, 11, 26, 12, 10)]


def test_a_clock_step_does_not_file_an_entry_a_thousand_times() -> None:
    e = _entry(last_ns=int(_entry().opened.timestamp() + 86400 * 30) * NS)
    keys = manifest.entry_keys(e, "caps")
    assert len(keys) == manifest.MAX_SLOTS
    assert "hour=11/minute=50" in keys[0]


def test_holes() -> None:
    assert holes([(0, 100)], 10, 90) == []
    assert holes([(0, 40), (60, 100)], 0, 100) == [(40, 60)]
    assert holes([(0, 40), (45, 100)], 0, 100) == []  # 5 s: shorter than MIN_GAP
    assert holes([(0, 40), (45, 100)], 0, 100, min_gap=1) == [(40, 45)]
    assert holes([(50, 60), (0, 30), (20, 40)], 0, 100) == [(40, 50), (60, 100)]
    assert holes([], 0, 100) == [(0, 100)]
    assert holes([(0, 10)], 50, 50) == []


def test_host_gaps_are_per_interface() -> None:
    got = host_gaps("h", {"eth1": [(0, 100)], "eth0": [(0, 30), (70, 100)]}, 0, 100)
    assert got == [Gap("h", "eth0", 30, 70)]
    assert got[0].seconds == 40


def test_settled_part_only() -> None:
    # the last 20 s of the window are not settled: no gap there
    assert host_gaps("h", {"eth0": [(0, 80)]}, 0, 80) == []
    assert timedelta(seconds=Gap("h", "e", 1, 3).seconds) == timedelta(seconds=2)


# -- the selection over a fake destination (planning only; SeaweedFS in tests/integration)


class _Memory(MemoryStorage):
    manifests = True

    def put_bytes(self, key: str, body: bytes, content_type: str) -> None:
        self.objects[key] = (body, {})


def _store(st: _Memory, host: str, starts: list[datetime], entries: bool) -> list[str]:
    keys = []
    for i, start in enumerate(starts):
        key = f"caps/{host}/{start:%Y/%m/%d}/{host}-eth0-{start:%Y%m%dT%H%M%SZ}-{i:06d}.pcap"
        t = start.timestamp()
        meta = {META["first_ts"]: f"{t + 1:.6f}", META["last_ts"]: f"{t + 599:.6f}",
                META["packets"]: "5", META["host"]: host, META["iface"]: "eth0"}  # fmt: skip
        st.objects[key] = (b"x" * 10, meta)
        if entries:
            e = manifest.Entry(key=key, host=host, iface="eth0", opened=start,
                               closed_ts=int(t) + 600, first_ns=int(t + 1) * NS,
                               last_ns=int(t + 599) * NS,
                               packets=5, pcap_bytes=100, size=10, linktype=1)  # fmt: skip
            manifest.write_entries(st, e, "caps")
        keys.append(key)
    return keys


def test_selection_chunks_hosts_checks_the_ones_without_entries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(select_mod, "CHUNK", 2)
    st = _Memory()
    day = [utc(2026, 11, 26, 12, 0) + timedelta(minutes=10 * i) for i in range(6)]
    want = {}
    for h in ("a1", "a2", "a5"):
        want[h] = _store(st, h, day, entries=True)[1:3]
    want["a3"] = _store(st, "a3", day, entries=False)[1:3]  # 0.1.0: objects only
    _store(st, "a4", [utc(2026, 11, 26, 8, 0)], entries=True)  # nothing in the window
    sel = select_mod.select(st, template=DEFAULT_KEY_TEMPLATE, prefix="caps",
                            since=utc(2026, 11, 26, 12, 12),
                            until=utc(2026, 11, 26, 12, 28))  # fmt: skip
    results = list(sel)
    assert [r.host for r in results] == ["a1", "a2", "a3", "a4", "a5"]  # not _manifest
    assert {r.host: sorted(c.key for c in r.captures) for r in results if r.captures} == want
    assert [r.host for r in results if r.checked] == ["a3", "a4"]
    day_listings = {p.split("/")[1] for p in st.listed if "/2026/" in p}
    assert day_listings == {"a3", "a4"}  # hosts with complete entries: no day listing
    assert st.heads == 3  # a3: two files; a4: its last file before the window
    assert sel.summary.without == ["a4"] and sel.summary.gaps == []
    assert sel.summary.hosts_seen == 5 and sel.summary.hosts_with_captures == 4


def test_explicit_hosts_list_their_own_prefixes_only() -> None:
    st = _Memory()
    day = [utc(2026, 11, 26, 12, 0) + timedelta(minutes=10 * i) for i in range(6)]
    for h in ("b1", "b2", "b3"):
        _store(st, h, day, entries=True)
    sel = select_mod.select(st, template=DEFAULT_KEY_TEMPLATE, prefix="caps",
                            since=utc(2026, 11, 26, 12, 12), until=utc(2026, 11, 26, 12, 28),
                            hosts=["b2"])  # fmt: skip
    (r,) = list(sel)
    assert r.host == "b2" and len(r.captures) == 2 and not r.checked
    assert all(p.endswith("/b2~") for p in st.listed) and len(st.listed) == 2  # two slots
    assert st.delimited == []  # no host discovery


def test_a_hole_is_reported_after_checking_the_listing() -> None:
    st = _Memory()
    day = [utc(2026, 11, 26, 12, 0) + timedelta(minutes=10 * i) for i in (0, 1, 3)]
    _store(st, "c1", day, entries=True)
    sel = select_mod.select(st, template=DEFAULT_KEY_TEMPLATE, prefix="caps",
                            since=utc(2026, 11, 26, 12, 5),
                            until=utc(2026, 11, 26, 12, 35))  # fmt: skip
    (r,) = list(sel)
    assert r.checked and len(r.captures) == 3
    start = utc(2026, 11, 26, 12, 20).timestamp()
    assert r.gaps == [Gap("c1", "eth0", start, start + 600)]
    # the part of the window that may still be on its way is not judged
    sel = select_mod.select(st, template=DEFAULT_KEY_TEMPLATE, prefix="caps",
                            since=utc(2026, 11, 26, 12, 5), until=utc(2026, 11, 26, 12, 35),
                            settled_until=utc(2026, 11, 26, 12, 15))  # fmt: skip
    (r,) = list(sel)
    assert r.gaps == [] and not r.checked


def test_range_listing_keeps_hosts_whose_names_prefix_each_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # S3 order puts "web1-x/" before "web1/"; a filer's name order the reverse
    monkeypatch.setattr(select_mod, "CHUNK", 2)
    st = _Memory()
    day = [utc(2026, 11, 26, 12, 0) + timedelta(minutes=10 * i) for i in range(3)]
    for h in ("web1", "web1-x", "web1.y", "web10", "web2"):
        _store(st, h, day, entries=True)
    sel = select_mod.select(st, template=DEFAULT_KEY_TEMPLATE, prefix="caps",
                            since=utc(2026, 11, 26, 12, 12),
                            until=utc(2026, 11, 26, 12, 18))  # fmt: skip
    results = list(sel)
    assert sorted(r.host for r in results) == ["web1", "web1-x", "web1.y", "web10", "web2"]
    assert all(len(r.captures) == 1 and not r.checked for r in results)


def test_a_recent_window_checks_only_hosts_without_any_recent_entry() -> None:
    # `--since -10m`: the newest files are still on their hosts. A host with
    # entries shortly before is not listed by day; a 0.1.0 host (no entries) is.
    st = _Memory()
    day = [utc(2026, 11, 26, 12, 0) + timedelta(minutes=10 * i) for i in range(2)]
    _store(st, "new1", day, entries=True)  # uploaded up to 12:20
    _store(st, "old1", day, entries=False)
    sel = select_mod.select(st, template=DEFAULT_KEY_TEMPLATE, prefix="caps",
                            since=utc(2026, 11, 26, 12, 25), until=utc(2026, 11, 26, 12, 35),
                            settled_until=utc(2026, 11, 26, 12, 23))  # fmt: skip
    got = {r.host: r for r in sel}
    assert not got["new1"].checked and got["new1"].gaps == []
    assert got["old1"].checked
    assert sel.summary.without == ["new1", "old1"]  # nothing uploaded for the window yet


def test_list_output_json_and_summary() -> None:
    import io

    from rollcap.commands import list as list_cmd

    st = _Memory()
    day = [utc(2026, 11, 26, 12, 0) + timedelta(minutes=10 * i) for i in (0, 1, 3)]
    _store(st, "c1", day, entries=True)
    _store(st, "d1", [utc(2026, 11, 26, 8, 0)], entries=True)

    def sel(settled: datetime | None = None) -> select_mod.Selection:
        return select_mod.select(st, template=DEFAULT_KEY_TEMPLATE, prefix="caps",
                                 since=utc(2026, 11, 26, 12, 5),
                                 until=utc(2026, 11, 26, 12, 35),
                                 settled_until=settled)  # fmt: skip

    out = io.StringIO()
    list_cmd._write_json(out, sel())
    doc = json.loads(out.getvalue())
    assert len(doc["captures"]) == 3 and doc["since"] == "2026-11-26T12:05:00Z"
    cov = doc["coverage"]
    assert cov["hosts_seen"] == 2 and cov["hosts_without_capture"] == ["d1"]
    assert cov["gaps"] == [{"host": "c1", "iface": "eth0", "start": "2026-11-26T12:20:00Z",
                            "end": "2026-11-26T12:30:00Z", "seconds": 600.0}]  # fmt: skip
    out = io.StringIO()
    list_cmd._write_table(out, sel(settled=utc(2026, 11, 26, 12, 15)))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("KEY") and len([x for x in lines if x.startswith("caps/")]) == 3
    assert lines[-3:] == [
        "# coverage 2026-11-26T12:05:00Z .. 2026-11-26T12:35:00Z: 2 hosts seen, "
        "1 with captures, 1 without",
        "# no capture in the window: d1",
        "# after 2026-11-26T12:15:00Z captures may still be on their hosts "
        "(capture.rotate_seconds + 2 min): not counted as gaps",
    ]
    empty = _Memory()
    out = io.StringIO()
    list_cmd._write_json(out, select_mod.select(empty, template=DEFAULT_KEY_TEMPLATE,
                                                prefix="caps", since=utc(2026, 11, 26, 12),
                                                until=utc(2026, 11, 26, 13)))  # fmt: skip
    assert json.loads(out.getvalue())["captures"] == []


# -- coverage entries: an idle link, captured, no object


def _coverage(host: str, start: datetime, seconds: int) -> manifest.Entry:
    t = int(start.timestamp())
    return manifest.Entry(key="", host=host, iface="eth0", opened=start, closed_ts=t + seconds,
                          first_ns=None, last_ns=None, packets=0, pcap_bytes=24, size=0,
                          linktype=1)  # fmt: skip


def test_a_coverage_entry_names_no_object_and_parses_back() -> None:
    e = _coverage("web1", utc(2026, 11, 26, 12, 0, 5), 600)
    assert not e.has_object
    for prefix in ("caps", ""):
        keys = manifest.entry_keys(e, prefix)
        assert all(k.endswith("~~none.ndjson.gz") for k in keys)
        back = manifest.parse_key(keys[0], prefix)
        assert back == e and back is not None and back.key == "" and not back.has_object
    rec = json.loads(gzip.decompress(manifest.entry_body(e)))
    assert rec["has_object"] is False and rec["key"] is None and rec["size"] == 0
    assert json.loads(gzip.decompress(manifest.entry_body(_entry())))["has_object"] is True
    # any other REL starting with '~' would be a key starting with '/': not ours
    bad = manifest.entry_keys(e, "caps")[0].replace("~~none.", "~~etc~passwd.")
    assert manifest.parse_key(bad, "caps") is None


def test_an_idle_interface_is_covered_not_a_gap_and_nothing_is_fetched() -> None:
    """Captures at 12:00 and 12:30, coverage entries (one per idle 5-minute
    file) from 12:10 to 12:30: no gap, no day listing, no HEAD, no download."""
    st = _Memory()
    _store(st, "d1", [utc(2026, 11, 26, 12, 0), utc(2026, 11, 26, 12, 30)], entries=True)
    for minute in (10, 15, 20, 25):
        manifest.write_entries(st, _coverage("d1", utc(2026, 11, 26, 12, minute), 300), "caps")
    sel = select_mod.select(st, template=DEFAULT_KEY_TEMPLATE, prefix="caps",
                            since=utc(2026, 11, 26, 12, 5), until=utc(2026, 11, 26, 12, 35),
                            hosts=["d1"])  # fmt: skip
    (r,) = list(sel)
    assert r.gaps == [] and not r.checked and len(r.captures) == 2
    assert all(c.key for c in r.captures) and st.heads == 0
    # without the last two coverage entries: the hole from 12:20 is a gap again
    for k in list(st.objects):
        if "~20261126T1220" in k or "~20261126T1225" in k:
            del st.objects[k]
    sel = select_mod.select(st, template=DEFAULT_KEY_TEMPLATE, prefix="caps",
                            since=utc(2026, 11, 26, 12, 5), until=utc(2026, 11, 26, 12, 35),
                            hosts=["d1"])  # fmt: skip
    (r,) = list(sel)
    start = utc(2026, 11, 26, 12, 20).timestamp()
    assert r.gaps == [Gap("d1", "eth0", start, start + 600)]
