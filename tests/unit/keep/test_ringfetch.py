"""fetch --local's source: ready/ read through its fd, never past a link or the listed size."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rollcap.keep.ringfetch import RingSource, ring_captures
from rollcap.spool.fs import Dir
from rollcap.storage.base import SizeMismatch, StorageError
from rollcap.timestamps import NS
from tests.support.pcaps import packets, write_pcap

T = 1_800_000_000  # 2027-01-15T08:00:00Z
NAME = "20270115T080000Z-000001_h1_eth0.pcap"
OTHER = "20270115T090000Z-000002_h1_eth1.pcap"


@pytest.fixture
def ready(tmp_path: Path) -> Path:
    d = tmp_path / "ready"
    d.mkdir()
    write_pcap(d / NAME, packets(10, start=T))
    os.utime(d / NAME, ns=(T * NS + 10 * NS, T * NS + 10 * NS))
    write_pcap(d / OTHER, packets(10, start=T + 3600))
    os.utime(d / OTHER, ns=((T + 3610) * NS, (T + 3610) * NS))
    return d


def test_the_window_interface_and_host_choose_the_files(ready: Path) -> None:
    with Dir(ready) as d:
        assert [c.key for c in ring_captures(d, T * NS, (T + 5) * NS)] == [NAME]
        assert [c.key for c in ring_captures(d, T * NS, (T + 4000) * NS)] == [NAME, OTHER]
        assert [c.key for c in ring_captures(d, T * NS, (T + 4000) * NS, "eth1")] == [OTHER]
        assert ring_captures(d, T * NS, (T + 4000) * NS, hosts=["h2"]) == []
        assert ring_captures(d, (T + 7200) * NS, (T + 7300) * NS) == []


def test_a_file_is_copied_at_most_as_listed(ready: Path, tmp_path: Path) -> None:
    with Dir(ready) as d:
        (cap,) = ring_captures(d, T * NS, (T + 5) * NS)
        with open(ready / NAME, "ab") as f:
            f.write(b"grown after the listing")
        RingSource(d, "nobody").download(cap.key, tmp_path / "out", size=cap.size)
        assert (tmp_path / "out").read_bytes() == (ready / NAME).read_bytes()[: cap.size]
        os.truncate(ready / NAME, 100)
        with pytest.raises(SizeMismatch):
            RingSource(d, "nobody").download(cap.key, tmp_path / "out2", size=cap.size)


def test_a_link_or_a_vanished_file_is_not_read(ready: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"not a capture of ours")
    link = "20270115T100000Z-000003_h1_eth0.pcap"
    (ready / link).symlink_to(secret)
    with Dir(ready) as d:
        assert link not in {c.key for c in ring_captures(d, 0, (T + 9000) * NS)}
        with pytest.raises(StorageError, match="symbolic link") as e:
            RingSource(d, "nobody").download(link, tmp_path / "out")
        assert e.value.permanent
        (ready / NAME).unlink()  # the ring dropped it after the listing
        with pytest.raises(StorageError) as gone:
            RingSource(d, "nobody").download(NAME, tmp_path / "out")
        assert gone.value.code == "ENOENT"  # fetch skips it with a warning
        with pytest.raises(StorageError, match="not a capture"):
            RingSource(d, "nobody").download("../etc/passwd", tmp_path / "out")
    assert not (tmp_path / "out").exists()
