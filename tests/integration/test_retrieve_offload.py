"""What the offload stores, fetch gets back: the offload's own pipeline uploads real
capture files (spool ready/ names, its compression, keys and metadata), then
`rollcap fetch` must return exactly the packets of the window, across a file
that runs past midnight and across hosts, for S3 and file:// alike."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rollcap.config.load import load_config
from rollcap.offload.pipeline import Pipeline
from rollcap.spool import Spool
from rollcap.spool.readyname import ReadyName
from rollcap.storage import open_storage
from tests.support.archive import NS, ns, read_frames, read_timestamps, utc, write_pcap
from tests.support.net import count_packets
from tests.support.seaweedfs import SeaweedFS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("dest", ["s3", "file"])
def test_offloaded_files_fetch_back_exactly(
    dest: str, seaweedfs: SeaweedFS, all_pcap: Path, tmp_path: Path
) -> None:
    spool = Spool.at(tmp_path / "spool")
    for d in spool.all_dirs():
        d.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("CREDENTIALS_DIRECTORY", None)
    if dest == "s3":
        bucket = f"ro-{uuid.uuid4().hex[:12]}"
        seaweedfs.client().create_bucket(Bucket=bucket)
        offload = (f'destination = "s3://{bucket}/fleet"\nendpoint_url = "{seaweedfs.endpoint}"\n'
                   'region = "us-east-1"\n')  # fmt: skip
        env.update(seaweedfs.env())
    else:
        offload = f'destination = "file://{tmp_path / "archive"}"\n'
    config = tmp_path / "rollcap.toml"
    config.write_text(f'[spool]\ndirectory = "{spool.root}"\n[offload]\n{offload}')
    cfg = load_config(config)

    frames = read_frames(all_pcap)
    stamps: list[int] = []
    names = []
    # two hosts, 10-minute files from 23:40; each file's packets every 1.5 s
    for h, host in enumerate(("edge-1", "edge-2")):
        for i in range(4):
            start = utc(2026, 11, 25, 23, 40) + timedelta(minutes=10 * i, seconds=h)
            ts = [ns(start) + NS // 2 + h * 1000 + j * 1_500_000_000 for j in range(400)]
            name = ReadyName(start, 10 * h + i, host, "eth0").format()
            write_pcap(spool.ready / name, [(t, *frames[(h * 4 + i) * 400 + j])
                                            for j, t in enumerate(ts)])  # fmt: skip
            stamps += ts
            names.append(name)

    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        storage = open_storage(cfg.offload)
        pipe = Pipeline(cfg, spool, storage, {0, os.geteuid()}, threading.Event())
        for name in names:
            out = pipe.process(name)
            assert out.kind == "uploaded", out
        storage.close()
    assert list(spool.ready.iterdir()) == []  # the offload verified and deleted them

    since, until = utc(2026, 11, 25, 23, 57, 1), utc(2026, 11, 26, 0, 13, 2, 250000)
    out_file = tmp_path / "window.pcap"
    p = subprocess.run(
        [sys.executable, "-m", "rollcap", "fetch", "--config", str(config), "--since",
         since.isoformat(), "--until", until.isoformat(), "-o", str(out_file)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    expected = sorted(t for t in stamps if ns(since) <= t < ns(until))
    assert len(expected) > 1000
    assert read_timestamps(out_file) == expected
    assert count_packets(out_file) == len(expected)


def test_fetch_as_tcpdump_is_typed(seaweedfs: SeaweedFS, all_pcap: Path, tmp_path: Path) -> None:
    """`rollcap fetch --since 10m -H edge-1 -i eth0 -w out.pcap ip and tcp`, against
    real SeaweedFS, of files the offload's own pipeline stored minutes ago: only that
    host's interface, only the last 10 minutes, only what tcpdump's filter keeps."""
    spool = Spool.at(tmp_path / "spool")
    for d in spool.all_dirs():
        d.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), **seaweedfs.env()}
    env.pop("CREDENTIALS_DIRECTORY", None)
    bucket = f"ro-{uuid.uuid4().hex[:12]}"
    seaweedfs.client().create_bucket(Bucket=bucket)
    config = tmp_path / "rollcap.toml"
    config.write_text(
        f'[spool]\ndirectory = "{spool.root}"\n[offload]\ndestination = "s3://{bucket}/fleet"\n'
        f'endpoint_url = "{seaweedfs.endpoint}"\nregion = "us-east-1"\n'
    )
    cfg = load_config(config)
    frames = read_frames(all_pcap)
    now = datetime.now(UTC).replace(microsecond=0)
    wanted: list[tuple[int, bytes, int]] = []
    names = []
    # (host, iface, minutes ago): only the first is asked for
    for seq, (host, iface, ago) in enumerate(
        [
            ("edge-1", "eth0", 9),
            ("edge-1", "eth1", 9),
            ("edge-2", "eth0", 9),
            ("edge-1", "eth0", 30),
        ]
    ):
        start = now - timedelta(minutes=ago)
        # 200 packets 1.5 s apart, all older than 4 minutes when fetched; frames from
        # the whole test set (some TCP/IP, most not)
        recs = [
            (ns(start) + NS // 2 + j * 1_500_000_000, *frames[(j * 26 + seq) % len(frames)])
            for j in range(200)
        ]
        name = ReadyName(start, seq, host, iface).format()
        write_pcap(spool.ready / name, recs)
        names.append(name)
        if seq == 0:
            wanted = recs
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        storage = open_storage(cfg.offload)
        pipe = Pipeline(cfg, spool, storage, {0, os.geteuid()}, threading.Event())
        for name in names:
            assert pipe.process(name).kind == "uploaded"
        storage.close()
    # what tcpdump's own filter keeps of the wanted packets
    write_pcap(tmp_path / "wanted.pcap", wanted)
    subprocess.run(["tcpdump", "-r", str(tmp_path / "wanted.pcap"), "-w",
                    str(tmp_path / "expected.pcap"), "ip", "and", "tcp"],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    expected = read_timestamps(tmp_path / "expected.pcap")
    assert 0 < len(expected) < len(wanted)  # the filter keeps some, not all

    out_file = tmp_path / "out.pcap"
    p = subprocess.run(
        [sys.executable, "-m", "rollcap", "fetch", "--config", str(config), "--since", "10m",
         "-H", "edge-1", "-i", "eth0", "-w", str(out_file), "ip", "and", "tcp"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert read_timestamps(out_file) == expected
    assert count_packets(out_file) == len(expected)
