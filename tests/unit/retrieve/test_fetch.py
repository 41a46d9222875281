"""The fetch pipeline against a fake destination: output contents, errors, atomicity."""

from __future__ import annotations

import io
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from rollcap.config.schema import DEFAULT_KEY_TEMPLATE as T
from rollcap.errors import RollcapError
from rollcap.retrieve.catalog import Capture, find_captures
from rollcap.retrieve.fetch import disk_need, fetch
from rollcap.retrieve.timeexpr import widened
from rollcap.storage.base import META, SizeMismatch, StorageError, copy_exact
from tests.support.archive import NS, MemoryStorage, ns, read_timestamps, utc
from tests.support.fetchstore import run_fetch, store, two_hosts


@pytest.fixture
def st(tmp_path: Path) -> MemoryStorage:
    return two_hosts(tmp_path)


def test_window_cuts_through_files_and_merges_hosts(st: MemoryStorage, tmp_path: Path) -> None:
    out = tmp_path / "out.pcap"
    since, until = utc(2026, 11, 26, 10, 0, 30), utc(2026, 11, 26, 10, 1, 10)
    n = run_fetch(st, out, since, until, workers=3)
    got = read_timestamps(out)
    base = ns(utc(2026, 11, 26, 10))
    expected = sorted(
        t for i in range(100) for t in (base + i * NS, base + i * NS + NS // 2)
        if ns(since) <= t < ns(until)
    )  # fmt: skip
    assert n == len(got) == len(expected) == 80
    assert got == expected
    assert out.read_bytes()[:4] == b"\xd4\xc3\xb2\xa1"  # classic µs pcap, as the sources
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".rollcap-fetch-")] == []


def test_corrupt_object_names_the_key(st: MemoryStorage, tmp_path: Path) -> None:
    key = sorted(st.objects)[0]
    st.objects[key] = (b"garbage that is not a capture", st.objects[key][1])
    with pytest.raises(RollcapError, match=key.replace(".", r"\.") + ": not a readable capture"):
        run_fetch(st, tmp_path / "o.pcap", utc(2026, 11, 26, 10), utc(2026, 11, 26, 11))


