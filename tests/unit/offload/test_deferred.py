"""DeferredStorage answers what the pipeline asks before the real storage is open."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollcap.config.schema import OffloadConfig
from rollcap.offload.deferred import DeferredStorage
from rollcap.storage import open_storage
from rollcap.storage.base import Storage


@pytest.mark.parametrize("kind", ["s3", "file"])
def test_it_writes_manifests_when_the_real_storage_does(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The running offload wraps its storage in DeferredStorage: a False here
    (Storage's default) meant the daemon never wrote a manifest entry."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    dest = "s3://bucket1/caps" if kind == "s3" else f"file://{tmp_path}/archive"
    s3 = {"endpoint_url": "http://127.0.0.1:9", "region": "us-east-1"} if kind == "s3" else {}
    cfg = OffloadConfig(destination=dest, **s3)
    real = open_storage(cfg)
    deferred = DeferredStorage(cfg)
    try:
        assert real.manifests and deferred.manifests == real.manifests
        assert deferred.key_prefix == real.key_prefix
        # and it passes the small-object write through (not Storage's refusal)
        assert type(deferred).put_bytes is not Storage.put_bytes
    finally:
        deferred.close()
        real.close()


def test_put_bytes_reaches_the_real_storage(tmp_path: Path) -> None:
    cfg = OffloadConfig(destination=f"file://{tmp_path}/archive")
    deferred = DeferredStorage(cfg)
    key = (
        "_index/manifest/v1/date=2026-11-26/hour=12/minute=00/"
        "h1~eth0~20261126T120000Z~~~1795694460~0~24~0~1~~none.ndjson.gz"
    )
    deferred.put_bytes(key, b"x", "application/x-ndjson")
    deferred.close()
    assert (tmp_path / "archive" / key).read_bytes() == b"x"
