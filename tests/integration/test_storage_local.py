"""LocalStorage: atomic, never overwrites, metadata sidecars, and its own budget."""

from __future__ import annotations

import hashlib
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rollcap.config.schema import OffloadConfig
from rollcap.storage import META, ObjectExistsError, StorageError, manifest, open_storage
from rollcap.storage.base import SizeMismatch
from rollcap.storage.local import LocalStorage


def _store(root: Path, mb: int = 1000) -> LocalStorage:
    s = open_storage(OffloadConfig(destination=f"file://{root}", archive_max_megabytes=mb))
    assert isinstance(s, LocalStorage)
    s.check()
    return s


def _file(tmp_path: Path, size: int, name: str = "src") -> tuple[Path, str]:
    p = tmp_path / name
    p.write_bytes(os.urandom(size))
    return p, hashlib.sha256(p.read_bytes()).hexdigest()


def _key(minute: int) -> str:
    return f"h1/2026/11/26/h1-eth0-20261126T12{minute:02d}00Z-{minute:06d}.pcap.zst"


def test_put_head_list_download(tmp_path: Path) -> None:
    store = _store(tmp_path / "archive")
    src, sha = _file(tmp_path, 5000)
    info = store.put_file(src, _key(1), size=5000, sha256=sha, metadata={META["packets"]: "3"})
    assert info.size == 5000 and info.sha256 == sha and info.metadata[META["packets"]] == "3"
    assert (tmp_path / "archive" / _key(1)).read_bytes() == src.read_bytes()
    src.unlink()  # the caller deletes its temp file; the archive keeps its own link
    back = tmp_path / "back"
    store.download(_key(1), back)
    assert hashlib.sha256(back.read_bytes()).hexdigest() == sha
    listed = list(store.list("", with_metadata=True))
    assert [o.key for o in listed] == [_key(1)]  # no sidecars, no temp dir
    assert listed[0].sha256 == sha
    assert store.head(_key(2)) is None


@pytest.mark.parametrize("recorded", [0, 80, 4999, 5001])
def test_download_of_an_object_whose_size_is_not_the_recorded_one_is_refused(
    tmp_path: Path, recorded: int
) -> None:
    store = _store(tmp_path / "archive")
    src, sha = _file(tmp_path, 5000)
    store.put_file(src, _key(1), size=5000, sha256=sha, metadata={})
    dest_dir = tmp_path / "dl"
    dest_dir.mkdir()
    with pytest.raises(SizeMismatch, match=f"holds 5,000 bytes, its entry records {recorded:,}"):
        store.download(_key(1), dest_dir / "x", size=recorded)
    assert list(dest_dir.iterdir()) == []  # no temp file left either
    store.download(_key(1), dest_dir / "x", size=5000)
    assert (dest_dir / "x").read_bytes() == src.read_bytes()


def test_never_overwrites(tmp_path: Path) -> None:
    store = _store(tmp_path / "archive")
    a, sha_a = _file(tmp_path, 100, "a")
    b, sha_b = _file(tmp_path, 100, "b")
    store.put_file(a, _key(1), size=100, sha256=sha_a, metadata={})
    with pytest.raises(ObjectExistsError):
        store.put_file(b, _key(1), size=100, sha256=sha_b, metadata={})
    info = store.head(_key(1))
    assert info is not None and info.sha256 == sha_a
    assert (tmp_path / "archive" / _key(1)).read_bytes() == a.read_bytes()


def test_budget_removes_oldest_first_and_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = _store(tmp_path / "archive", mb=1)  # 1,000,000 bytes
    caplog.set_level(logging.INFO)
    # put them out of order: the ring removes by key (time), not by arrival
    for minute in (5, 1, 3, 2, 4):
        src, sha = _file(tmp_path, 300_000, f"s{minute}")
        store.put_file(src, _key(minute), size=300_000, sha256=sha, metadata={})
        assert store.total_bytes <= 1_000_000
    # 2 arrived late but is older than 3: it goes before 3 does
    assert [o.key for o in store.list("")] == [_key(3), _key(4), _key(5)]
    removed = [r for r in caplog.records if "removed the oldest" in r.getMessage()]
    assert [r.ROLLCAP_KEY for r in removed] == [_key(1), _key(2)]  # type: ignore[attr-defined]
    # a fresh instance (restart) sees the same total on disk
    assert _store(tmp_path / "archive", mb=1).total_bytes == store.total_bytes


def test_an_object_bigger_than_the_budget_is_kept(tmp_path: Path) -> None:
    store = _store(tmp_path / "archive", mb=1)
    src, sha = _file(tmp_path, 1_200_000)
    store.put_file(src, _key(1), size=1_200_000, sha256=sha, metadata={})
    assert store.head(_key(1)) is not None


def test_ring_removes_emptied_directories(tmp_path: Path) -> None:
    store = _store(tmp_path / "archive")
    src, sha = _file(tmp_path, 10)
    store.put_file(src, "h1/2026/11/25/x.pcap", size=10, sha256=sha, metadata={})
    store.delete("h1/2026/11/25/x.pcap")
    assert not (tmp_path / "archive" / "h1").exists()
    assert (tmp_path / "archive").is_dir()


