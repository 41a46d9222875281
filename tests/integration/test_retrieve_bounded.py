"""`rollcap fetch` against SeaweedFS when manifest entries lie about sizes.

The offload's pipeline stores real 10-minute captures of two hosts with their
entries. Then one entry is made to lie both ways: a 48 MB object whose entry
says 80 bytes (the 419 MB that once reached an analyst's temp directory), and
a real capture whose entry says ten times its size. The fetch must refuse
exactly those two, with one line naming each, write every other packet of the
window, and its temp directory must never hold more than disk_need() says for
the recorded sizes (measured by polling the directory while the fetch runs).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from rollcap.config.schema import DEFAULT_KEY_TEMPLATE
from rollcap.retrieve.fetch import disk_need
from rollcap.retrieve.select import collect, select
from rollcap.storage import manifest, open_storage
from tests.support.archive import NS, ns, read_frames, read_timestamps, utc
from tests.support.diskpeak import PeakWatcher
from tests.support.offloaded import REPO, offload
from tests.support.seaweedfs import SeaweedFS

pytestmark = pytest.mark.integration

START = utc(2026, 11, 26, 12, 0, 3)
SINCE, UNTIL = utc(2026, 11, 26, 12, 0), utc(2026, 11, 26, 12, 40)
BLOB = 48 * 1024 * 1024
JOBS = 2


def _stamps(start_ns: int) -> list[int]:
    return [start_ns + NS + i * 2 * NS for i in range(290)]  # 1 s .. 579 s after the open


def test_lying_entries_are_refused_the_rest_is_fetched_and_temp_disk_stays_bounded(
    seaweedfs: SeaweedFS, all_pcap: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = read_frames(all_pcap)
    files = []
    for host, skew in (("web1", 0), ("web2", 1)):
        for i in range(4):  # 12:00:03 .. 12:40:03: each file spans two 10-minute slots
            start = START + timedelta(seconds=600 * i + skew)
            files.append((host, start, _stamps(ns(start))))
    fleet = offload(seaweedfs, tmp_path, files, frames)
    for k, v in seaweedfs.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    storage = open_storage(fleet.cfg.offload)
    client = seaweedfs.client()
    entries = [o["Key"] for o in client.list_objects_v2(
        Bucket=fleet.bucket, Prefix="caps/_index/manifest/")["Contents"]]  # fmt: skip

    # a real capture whose entry says ten times its size
    bigger = fleet.stored[5]  # web2, 12:10:04
    name = bigger.key.rsplit("/", 1)[1] + manifest.SUFFIX
    true_keys = [k for k in entries if k.endswith(name)]
    assert len(true_keys) == 2
    true_entry = manifest.parse_key(true_keys[0], "caps")
    assert true_entry is not None
    for k in true_keys:
        client.delete_object(Bucket=fleet.bucket, Key=k)
    manifest.write_entries(storage, replace(true_entry, size=true_entry.size * 10), "caps")

    # a 48 MB object whose entry says 80 bytes (web1 may write its own entries)
    opened = utc(2026, 11, 26, 12, 35, 3)
    blob_key = f"caps/web1/2026/11/26/web1-eth0-{opened:%Y%m%dT%H%M%SZ}-000099.pcap.zst"
    client.put_object(Bucket=fleet.bucket, Key=blob_key, Body=os.urandom(BLOB))
    manifest.write_entries(storage, manifest.Entry(
        key=blob_key, host="web1", iface="eth0", opened=opened,
        closed_ts=int(opened.timestamp()) + 60, first_ns=ns(opened) + NS,
        last_ns=ns(opened) + 50 * NS, packets=5, pcap_bytes=1000, size=80, linktype=1,
    ), "caps")  # fmt: skip

    caps = collect(select(storage, template=DEFAULT_KEY_TEMPLATE, prefix="caps", since=SINCE,
                          until=UNTIL))  # fmt: skip
    storage.close()
    assert {c.key for c in caps} >= {bigger.key, blob_key}
    need = disk_need(caps, JOBS)
    largest = max(c.size for c in caps)

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with PeakWatcher(out_dir) as watcher:
        p = subprocess.run(
            [sys.executable, "-m", "rollcap", "fetch", "--config", str(fleet.config),
             "--since", SINCE.isoformat(), "--until", UNTIL.isoformat(), "--jobs", str(JOBS),
             "-o", str(out_dir / "window.pcap")],
            cwd=REPO, env=fleet.env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    print(f"\ntemp-disk peak {watcher.peak:,} bytes ({watcher.samples} samples); bound "
          f"{need.total:,} = downloads {need.downloads:,} ({JOBS} x largest recorded "
          f"{largest:,} = {JOBS * largest:,}) + pieces {need.pieces:,} + output "
          f"{need.output:,}; the lying object holds {BLOB:,}")  # fmt: skip

    # both liars refused, one line each naming the object; the fetch went on
    assert p.returncode == 1, p.stderr
    refused = [line for line in p.stderr.splitlines() if "refused, not fetched" in line]
    assert len(refused) == 2, p.stderr
    assert any(blob_key in r and f"holds {BLOB:,} bytes, its entry records 80" in r
               for r in refused)  # fmt: skip
    assert any(bigger.key in r and f"its entry records {true_entry.size * 10:,}" in r
               for r in refused)  # fmt: skip
    assert "2 objects refused" in p.stderr
    expected = sorted(t for s in fleet.stored if s.key != bigger.key for t in s.stamps
                      if ns(SINCE) <= t < ns(UNTIL))  # fmt: skip
    assert len(expected) > 1500
    assert read_timestamps(out_dir / "window.pcap") == expected
    # the temp directory never held more than the bound, nor any of the lying object
    assert watcher.samples > 10 and watcher.peak > 0
    assert watcher.peak <= need.total < BLOB
    assert [p.name for p in out_dir.iterdir()] == ["window.pcap"]