def test_object_removed_after_listing_is_skipped(
    st: MemoryStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    since, until = utc(2026, 11, 26, 10), utc(2026, 11, 26, 11)
    caps, _ = find_captures(st, template=T, prefix="caps", since=since, until=until)
    gone = caps[0].key
    del st.objects[gone]  # the archive ring removed it between list and download
    real = st.download

    def download(key: str, dest: Path, *, size: int | None = None) -> None:
        if key == gone:
            raise StorageError(f"GET {key}: NoSuchKey", code="NoSuchKey")
        real(key, dest, size=size)

    monkeypatch.setattr(st, "download", download)
    out = tmp_path / "o.pcap"
    n = fetch(st, caps, since=since, until=until, output=out).packets
    assert n == 150 == len(read_timestamps(out))
    # any other storage failure stops the fetch
    monkeypatch.setattr(st, "download", lambda k, d, size=None: (_ for _ in ()).throw(
        StorageError("GET: AccessDenied", code="AccessDenied")))  # fmt: skip
    with pytest.raises(StorageError):
        fetch(st, caps[1:], since=since, until=until, output=out)


def test_a_fetch_that_cannot_fit_is_refused_before_any_download(
    st: MemoryStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collections import namedtuple

    from rollcap.retrieve import fetch as fetch_mod

    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(fetch_mod.shutil, "disk_usage", lambda _p: Usage(10**9, 10**9 - 100, 100))
    downloads: list[str] = []
    monkeypatch.setattr(st, "download", lambda key, dest, size=None: downloads.append(key))
    out = tmp_path / "out.pcap"
    with pytest.raises(RollcapError, match="not enough free space"):
        run_fetch(st, out, utc(2026, 11, 26, 10), utc(2026, 11, 26, 11))
    assert downloads == [] and not out.exists()


def test_max_bytes_refuses_a_fetch_that_records_more(st: MemoryStorage, tmp_path: Path) -> None:
    """--max-bytes: refused before any download, with what the window holds."""
    out = tmp_path / "out.pcap"
    since, until = utc(2026, 11, 26, 10), utc(2026, 11, 26, 10, 2)
    with pytest.raises(RollcapError, match=r"--max-bytes 1,000: the 4 captures .* pcap bytes"):
        run_fetch(st, out, since, until, max_bytes=1000)
    assert not out.exists()
    assert run_fetch(st, out, since, until, max_bytes=10**9) == 200


def test_max_bytes_stops_an_object_that_decompresses_past_it(
    st: MemoryStorage, tmp_path: Path
) -> None:
    """Objects that record no size (older writers, or stripped metadata) pass the
    check up front, and still cannot decompress past --max-bytes."""
    for key, (data, meta) in list(st.objects.items()):
        st.objects[key] = (data, {k: v for k, v in meta.items() if k != META["pcap_bytes"]})
    out = tmp_path / "out.pcap"
    since, until = utc(2026, 11, 26, 10), utc(2026, 11, 26, 10, 2)
    assert run_fetch(st, out, since, until) == 200  # no limit: all of it
    out.unlink()
    with pytest.raises(RollcapError, match="--max-bytes 100"):
        run_fetch(st, out, since, until, max_bytes=100)
    assert not out.exists()


@pytest.mark.parametrize(("text", "value"), [("1500", 1500), ("500M", 500_000_000),
                                             ("2g", 2_000_000_000), ("10KB", 10_000),
                                             ("1.5G", 1_500_000_000)])  # fmt: skip
def test_max_bytes_sizes(text: str, value: int) -> None:
    from rollcap.commands.fetch import _size

    assert _size(text) == value


@pytest.mark.parametrize("text", ["0", "-5", "5X", ""])
def test_max_bytes_refuses_what_is_not_a_size(text: str) -> None:
    import argparse

    from rollcap.commands.fetch import _size

    with pytest.raises(argparse.ArgumentTypeError, match=r"a positive size|not a size"):
        _size(text)


def test_nanosecond_objects_are_cut_at_the_ns_and_merged_with_micro_ones_as_nano(
    tmp_path: Path,
) -> None:
    """capture.timestamp_precision = "nano" on one host, "micro" on another."""
    st = MemoryStorage()
    base = ns(utc(2026, 11, 26, 10, 0, 1))
    nano = [base + i * 1_000_000 + 7 for i in range(20)]  # 7 ns past each ms
    micro = [base + i * 1_000_000 + 500_000 for i in range(20)]  # whole µs
    store(st, tmp_path, "n", utc(2026, 11, 26, 10), nano, 1, nanos=True)
    store(st, tmp_path, "m", utc(2026, 11, 26, 10), micro, 1)

    def run(lo: int, hi: int, out: Path) -> list[int]:
        since, until = widened((lo, hi))
        caps, _ = find_captures(st, template=T, prefix="caps", since=since, until=until)
        assert {c.host for c in caps} == {"n", "m"}
        fetch(st, caps, since=since, until=until, output=out, window_ns=(lo, hi))
        assert out.read_bytes()[:4] == b"\x4d\x3c\xb2\xa1"  # a micro + nano merge is nano
        return read_timestamps(out)

    got = run(nano[5], nano[10], tmp_path / "a.pcap")
    assert got == sorted(nano[5:10] + micro[5:10])  # every stamp to the ns
    # one ns later: nano[5] (7 ns past the µs) is out, though its µs is the same
    got = run(nano[5] + 1, nano[10] + 1, tmp_path / "b.pcap")
    assert got == sorted(nano[6:11] + micro[5:10])


def test_nano_metadata_is_read_to_the_ns_and_micro_metadata_as_before(tmp_path: Path) -> None:
    st = MemoryStorage()
    base = ns(utc(2026, 11, 26, 10, 0, 1))
    store(st, tmp_path, "n", utc(2026, 11, 26, 10), [base + 123_456_789, base + NS + 1], 1,
           nanos=True)  # fmt: skip
    store(st, tmp_path, "m", utc(2026, 11, 26, 10), [base + 250_000_000, base + NS], 1)
    metas = {k.split("/")[1]: md for k, (_b, md) in st.objects.items()}
    assert metas["n"][META["first_ts"]] == f"{base // NS}.123456789"
    assert metas["m"][META["first_ts"]] == f"{base // NS}.250000"  # 0.2's 6 digits
    caps, _ = find_captures(st, template=T, prefix="caps", since=utc(2026, 11, 26, 10),
                            until=utc(2026, 11, 26, 11))  # fmt: skip
    got = {c.host: (c.first_ns, c.last_ns) for c in caps}
    assert got == {"n": (base + 123_456_789, base + NS + 1), "m": (base + 250_000_000, base + NS)}
    # half-open to the ns: a window ending at the nano file's first packet misses it,
    # one ending 1 ns later holds it (the listing, widened to whole µs, has both)
    lo = ns(utc(2026, 11, 26, 10))
    for hi, want in ((base + 123_456_789, []), (base + 123_456_790, ["n"])):
        since, until = widened((lo, hi))
        caps, _ = find_captures(st, template=T, prefix="caps", since=since, until=until)
        assert [c.host for c in caps] == ["n"]
        assert [c.host for c in caps if c.overlaps(lo, hi)] == want


# -- bounded fetch: entries are untrusted ------------------------------------------


def _cap(size: int, pcap_bytes: int | None, packets: int | None = None,
         linktype: int = 1) -> Capture:  # fmt: skip
    return Capture(key=f"k{size}", size=size, host="h", iface="eth0", start=None,
                   first_ns=None, last_ns=None, packets=packets, pcap_bytes=pcap_bytes,
                   linktype=linktype)  # fmt: skip


def test_disk_need_is_downloads_in_flight_plus_pieces_plus_output() -> None:
    caps = [_cap(100, 1000, 10), _cap(500, 2000, 20), _cap(300, 3000, 30)]
    need = disk_need(caps, workers=2)
    # the two largest downloads at once (<= 2 x the largest), every window, their merge
    assert (need.downloads, need.pieces, need.output) == (800, 6000, 6000)
    assert need.total == 12_800
    assert disk_need(caps, workers=8).downloads == 900  # never more downloads than objects
    # without a recorded pcap size, 100 x the stored size; --max-bytes caps each piece
    assert disk_need([_cap(7, None)], workers=1).pieces == 700 + 24
    assert disk_need(caps, workers=1, max_bytes=1500).pieces == 1000 + 1500 + 1500
    # pcapng: a larger block per packet and mergecap's headers
    ng = disk_need(caps, workers=2, pcapng=True)
    assert ng.output == 6000 + 20 * 60 + 4096


def test_free_space_check_asks_for_exactly_the_bound(
    st: MemoryStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collections import namedtuple

    from rollcap.retrieve import fetch as fetch_mod

    since, until = utc(2026, 11, 26, 10), utc(2026, 11, 26, 11)
    caps, _ = find_captures(st, template=T, prefix="caps", since=since, until=until)
    need = disk_need(caps, workers=3).total
    Usage = namedtuple("Usage", "total used free")
    for free, ok in ((need - 1, False), (need, True)):
        monkeypatch.setattr(fetch_mod.shutil, "disk_usage", lambda _p, f=free: Usage(0, 0, f))
        out = tmp_path / f"{free}.pcap"
        if ok:
            assert fetch(st, caps, since=since, until=until, output=out, workers=3).packets == 200
        else:
            with pytest.raises(RollcapError, match=f"up to {need:,} bytes needed"):
                fetch(st, caps, since=since, until=until, output=out, workers=3)


@pytest.mark.parametrize("lie", [80, 10_000_000])
def test_an_entry_that_lies_about_size_is_refused_and_the_rest_is_fetched(
    st: MemoryStorage, tmp_path: Path, lie: int, caplog: pytest.LogCaptureFixture
) -> None:
    """An object smaller or larger than its entry says: refused with one line
    naming it, nothing of it is kept, every other object is still fetched."""
    since, until = utc(2026, 11, 26, 10), utc(2026, 11, 26, 11)
    caps, _ = find_captures(st, template=T, prefix="caps", since=since, until=until)
    liar = caps[1]
    caps[1] = replace(liar, size=lie)
    out = tmp_path / "o.pcap"
    with caplog.at_level(logging.ERROR, "rollcap.retrieve"):
        r = fetch(st, caps, since=since, until=until, output=out)
    assert r.packets == 150 == len(read_timestamps(out))  # the other three objects
    assert r.objects == 3 and len(r.refused) == 1
    assert liar.key in r.refused[0] and "\n" not in r.refused[0]
    assert f"its entry records {lie:,}; refused" in r.refused[0]
    assert [rec.getMessage() for rec in caplog.records] == r.refused


def test_an_object_that_decompresses_past_its_recorded_size_is_refused(
    st: MemoryStorage, tmp_path: Path
) -> None:
    since, until = utc(2026, 11, 26, 10), utc(2026, 11, 26, 11)
    caps, _ = find_captures(st, template=T, prefix="caps", since=since, until=until)
    caps[0] = replace(caps[0], pcap_bytes=100)
    r = fetch(st, caps, since=since, until=until, output=tmp_path / "o.pcap")
    assert r.packets == 150 and len(r.refused) == 1
    assert r.refused[0].startswith(f"{caps[0].key}: decompresses to more than 100 bytes")


@pytest.mark.parametrize("held", [0, 79, 81, 5 * 1024 * 1024])
def test_copy_exact_never_writes_past_the_size(held: int) -> None:
    dst = io.BytesIO()
    with pytest.raises(SizeMismatch, match=r"GET x: the object holds .* its entry records 80"):
        copy_exact(io.BytesIO(b"\0" * held), dst, 80, "GET x")
    assert len(dst.getvalue()) <= 80
