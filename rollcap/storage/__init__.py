"""Destinations for finished captures: S3 (and compatibles) or a local archive."""

from __future__ import annotations

from rollcap.config.schema import OffloadConfig
from rollcap.storage.base import (
    META,
    ObjectExistsError,
    ObjectInfo,
    Storage,
    StorageError,
    VerificationError,
)

__all__ = [
    "META",
    "ObjectExistsError",
    "ObjectInfo",
    "Storage",
    "StorageError",
    "VerificationError",
    "open_storage",
]


def open_storage(offload_cfg: OffloadConfig, host: str = "") -> Storage:
    """The Storage for ``offload.destination`` (s3:// or file://); ``host``:
    the one host whose captures it writes (the offload), if so."""
    if offload_cfg.is_s3:
        from rollcap.storage.s3.storage import S3Storage  # boto3 is slow to import

        return S3Storage(offload_cfg, host)
    from rollcap.storage.local import LocalStorage

    return LocalStorage(offload_cfg)