def test_cleanup_removes_temp_files_and_orphan_sidecars(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    store = _store(root)
    (root / ".rollcap-tmp" / "dead.data").write_bytes(b"x")
    (root / "h1").mkdir()
    (root / "h1" / "gone.pcap.meta.json").write_text("{}")
    (root / "h2").mkdir()
    (root / "h2" / "gone.pcap.meta.json").write_text("{}")
    cleaned = store.cleanup_incomplete(lambda k: k.startswith("h1/"))
    assert cleaned == ["h1/gone.pcap"]
    assert not (root / "h1" / "gone.pcap.meta.json").exists()
    assert (root / "h2" / "gone.pcap.meta.json").exists()
    assert list((root / ".rollcap-tmp").iterdir()) == []


def test_bad_keys_are_refused(tmp_path: Path) -> None:
    store = _store(tmp_path / "archive")
    for key in ("../escape", "/abs", "a//b", "a/./b"):
        with pytest.raises(StorageError):
            store.head(key)


def test_unwritable_archive_is_a_permanent_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("not a directory")
        store = open_storage(OffloadConfig(destination=f"file://{blocker}/archive"))
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        store = open_storage(OffloadConfig(destination=f"file://{ro}/archive"))
    with pytest.raises(StorageError) as e:
        store.check()
    assert str(tmp_path) in str(e.value)


def test_a_path_too_long_for_the_filesystem_is_this_keys_failure(tmp_path: Path) -> None:
    """ENAMETOOLONG (archive path + key over PATH_MAX) names the key: the offload
    quarantines that file instead of calling the destination down."""
    from rollcap.offload.pipeline import PER_FILE_CODES

    deep = tmp_path
    while len(str(deep)) < 3600:
        deep = deep / ("d" * 200)
    store = _store(deep / "archive")
    src, sha = _file(tmp_path, 100)
    key = "/".join(["s" * 250] * 3) + "/x.pcap"
    with pytest.raises(StorageError) as e:
        store.put_file(src, key, size=100, sha256=sha, metadata={})
    assert e.value.code == "ENAMETOOLONG" and e.value.code in PER_FILE_CODES


def _entry(minute: int, key: str | None = None) -> manifest.Entry:
    """The entry of _key(minute) (a 60-second file), or with key "" a coverage entry."""
    opened = datetime(2026, 11, 26, 12, minute, tzinfo=UTC)
    t = int(opened.timestamp())
    return manifest.Entry(
        key=_key(minute) if key is None else key, host="h1", iface="eth0", opened=opened,
        closed_ts=t + 60, first_ns=None, last_ns=None, packets=0 if key == "" else 1,
        pcap_bytes=24, size=0, linktype=1,
    )  # fmt: skip


def test_manifest_entries_are_written_once_and_leave_with_their_capture(tmp_path: Path) -> None:
    """A file:// archive keeps manifest entries below _index/: written once,
    outside the ring's objects, and removed with the capture the ring removes
    (with the coverage entries of its interface that ended before it), so
    `rollcap list` never names a capture that is gone."""
    root = tmp_path / "archive"
    store = _store(root, mb=1)
    assert store.manifests
    for minute in (1, 2):
        src, sha = _file(tmp_path, 400_000, f"s{minute}")
        store.put_file(src, _key(minute), size=400_000, sha256=sha, metadata={})
        manifest.write_entries(store, _entry(minute), "")
    covered = manifest.write_entries(store, _entry(0, key=""), "")  # idle before minute 1
    later = manifest.write_entries(store, _entry(5, key=""), "")
    (k1,) = manifest.write_entries(store, _entry(1), "")  # again (a retry): kept as it was
    body = (root / k1).read_bytes()
    assert manifest.parse_key(k1, "") == _entry(1)
    assert [o.key for o in store.list("h1/")] == [_key(1), _key(2)]  # entries are not objects
    src, sha = _file(tmp_path, 400_000, "s3")
    store.put_file(src, _key(3), size=400_000, sha256=sha, metadata={})  # over: _key(1) goes
    assert [o.key for o in store.list("h1/")] == [_key(2), _key(3)]
    left = [o.key for o in store.list(manifest.root(""))]
    assert k1 not in left and covered[0] not in left
    assert later[0] in left and manifest.entry_keys(_entry(2), "")[0] in left
    assert body  # the entry's bytes were there until the ring removed its capture
    # a restart (index rebuilt from disk) removes entries the same way
    src, sha = _file(tmp_path, 400_000, "s4")
    _store(root, mb=1).put_file(src, _key(4), size=400_000, sha256=sha, metadata={})
    assert manifest.entry_keys(_entry(2), "")[0] not in [
        o.key for o in store.list(manifest.root(""))
    ]


def test_flow_summaries_leave_with_their_capture(tmp_path: Path) -> None:
    """A capture's flow summary (below _index/flows/v1/) is counted with it
    and removed by the ring with it, also after a restart."""
    from rollcap.flows import index as flowindex
    from rollcap.flows.summary import FlowSummary

    root = tmp_path / "archive"
    store = _store(root, mb=1)
    keys = {}
    for minute in (1, 2):
        src, sha = _file(tmp_path, 400_000, f"s{minute}")
        store.put_file(src, _key(minute), size=400_000, sha256=sha, metadata={})
        keys[minute] = flowindex.write_summary(store, _entry(minute), FlowSummary(1, {}), "")
    assert flowindex.parse_key(keys[1], "") == _entry(1)
    assert flowindex.read_summary(store, keys[1]).complete
    src, sha = _file(tmp_path, 400_000, "s3")
    store.put_file(src, _key(3), size=400_000, sha256=sha, metadata={})  # over: _key(1) goes
    assert not (root / keys[1]).exists() and (root / keys[2]).exists()
    src, sha = _file(tmp_path, 400_000, "s4")
    _store(root, mb=1).put_file(src, _key(4), size=400_000, sha256=sha, metadata={})
    assert not (root / keys[2]).exists()  # the restarted ring found it on disk
