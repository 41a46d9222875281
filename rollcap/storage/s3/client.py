"""The boto3 client rollcap uses, the credentials it finds, and what its errors mean.

Credentials: the standard AWS chain (environment, shared files, instance
role). Under systemd, ``LoadCredential=s3-credentials:rollcap-s3-credentials``
(from /etc/credstore/) exposes an AWS shared-credentials INI file (profile
[default]) at ``$CREDENTIALS_DIRECTORY/s3-credentials``; it is used when present.
"""

from __future__ import annotations

import os
from concurrent.futures import CancelledError
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import s3transfer.exceptions as s3x
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from botocore.utils import parse_timestamp
from s3transfer.exceptions import (
    RetriesExceededError,
    S3UploadFailedError,
    TransferNotDoneError,
)

from rollcap.config.schema import OffloadConfig
from rollcap.storage.base import StorageError

CREDENTIAL_NAME = "s3-credentials"
# Error codes that no retry will fix without an operator.
PERMANENT_CODES = {
    "AccessDenied",
    "AllAccessDisabled",
    "AccountProblem",
    "ExpiredToken",
    "InvalidAccessKeyId",
    "InvalidBucketName",
    "InvalidToken",
    "NoCredentials",
    "NoSuchBucket",
    "SignatureDoesNotMatch",
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
    # a setting the bucket cannot take (Object Lock on a bucket without it)
    "InvalidRequest",
    "KMS.NotFoundException",
    "KMS.DisabledException",
    "KMS.KMSInvalidStateException",
}
# What talking to S3 can raise (a bug raises anything else, with its traceback).
# CancelledError: close() cancelled the transfer.
# S3DownloadFailedError is newer than Debian 13's s3transfer (0.11), whose
# failed downloads raise RetriesExceededError or botocore's errors instead.
_DOWNLOAD_FAILED: tuple[type[Exception], ...] = tuple(
    e for e in (getattr(s3x, "S3DownloadFailedError", None),) if e is not None
)
S3_ERRORS: tuple[type[BaseException], ...] = (
    BotoCoreError, ClientError, OSError, CancelledError, RetriesExceededError,
    S3UploadFailedError, TransferNotDoneError, *_DOWNLOAD_FAILED,
)  # fmt: skip
# The server recomputed a checksum we sent and it did not match the bytes.
DIGEST_CODES = {"BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch"}


def systemd_credentials_file(environ: dict[str, str] | None = None) -> Path | None:
    """``$CREDENTIALS_DIRECTORY/s3-credentials`` if systemd passed one (LoadCredential=)."""
    env = os.environ if environ is None else environ
    d = env.get("CREDENTIALS_DIRECTORY")
    if not d:
        return None
    p = Path(d) / CREDENTIAL_NAME
    return p if p.is_file() else None


def _timestamp(value: str) -> Any:
    """botocore's timestamp parser, with a fast path for listings' ISO 8601."""
    try:
        return datetime.fromisoformat(value)
    except (ValueError, TypeError):
        return parse_timestamp(value)


def make_client(cfg: OffloadConfig) -> tuple[botocore.session.Session, Any]:
    """The botocore session and S3 client for cfg (Any: the S3 stubs are optional)."""
    session = botocore.session.get_session()
    # Listings carry a LastModified per key, which botocore parses with
    # dateutil: a third of the client's CPU for a listing. ISO 8601 first.
    session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=_timestamp
    )
    cred = systemd_credentials_file()
    if cred is not None:
        session.set_config_variable("credentials_file", str(cred))
        session.set_config_variable("profile", "default")
    return session, boto3.Session(botocore_session=session).client(
        "s3",
        endpoint_url=cfg.endpoint_url or None,
        region_name=cfg.region or None,
        config=Config(
            request_checksum_calculation=cfg.s3_checksums,
            response_checksum_validation=cfg.s3_checksums,
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=10,
            read_timeout=120,
            # files in parallel, each with parts in parallel
            max_pool_connections=cfg.concurrency * cfg.concurrency + 4,
            s3={
                # Every body we send carries an x-amz-checksum-sha256 the server
                # verifies; signing the payload as well (botocore does over
                # plain http) would hash every byte a second time.
                "payload_signing_enabled": False,
                **({"addressing_style": "path"} if cfg.endpoint_url else {}),
            },
        ),
    )


def status_of(e: ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def code_of(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code") or status_of(e))


def s3_error(e: BaseException, what: str) -> StorageError:
    if isinstance(e, ClientError):
        code = code_of(e)
        msg = e.response.get("Error", {}).get("Message") or code
        return StorageError(f"{what}: {code}: {msg}", code=code, permanent=code in PERMANENT_CODES)
    if isinstance(e, NoCredentialsError):
        return StorageError(f"{what}: no AWS credentials found", code="NoCredentials",
                            permanent=True)  # fmt: skip
    if isinstance(e, CancelledError):
        return StorageError(f"{what}: cancelled", code="Cancelled")
    return StorageError(f"{what}: {e}", code=type(e).__name__)
