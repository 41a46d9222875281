"""A bucket in SeaweedFS filled by the offload's own pipeline: real spool files
(ready/ names), compressed, uploaded, verified, and their manifest entries
written by the pipeline itself (Pipeline.process with the real S3Storage).

Not through the `rollcap offload` daemon: its DeferredStorage does not pass
manifest writes on yet (being fixed on its own branch), so the daemon stores
captures without entries."""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from rollcap.config.load import load_config
from rollcap.config.schema import RollcapConfig
from rollcap.offload.pipeline import Pipeline
from rollcap.spool import Spool
from rollcap.spool.readyname import ReadyName
from rollcap.storage import open_storage
from tests.support.archive import write_pcap
from tests.support.seaweedfs import SeaweedFS

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Stored:
    key: str
    host: str
    start: datetime
    stamps: list[int]  # packet times (ns), as written


@dataclass
class Offloaded:
    config: Path
    cfg: RollcapConfig
    env: dict[str, str]  # for `rollcap` subprocesses
    bucket: str
    prefix: str
    stored: list[Stored] = field(default_factory=list)


def offload(seaweedfs: SeaweedFS, tmp: Path, files: list[tuple[str, datetime, list[int]]],
            frames: list[tuple[bytes, int]], *, rotate: int = 600,
            prefix: str = "caps") -> Offloaded:  # fmt: skip
    """Store each (host, open time, packet times) as the offload would, each file
    closed (its mtime, tcpdump's last write) rotate seconds + 0.2 s after it opened."""
    spool = Spool.at(tmp / "spool")
    for d in spool.all_dirs():
        d.mkdir(parents=True)
    bucket = f"of-{uuid.uuid4().hex[:12]}"
    seaweedfs.client().create_bucket(Bucket=bucket)
    config = tmp / "rollcap.toml"
    config.write_text(
        f'[capture]\nrotate_seconds = {rotate}\n[spool]\ndirectory = "{spool.root}"\n'
        f'[offload]\ndestination = "s3://{bucket}/{prefix}"\n'
        f'endpoint_url = "{seaweedfs.endpoint}"\nregion = "us-east-1"\n'
    )
    cfg = load_config(config)
    env = {**os.environ, "PYTHONPATH": str(REPO), **seaweedfs.env()}
    env.pop("CREDENTIALS_DIRECTORY", None)
    out = Offloaded(config, cfg, env, bucket, prefix)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in seaweedfs.env().items():
            mp.setenv(k, v)
        mp.delenv("CREDENTIALS_DIRECTORY", raising=False)
        storage = open_storage(cfg.offload)
        pipe = Pipeline(cfg, spool, storage, {0, os.geteuid()}, threading.Event())
        try:
            for seq, (host, start, stamps) in enumerate(files):
                name = ReadyName(start, seq, host, "eth0").format()
                recs = [(t, *frames[(seq * 977 + j) % len(frames)]) for j, t in enumerate(stamps)]
                path = write_pcap(spool.ready / name, recs)
                closed = start.timestamp() + rotate + 0.2
                os.utime(path, (closed, closed))
                result = pipe.process(name)
                assert result.kind == "uploaded", result
                out.stored.append(Stored(result.key, host, start, stamps))
        finally:
            storage.close()
    return out
