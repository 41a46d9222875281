"""Readers believe an entry only where its writer may write: the capture key
under the named host's prefix; entries that disagree are settled by HEAD."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime

from rollcap.config.schema import OffloadConfig
from rollcap.retrieve.entrycheck import EntryCheck, body_agrees
from rollcap.storage import manifest
from rollcap.storage.base import META
from tests.support.archive import MemoryStorage

T = OffloadConfig(destination="s3://b-1/caps").key_template
KEY = "caps/web1/2026/11/26/web1-eth0-20261126T120000Z-000001.pcap.zst"
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _e(host: str = "web1", key: str = KEY, packets: int = 7, size: int = 100) -> manifest.Entry:
    t = int(T0.timestamp())
    return manifest.Entry(key=key, host=host, iface="eth0", opened=T0, closed_ts=t + 60,
                          first_ns=(t + 1) * 10**9, last_ns=(t + 7) * 10**9, packets=packets,
                          pcap_bytes=500, size=size, linktype=1)  # fmt: skip


def _store() -> MemoryStorage:
    s = MemoryStorage()
    t = int(T0.timestamp())
    s.objects[KEY] = (b"x" * 100, {
        META["host"]: "web1", META["iface"]: "eth0", META["packets"]: "7",
        META["pcap_bytes"]: "500", META["linktype"]: "1",
        META["first_ts"]: f"{t + 1}.000000", META["last_ts"]: f"{t + 7}.000000",
    })  # fmt: skip
    return s


def test_an_entry_describing_another_hosts_key_is_rejected() -> None:
    check = EntryCheck(_store(), T, "caps")
    believed, _obj, rejected = check.settle({"n1": _e(host="web2", packets=0)})
    assert believed == {} and [r.entry for r in rejected] == ["n1"]
    assert "not under web2's prefix" in rejected[0].reason


def test_disagreeing_entries_are_settled_by_the_object_not_by_sort_order() -> None:
    store = _store()
    check = EntryCheck(store, T, "caps")
    real, hiding, huge = _e(), _e(packets=0), _e(size=10**15)
    # the forged ones sort first
    believed, _obj, rejected = check.settle({"a-hide": hiding, "b-huge": huge, "z-real": real})
    assert believed == {KEY: real}
    assert {r.entry for r in rejected} == {"a-hide", "b-huge"}
    assert store.heads == 1
    # one entry alone: no HEAD
    assert check.settle({"z-real": real})[0] == {KEY: real} and store.heads == 1


def test_a_body_must_say_what_the_name_says() -> None:
    e = _e()
    for slot in manifest.slots(*e.span):
        assert body_agrees(e, manifest.entry_body(e, slot))
    assert not body_agrees(e, manifest.entry_body(_e(packets=0)))
    assert not body_agrees(e, manifest.entry_body(_e(host="web2")))
    assert not body_agrees(e, b"not gzip")
    assert not body_agrees(e, gzip.compress(b"[1, 2]\n"))


def test_coverage_entries_are_believed_by_their_name_without_a_head() -> None:
    """Coverage entries (an idle link) name no object: each is kept (two idle
    files of one host are not one claim about key ""), none is HEADed."""
    store = _store()
    check = EntryCheck(store, T, "caps")
    t = int(T0.timestamp())
    idle = [manifest.Entry(key="", host="web1", iface="eth1", opened=datetime.fromtimestamp(
        t + 600 * i, UTC), closed_ts=t + 600 * (i + 1), first_ns=None, last_ns=None, packets=0,
        pcap_bytes=24, size=0, linktype=1) for i in range(2)]  # fmt: skip
    named = {f"c{i}": e for i, e in enumerate(idle)} | {"n1": _e()}
    believed, from_object, rejected = check.settle(named)
    assert sorted(believed.values(), key=lambda e: e.ident) == sorted([*idle, _e()],
                                                                     key=lambda e: e.ident)
    assert from_object == {} and rejected == [] and store.heads == 0
