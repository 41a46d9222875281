"""Finding the captures of a window from keys and metadata (fake storage, pure logic)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from rollcap.config.schema import DEFAULT_KEY_TEMPLATE as T
from rollcap.retrieve.catalog import find_captures
from rollcap.storage.base import META
from tests.support.archive import NS, MemoryStorage, make_object, ns, utc

FRAMES = [(b"\x00" * 60, 60)]


def _put(st: MemoryStorage, tmp: Path, host: str, start: datetime, first: datetime,
         last: datetime, *, iface: str = "eth0", seq: int = 1, meta: bool = True,
         prefix: str = "caps") -> str:  # fmt: skip
    stamps = [ns(first), (ns(first) + ns(last)) // 2, ns(last)]
    local, key, md = make_object(tmp, prefix=prefix, host=host, iface=iface, start=start,
                                 seq=seq, stamps=stamps, frames=FRAMES,
                                 with_metadata=meta)  # fmt: skip
    st.put_file(local, key, size=local.stat().st_size, sha256="", metadata=md)
    return key


@pytest.fixture
def st(tmp_path: Path) -> MemoryStorage:
    s = MemoryStorage()
    # web1: one file per 10 minutes around midnight, one crossing midnight
    _put(s, tmp_path, "web1", utc(2026, 11, 25, 23, 40), utc(2026, 11, 25, 23, 40, 1),
         utc(2026, 11, 25, 23, 49, 59), seq=1)  # fmt: skip
    _put(s, tmp_path, "web1", utc(2026, 11, 25, 23, 58), utc(2026, 11, 25, 23, 58, 2),
         utc(2026, 11, 26, 0, 9), seq=2)  # fmt: skip
    _put(s, tmp_path, "web1", utc(2026, 11, 26, 0, 9), utc(2026, 11, 26, 0, 9, 1),
         utc(2026, 11, 26, 0, 19), seq=3)  # fmt: skip
    _put(s, tmp_path, "db1", utc(2026, 11, 26, 0, 0), utc(2026, 11, 26, 0, 0, 1),
         utc(2026, 11, 26, 0, 10), iface="bond0", seq=1)  # fmt: skip
    _put(s, tmp_path, "db1", utc(2026, 11, 20, 0, 0), utc(2026, 11, 20, 0, 0, 1),
         utc(2026, 11, 20, 0, 10), iface="bond0", seq=0)  # fmt: skip
    return s


def _keys(caps: list) -> list[str]:  # type: ignore[type-arg]
    return [c.key.rsplit("/", 1)[1] for c in caps]


def test_window_after_midnight_finds_the_file_opened_before_it(st: MemoryStorage) -> None:
    caps, search = find_captures(st, template=T, prefix="caps", since=utc(2026, 11, 26, 0, 5),
                                 until=utc(2026, 11, 26, 0, 8), hosts=["web1"])  # fmt: skip
    assert _keys(caps) == ["web1-eth0-20261125T235800Z-000002.pcap.zst"]
    # listed just that host's two days, not the bucket
    assert st.listed == ["caps/web1/2026/11/25/web1-", "caps/web1/2026/11/26/web1-"]
    assert search.hosts == ["web1"]
    assert caps[0].packets == 3 and caps[0].first_ts == ns(utc(2026, 11, 25, 23, 58, 2)) / NS


def test_hosts_are_discovered_and_results_sorted_by_time(st: MemoryStorage) -> None:
    caps, search = find_captures(st, template=T, prefix="caps", since=utc(2026, 11, 26, 0, 9, 30),
                                 until=utc(2026, 11, 26, 0, 12))  # fmt: skip
    assert search.hosts == ["db1", "web1"]
    assert _keys(caps) == [
        "db1-bond0-20261126T000000Z-000001.pcap.zst",
        "web1-eth0-20261126T000900Z-000003.pcap.zst",
    ]
    assert "caps/" not in st.listed and st.delimited == ["caps/"]
    assert caps[0].host == "db1" and caps[0].iface == "bond0"


def test_boundaries_are_half_open(st: MemoryStorage) -> None:
    # until == first packet of file 3: excluded; since == last packet of file 2: included
    caps, _ = find_captures(st, template=T, prefix="caps", since=utc(2026, 11, 26, 0, 9),
                            until=utc(2026, 11, 26, 0, 9, 1), hosts=["web1"])  # fmt: skip
    assert _keys(caps) == ["web1-eth0-20261125T235800Z-000002.pcap.zst"]


def test_interface_filter_and_nothing_found(st: MemoryStorage) -> None:
    caps, _ = find_captures(st, template=T, prefix="caps", since=utc(2026, 11, 26, 0, 0),
                            until=utc(2026, 11, 26, 1), iface="bond0")  # fmt: skip
    assert _keys(caps) == ["db1-bond0-20261126T000000Z-000001.pcap.zst"]
    caps, search = find_captures(st, template=T, prefix="caps", since=utc(2026, 11, 27, 0, 0),
                                 until=utc(2026, 11, 27, 1))  # fmt: skip
    assert caps == []
    text = search.describe()
    assert "db1, web1" in text and "2026-11-26 to 2026-11-27" in text


def test_objects_without_metadata_count_as_possibly_overlapping(tmp_path: Path) -> None:
    s = MemoryStorage()
    _put(s, tmp_path, "h", utc(2026, 11, 26, 10), utc(2026, 11, 26, 10), utc(2026, 11, 26, 10, 5),
         meta=False)  # fmt: skip
    # by its key it may hold packets at 10:30 (it is younger than a day): keep it
    caps, _ = find_captures(s, template=T, prefix="caps", since=utc(2026, 11, 26, 10, 30),
                            until=utc(2026, 11, 26, 11))  # fmt: skip
    assert len(caps) == 1 and not caps[0].has_metadata and caps[0].host == "h"
    # opened after the window: cannot overlap
    caps, _ = find_captures(s, template=T, prefix="caps", since=utc(2026, 11, 26, 9),
                            until=utc(2026, 11, 26, 9, 59))  # fmt: skip
    assert caps == []


def test_heads_only_candidates(st: MemoryStorage) -> None:
    find_captures(st, template=T, prefix="caps", since=utc(2026, 11, 26, 0, 15),
                  until=utc(2026, 11, 26, 0, 16), hosts=["web1", "db1"])  # fmt: skip
    # of the files opened before the window only each host's last one can reach into
    # it (web1 00:09, db1 00:00); older ones and the one of the 20th are never HEADed
    assert st.heads == 2


def test_a_days_worth_of_rotations_costs_one_head_per_host(tmp_path: Path) -> None:
    s = MemoryStorage()
    for i in range(144):  # every 10 minutes for a day, each file runs its full 10 minutes
        start = utc(2026, 11, 25, 0, 0) + timedelta(minutes=10 * i)
        _put(s, tmp_path, "web1", start, start + timedelta(seconds=1),
             start + timedelta(minutes=9, seconds=59), seq=i)  # fmt: skip
    caps, _ = find_captures(s, template=T, prefix="caps", since=utc(2026, 11, 25, 23, 55),
                            until=utc(2026, 11, 26, 0, 5))  # fmt: skip
    assert _keys(caps) == ["web1-eth0-20261125T235000Z-000143.pcap.zst"]
    assert s.heads == 1  # not 144
    caps, _ = find_captures(s, template=T, prefix="caps", since=utc(2026, 11, 25, 12, 5),
                            until=utc(2026, 11, 25, 12, 25))  # fmt: skip
    assert [k[10:25] for k in _keys(caps)] == ["20261125T120000", "20261125T121000",
                                               "20261125T122000"]  # fmt: skip
    assert s.heads == 1 + 3


def test_custom_template_lists_whole_prefix(tmp_path: Path) -> None:
    s = MemoryStorage()
    tmpl = "{prefix}/{seq:06d}-{host}-{iface}-{start:%Y%m%dT%H%M%SZ}{ext}"
    local, _key, md = make_object(tmp_path, prefix="p", host="h", iface="eth0",
                                  start=utc(2026, 1, 1), seq=1,
                                  stamps=[ns(utc(2026, 1, 1, 0, 0, 1))], frames=FRAMES)  # fmt: skip
    s.put_file(local, "p/000001-h-eth0-20260101T000000Z.pcap.zst", size=0, sha256="", metadata=md)
    caps, search = find_captures(s, template=tmpl, prefix="p", since=utc(2026, 1, 1),
                                 until=utc(2026, 1, 2))  # fmt: skip
    assert search.whole_prefix and s.listed == ["p/"]
    assert len(caps) == 1 and caps[0].host == "h" and search.hosts == ["h"]


def test_header_only_files_are_not_listed(tmp_path: Path) -> None:
    s = MemoryStorage()
    key = _put(s, tmp_path, "h", utc(2026, 11, 26, 10), utc(2026, 11, 26, 10),
               utc(2026, 11, 26, 10, 5))  # fmt: skip
    _data, meta = s.objects[key]
    # what the offload writes for a rotation without traffic
    meta.update({META["packets"]: "0", META["first_ts"]: "", META["last_ts"]: ""})
    caps, _ = find_captures(s, template=T, prefix="caps", since=utc(2026, 11, 26, 10),
                            until=utc(2026, 11, 26, 11))  # fmt: skip
    assert caps == []


def test_a_file_still_running_when_the_next_one_opened_is_found(tmp_path: Path) -> None:
    # make-before-break: the old tcpdump ran on for a second after the new one
    # opened its file (and the duplicates were stripped from the new file), so
    # the file opened before the last one also reaches into the window
    s = MemoryStorage()
    _put(s, tmp_path, "web1", utc(2026, 11, 26, 0, 0), utc(2026, 11, 26, 0, 0, 1),
         utc(2026, 11, 26, 0, 10, 1, 500000), seq=1)  # fmt: skip
    _put(s, tmp_path, "web1", utc(2026, 11, 26, 0, 10), utc(2026, 11, 26, 0, 10, 1, 600000),
         utc(2026, 11, 26, 0, 19), seq=2)  # fmt: skip
    caps, _ = find_captures(s, template=T, prefix="caps", since=utc(2026, 11, 26, 0, 10, 1),
                            until=utc(2026, 11, 26, 0, 10, 5))  # fmt: skip
    assert _keys(caps) == ["web1-eth0-20261126T000000Z-000001.pcap.zst",
                           "web1-eth0-20261126T001000Z-000002.pcap.zst"]  # fmt: skip


def test_an_object_whose_metadata_names_another_host_is_reported_not_shown(
    st: MemoryStorage, tmp_path: Path
) -> None:
    """web2 may write any metadata below its own prefix: a capture there that
    says host web1 is not web1's (nor web2's), and the search names it."""
    key = _put(st, tmp_path, "web2", utc(2026, 11, 26, 0, 9), utc(2026, 11, 26, 0, 9, 1),
               utc(2026, 11, 26, 0, 11), seq=9)  # fmt: skip
    data, md = st.objects[key]
    st.objects[key] = (data, {**md, META["host"]: "web1"})
    for hosts in (None, ["web1"], ["web2"]):
        caps, search = find_captures(st, template=T, prefix="caps", hosts=hosts,
                                     since=utc(2026, 11, 26, 0, 9, 30),
                                     until=utc(2026, 11, 26, 0, 12))  # fmt: skip
        assert key not in [c.key for c in caps]
        if hosts != ["web1"]:  # web1's listing never looks below web2/
            assert [(c.key, khost) for c, khost in search.mislabelled] == [(key, "web2")]
