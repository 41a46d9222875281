"""`rollcap list` at fleet scale, against SeaweedFS: manifests, fallbacks, coverage.

The offload's own pipeline stores 10-minute captures of four hosts (and
writes their manifest entries); a fifth host has only objects as 0.1.0
stored them (no entries). Then: one host's entries for one capture are
deleted (stored, but missing from its manifest), one host has a hole of 20
minutes, one captured only hours before the window. `rollcap list` must find
every capture of the window, name the host without a capture and the gap, in
text and JSON, and a host whose entries are complete must cost no HEAD.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rollcap.config.load import load_config
from rollcap.config.schema import DEFAULT_KEY_TEMPLATE, RollcapConfig
from rollcap.offload.pipeline import Pipeline
from rollcap.retrieve.select import collect, select
from rollcap.spool import Spool
from rollcap.spool.readyname import ReadyName
from rollcap.storage import manifest, open_storage
from tests.support.archive import NS, make_object, ns, read_frames, sha256, utc, write_pcap
from tests.support.seaweedfs import SeaweedFS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PERIOD = 600
DAY_START = utc(2026, 11, 26, 12, 0)
SINCE, UNTIL = utc(2026, 11, 26, 12, 5), utc(2026, 11, 26, 12, 35)


def _files(host: str) -> list[datetime]:
    """Open times of the host's files (10-minute rotation)."""
    if host == "idle1":
        return [utc(2026, 11, 26, 8, 0) + timedelta(seconds=PERIOD * i) for i in range(3)]
    starts = [DAY_START + timedelta(seconds=PERIOD * i + 3) for i in range(6)]
    if host == "gap1":
        return [s for s in starts if s.minute not in (20, 30)]  # a hole 12:20-12:40
    return starts


@dataclass
class Fleet:
    config: Path
    cfg: RollcapConfig
    env: dict[str, str]
    bucket: str
    keys: dict[str, list[tuple[str, datetime]]]  # host -> (key, open time)
    missing_entry: str  # key stored without its manifest entries


def _stamps(start: datetime) -> list[int]:
    """A packet every 20 s from 1 s after the open until 1 s before the next file."""
    return [ns(start) + NS + i * 20 * NS for i in range(30)]


