"""What the S3 settings and their verification cost per upload.

Small files (where per-request overhead dominates) go to one SeaweedFS, in
alternating rounds: plain (conditional PUT + HEAD) against every setting on
an Object Lock bucket (storage class, SSE-S3, tags, GOVERNANCE retention:
conditional PUT + HEAD + GetObjectTagging). Prints the ratio of seconds per
upload, settings / plain, and the requests each needed.

    python3 -m bench.s3settings [--files 100] [--kib 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import RESULTS, SeaweedFS
from rollcap.config.schema import OffloadConfig
from rollcap.storage.base import META
from rollcap.storage.s3.storage import S3Storage

SETTINGS: dict[str, Any] = {
    "storage_class": "STANDARD_IA",
    "sse": "AES256",
    "tags": {"team": "netops"},
    "object_lock_mode": "GOVERNANCE",
    "object_lock_days": 1,
}


def _round(
    w: SeaweedFS, bucket: str, files: list[Path], shas: list[str], **kw: Any
) -> tuple[float, int]:
    store = S3Storage(
        OffloadConfig(
            destination=f"s3://{bucket}/caps",
            endpoint_url=w.endpoint,
            region="us-east-1",
            **kw,
        )
    )
    calls = [0]
    store.client.meta.events.register(
        "before-send.s3", lambda **_k: calls.__setitem__(0, calls[0] + 1)
    )
    meta = {META["host"]: "h1", META["iface"]: "eth0"}
    run = uuid.uuid4().hex[:8]
    t0 = time.perf_counter()
    for i, (f, sha) in enumerate(zip(files, shas, strict=True)):
        store.put_file(
            f, f"caps/h1/{run}-{i:06d}.pcap.zst", size=f.stat().st_size, sha256=sha, metadata=meta
        )
    seconds = time.perf_counter() - t0
    store.close()
    return seconds / len(files), calls[0] // len(files)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--kib", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    w = SeaweedFS().start()
    try:
        for k, v in w.env().items():
            os.environ[k] = v
        c = w.client()
        plain, locked = f"bp-{uuid.uuid4().hex[:8]}", f"bl-{uuid.uuid4().hex[:8]}"
        c.create_bucket(Bucket=plain)
        c.create_bucket(Bucket=locked, ObjectLockEnabledForBucket=True)
        with tempfile.TemporaryDirectory() as d:
            files = []
            for i in range(a.files):
                p = Path(d) / f"f{i}"
                p.write_bytes(os.urandom(a.kib * 1024))
                files.append(p)
            shas = [hashlib.sha256(p.read_bytes()).hexdigest() for p in files]
            base, full = [], []
            for _ in range(a.rounds):
                base.append(_round(w, plain, files, shas, rollcap_tags=False))
                full.append(_round(w, locked, files, shas, **SETTINGS))
        b = min(s for s, _ in base)
        f = min(s for s, _ in full)
        result = {
            "files": a.files,
            "kib": a.kib,
            "rounds": a.rounds,
            "plain_ms_per_upload": round(b * 1000, 2),
            "plain_requests": base[0][1],
            "settings_ms_per_upload": round(f * 1000, 2),
            "settings_requests": full[0][1],
            "ratio": round(f / b, 3),
        }
        print(json.dumps(result, indent=2))
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "s3settings.json").write_text(json.dumps(result, indent=2) + "\n")
    finally:
        w.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
