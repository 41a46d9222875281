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
from datetime import timedelta
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
