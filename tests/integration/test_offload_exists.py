"""The offload pipeline against SeaweedFS when the key is already taken: the
412 to the conditional write leads to the server's checksum, not rollcap's
metadata alone, and to the settings check, before a local file is deleted."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from rollcap.config import load_config
from rollcap.offload.pipeline import Pipeline
from rollcap.spool import Spool
from rollcap.storage import META, open_storage
from tests.integration.test_offload import T0, make_captures, new_bucket
from tests.support.seaweedfs import SeaweedFS

pytestmark = pytest.mark.integration


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    s = tmp_path / "spool"
    for d in ("work", "ready", "quarantine", "tmp", "state"):
        (s / d).mkdir(parents=True)
    return s


@pytest.fixture(autouse=True)
def creds(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in seaweedfs.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


def _pipeline(tmp_path: Path, spool: Path, seaweedfs: SeaweedFS, bucket: str,
              extra: str = "") -> Pipeline:  # fmt: skip
    cfg = tmp_path / "rollcap.toml"
    cfg.write_text(
        f'[capture]\nhostname = "testhost"\n[spool]\ndirectory = "{spool}"\n[offload]\n'
        f'destination = "s3://{bucket}/caps"\nendpoint_url = "{seaweedfs.endpoint}"\n'
        f'region = "us-east-1"\n{extra}'
    )
    c = load_config(cfg)
    return Pipeline(c, Spool.at(spool), open_storage(c.offload), {0, os.geteuid()},
                    threading.Event())  # fmt: skip


def _seen_puts(pipe: Pipeline) -> list[str]:
    """The If-None-Match header of each PutObject of a capture and each HEAD, in order."""
    seen: list[str] = []

    def put(params: dict[str, Any], **_kw: Any) -> None:
        if "/_index/" in params.get("url_path", ""):
            return  # the capture's manifest entries (rollcap.storage.manifest), not it
        seen.append("PUT " + params["headers"].get("If-None-Match", "-"))

    client = pipe.storage.client  # type: ignore[attr-defined]
    client.meta.events.register("before-call.s3.PutObject", put)
    client.meta.events.register("before-call.s3.HeadObject", lambda **_kw: seen.append("HEAD"))
    return seen


def test_an_object_stored_before_a_crash_counts_as_done_after_a_412(
    seaweedfs: SeaweedFS, all_pcap: Path, spool: Path, tmp_path: Path
) -> None:
    bucket = new_bucket(seaweedfs)
    [f] = make_captures(all_pcap, spool / "ready", [T0])
    keep = tmp_path / "copy"
    shutil.copy(f, keep)
    pipe = _pipeline(tmp_path, spool, seaweedfs, bucket)
    assert pipe.process(f.name).kind == "uploaded"
    shutil.copy(keep, f)  # the crash: stored, never deleted
    puts = _seen_puts(pipe)
    out = pipe.process(f.name)
    assert out.kind == "exists", out
    assert puts == ["PUT *", "HEAD"]  # the conditional PUT (412), then the checksum
    assert not f.exists()
    pipe.storage.close()


def test_our_metadata_on_other_bytes_is_a_damaged_upload_not_a_stored_file(
    seaweedfs: SeaweedFS, all_pcap: Path, spool: Path, tmp_path: Path
) -> None:
    """Same size, our sha256 in the metadata, other bytes: only the server's own
    checksum (HEAD with ChecksumMode=ENABLED) tells; the metadata alone lies."""
    bucket = new_bucket(seaweedfs)
    [f] = make_captures(all_pcap, spool / "ready", [T0])
    keep = tmp_path / "copy"
    shutil.copy(f, keep)
    pipe = _pipeline(tmp_path, spool, seaweedfs, bucket)
    out = pipe.process(f.name)
    assert out.kind == "uploaded"
    c = seaweedfs.client()
    head = c.head_object(Bucket=bucket, Key=out.key)
    good = c.get_object(Bucket=bucket, Key=out.key)["Body"].read()
    bad = bytes([good[0] ^ 0xFF]) + good[1:]
    c.delete_object(Bucket=bucket, Key=out.key)
    c.put_object(
        Bucket=bucket, Key=out.key, Body=bad, Metadata=head["Metadata"],
        ChecksumSHA256=base64.b64encode(hashlib.sha256(bad).digest()).decode(),
    )  # fmt: skip
    assert c.head_object(Bucket=bucket, Key=out.key)["Metadata"][META["sha256"]] == (
        hashlib.sha256(good).hexdigest()
    )
    shutil.copy(keep, f)
    out = pipe.process(f.name)
    pipe.storage.close()
    assert out.kind == "quarantined", out
    reason = (spool / "quarantine" / f"{f.name}.reason").read_text()
    assert "damaged upload" in reason and "server's checksum" in reason, reason
    assert (spool / "quarantine" / f.name).read_bytes() == keep.read_bytes()


def test_an_existing_object_without_the_configured_settings_keeps_the_file(
    seaweedfs: SeaweedFS, all_pcap: Path, spool: Path, tmp_path: Path
) -> None:
    bucket = new_bucket(seaweedfs)
    [f] = make_captures(all_pcap, spool / "ready", [T0])
    keep = tmp_path / "copy"
    shutil.copy(f, keep)
    plain = _pipeline(tmp_path, spool, seaweedfs, bucket)
    assert plain.process(f.name).kind == "uploaded"
    plain.storage.close()
    shutil.copy(keep, f)
    pipe = _pipeline(tmp_path, spool, seaweedfs, bucket, 'storage_class = "STANDARD_IA"\n')
    out = pipe.process(f.name)
    pipe.storage.close()
    assert out.kind == "failed", out
    assert "storage_class: asked for STANDARD_IA, the object has STANDARD" in out.message
    assert f.exists()


def test_settings_apply_through_the_pipeline(
    seaweedfs: SeaweedFS, all_pcap: Path, spool: Path, tmp_path: Path
) -> None:
    bucket = f"lk-{os.urandom(6).hex()}"
    seaweedfs.client().create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    [f] = make_captures(all_pcap, spool / "ready", [T0])
    pipe = _pipeline(tmp_path, spool, seaweedfs, bucket, (
        'storage_class = "GLACIER_IR"\nsse = "AES256"\nobject_lock_mode = "GOVERNANCE"\n'
        'object_lock_days = 1\ntags = { team = "netops" }\n'
    ))  # fmt: skip
    out = pipe.process(f.name)
    pipe.storage.close()
    assert out.kind == "uploaded", out
    c = seaweedfs.client()
    head = c.head_object(Bucket=bucket, Key=out.key)
    assert (head["StorageClass"], head["ServerSideEncryption"], head["ObjectLockMode"]) == (
        "GLACIER_IR", "AES256", "GOVERNANCE",
    )  # fmt: skip
    tag_set = c.get_object_tagging(Bucket=bucket, Key=out.key)["TagSet"]
    tags = {t["Key"]: t["Value"] for t in tag_set}
    assert tags == {"team": "netops", "host": "testhost", "iface": "veth0", "source": "rollcap"}