@pytest.fixture(scope="module")
def fleet(seaweedfs: SeaweedFS, all_pcap: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:  # fmt: skip
    tmp = tmp_path_factory.mktemp("fleet")
    spool = Spool.at(tmp / "spool")
    for d in spool.all_dirs():
        d.mkdir(parents=True)
    bucket = f"fl-{uuid.uuid4().hex[:12]}"
    seaweedfs.client().create_bucket(Bucket=bucket)
    config = tmp / "rollcap.toml"
    config.write_text(
        f'[capture]\nrotate_seconds = {PERIOD}\n[spool]\ndirectory = "{spool.root}"\n'
        f'[offload]\ndestination = "s3://{bucket}/caps"\nendpoint_url = "{seaweedfs.endpoint}"\n'
        'region = "us-east-1"\n'
    )
    cfg = load_config(config)
    env = {**os.environ, "PYTHONPATH": str(REPO), **seaweedfs.env()}
    env.pop("CREDENTIALS_DIRECTORY", None)
    frames = read_frames(all_pcap)
    keys: dict[str, list[tuple[str, datetime]]] = {}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in seaweedfs.env().items():
            mp.setenv(k, v)
        storage = open_storage(cfg.offload)
        pipe = Pipeline(cfg, spool, storage, {0, os.geteuid()}, threading.Event())
        for h, host in enumerate(("web1", "gap1", "idle1", "crash1")):
            for i, start in enumerate(_files(host)):
                name = ReadyName(start, 100 * h + i, host, "eth0").format()
                recs = [(t, *frames[j]) for j, t in enumerate(_stamps(start))]
                path = write_pcap(spool.ready / name, recs)
                closed = start.timestamp() + PERIOD + 0.2  # tcpdump's last write
                os.utime(path, (closed, closed))
                out = pipe.process(name)
                assert out.kind == "uploaded", out
                keys.setdefault(host, []).append((out.key, start))
        # 0.1.0: the object and its metadata, no manifest entry
        for i, start in enumerate(_files("old1")):
            local, key, md = make_object(tmp, prefix="caps", host="old1", iface="eth0",
                                         start=start, seq=900 + i, stamps=_stamps(start),
                                         frames=frames)  # fmt: skip
            storage.put_file(local, key, size=local.stat().st_size, sha256=sha256(local),
                             metadata=md)  # fmt: skip
            keys.setdefault("old1", []).append((key, start))
        # crash1's 12:20 file: stored, its entries lost
        missing = keys["crash1"][2][0]
        client = seaweedfs.client()
        listed = client.list_objects_v2(Bucket=bucket, Prefix="caps/_index/manifest/")["Contents"]
        lost = [o["Key"] for o in listed if o["Key"].endswith(missing.rsplit("/", 1)[1]
                                                               + manifest.SUFFIX)]  # fmt: skip
        assert len(lost) == 2  # a 10-minute file is filed under two slots
        for k in lost:
            client.delete_object(Bucket=bucket, Key=k)
        storage.close()
    yield Fleet(config, cfg, env, bucket, keys, missing)


def _in_window(f: Fleet, host: str) -> list[str]:
    return [k for k, start in f.keys.get(host, [])
            if start < UNTIL and start + timedelta(seconds=PERIOD) > SINCE]  # fmt: skip


def _list(f: Fleet, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollcap", "list", "--config", str(f.config), "--since",
         SINCE.isoformat(), "--until", UNTIL.isoformat(), *args],
        cwd=REPO, env=f.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_offload_writes_manifest_entries_athena_can_read(fleet: Fleet, seaweedfs: SeaweedFS
                                                         ) -> None:  # fmt: skip
    client = seaweedfs.client()
    key, start = fleet.keys["web1"][0]
    prefix = manifest.host_prefix("caps", manifest.slot_of(start.timestamp()), "web1")
    got = client.list_objects_v2(Bucket=fleet.bucket, Prefix=prefix)["Contents"]
    mine = [o["Key"] for o in got if o["Key"].endswith(key.rsplit("/", 1)[1] + manifest.SUFFIX)]
    assert len(mine) == 1 and "/date=2026-11-26/hour=12/minute=00/web1~eth0~" in mine[0]
    body = client.get_object(Bucket=fleet.bucket, Key=mine[0])["Body"].read()
    rec = json.loads(gzip.decompress(body).decode())  # one NDJSON line
    assert rec["key"] == key and rec["host"] == "web1" and rec["packets"] == 30
    assert rec["opened_ns"] == int(start.timestamp()) * 1_000_000_000
    assert rec["closed_ns"] == (int(start.timestamp()) + PERIOD + 1) * 1_000_000_000
    entry = manifest.parse_key(mine[0], "caps")
    assert entry is not None and entry.key == key and entry.size > 0


def test_list_finds_everything_and_names_missing_hosts_and_gaps(fleet: Fleet) -> None:
    p = _list(fleet, "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    got = sorted(c["key"] for c in doc["captures"])
    expected = sorted(k for h in ("web1", "gap1", "crash1", "old1") for k in _in_window(fleet, h))
    assert got == expected
    assert fleet.missing_entry in got  # stored but missing from its manifest
    assert {k for k, _s in fleet.keys["old1"]} & set(got)  # 0.1.0 objects
    cov = doc["coverage"]
    assert cov["hosts_seen"] == 5 and cov["hosts_with_captures"] == 4
    assert cov["hosts_without_capture"] == ["idle1"]
    gaps = [(g["host"], g["start"], g["end"]) for g in cov["gaps"]]
    # gap1's 12:10 file ends at 12:20:04 (its last write); nothing after it in the window
    assert gaps == [("gap1", "2026-11-26T12:20:04Z", "2026-11-26T12:35:00Z")]
    assert cov["hosts_checked_by_listing"] >= 3  # old1, idle1, crash1 (its hole), gap1

    t = _list(fleet)
    assert t.returncode == 0, t.stderr
    lines = t.stdout.splitlines()
    assert lines[0].startswith("KEY")
    assert sum(1 for line in lines if line.startswith("caps/")) == len(expected)
    summary = [line for line in lines if line.startswith("#")]
    assert summary[0].endswith("5 hosts seen, 4 with captures, 1 without")
    assert "# no capture in the window: idle1" in summary
    assert any(s.startswith("# gap: gap1 eth0 2026-11-26T12:20:04Z") for s in summary)


def test_host_filter_and_a_host_not_in_the_bucket(fleet: Fleet) -> None:
    p = _list(fleet, "--json", "--host", "web1,nosuchhost")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert sorted(c["key"] for c in doc["captures"]) == sorted(_in_window(fleet, "web1"))
    assert doc["coverage"]["hosts_without_capture"] == ["nosuchhost"]
    assert doc["coverage"]["gaps"] == []

    p = _list(fleet, "--host", "idle1")
    assert p.returncode == 1  # nothing in the window: still says which host had nothing
    assert "# no capture in the window: idle1" in p.stdout
    assert "no captures between" in p.stderr


def test_complete_manifest_means_no_head_and_listings_per_slot(fleet: Fleet,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:  # fmt: skip
    for k, v in fleet.env.items():
        monkeypatch.setenv(k, v)
    storage = open_storage(fleet.cfg.offload)
    calls: Counter[str] = Counter()

    def hook(event_name: str, **_kw: Any) -> None:
        calls[event_name.rsplit(".", 1)[-1]] += 1

    storage.client.meta.events.register("before-call.s3", hook)  # type: ignore[attr-defined]
    try:
        sel = select(storage, template=DEFAULT_KEY_TEMPLATE, prefix="caps", since=SINCE,
                     until=UNTIL, hosts=["web1"])  # fmt: skip
        caps = collect(sel)
    finally:
        storage.close()
    assert sorted(c.key for c in caps) == sorted(_in_window(fleet, "web1"))
    assert all(c.packets == 30 and c.first_ts is not None for c in caps)
    # window 12:05-12:35: slots 12:00, 12:10, 12:20, 12:30; one listing each, nothing else
    assert calls == Counter({"ListObjectsV2": 4})
    assert sel.summary.checked == 0


def test_entries_lost_in_a_crash_are_written_by_the_retry(seaweedfs: SeaweedFS, all_pcap: Path,
                                                          tmp_path: Path) -> None:  # fmt: skip
    # the offload died after the upload, before the entries: the file is still
    # in ready/, and the next attempt (HEAD: "exists") writes them
    spool = Spool.at(tmp_path / "spool")
    for d in spool.all_dirs():
        d.mkdir(parents=True)
    bucket = f"fc-{uuid.uuid4().hex[:12]}"
    client = seaweedfs.client()
    client.create_bucket(Bucket=bucket)
    config = tmp_path / "rollcap.toml"
    config.write_text(
        f'[spool]\ndirectory = "{spool.root}"\n[offload]\ndestination = "s3://{bucket}/caps"\n'
        f'endpoint_url = "{seaweedfs.endpoint}"\nregion = "us-east-1"\n'
    )
    cfg = load_config(config)
    frames = read_frames(all_pcap)
    start = DAY_START
    name = ReadyName(start, 1, "web9", "eth0").format()
    recs = [(t, *frames[j]) for j, t in enumerate(_stamps(start))]
    with pytest.MonkeyPatch.context() as mp:
        for k, v in seaweedfs.env().items():
            mp.setenv(k, v)
        storage = open_storage(cfg.offload)
        pipe = Pipeline(cfg, spool, storage, {0, os.geteuid()}, threading.Event())
        write_pcap(spool.ready / name, recs)
        first = pipe.process(name)
        assert first.kind == "uploaded", first
        entries = [
            o["Key"]
            for o in client.list_objects_v2(
                Bucket=bucket, Prefix="caps/_index/manifest/"
            )["Contents"]
        ]
        assert len(entries) == 1  # 12:00:01..12:09:41, one slot
        client.delete_object(Bucket=bucket, Key=entries[0])
        write_pcap(spool.ready / name, recs)  # as it was before the delete
        again = pipe.process(name)
        storage.close()
    assert again.kind == "exists", again
    got = client.list_objects_v2(Bucket=bucket, Prefix="caps/_index/manifest/")["Contents"]
    assert [o["Key"] for o in got] == entries
    assert not (spool.ready / name).exists()
