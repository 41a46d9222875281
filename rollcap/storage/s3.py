"""S3 and S3-compatible servers (AWS, SeaweedFS, MinIO, Ceph) via boto3.

End-to-end verification (checked against SeaweedFS 4.x, see tests):
- a file below the multipart threshold goes up in one PutObject carrying
  ``x-amz-checksum-sha256`` = our SHA-256 of the compressed bytes: the server
  recomputes it and refuses a mismatch (BadDigest), so nothing corrupted ever
  becomes visible;
- a larger file goes up in parts (s3transfer, classic client) with
  ``ChecksumAlgorithm=SHA256``: botocore hashes each part, the server verifies
  each part and stores the COMPOSITE checksum (SHA-256 of the part digests,
  "-N"); after completion we compare what HEAD returns with the composite of
  the part digests the compressor computed as it wrote the file (or, without
  them, of the file read again);
- in both cases HEAD must then show the right size and our whole-object
  SHA-256 in the ``rollcap-sha256`` metadata before the caller deletes anything.
A server that returns no checksum at HEAD is checked by size and metadata only.

boto3 >= 1.36 adds CRC checksums to every request by default, which several
S3-compatible servers reject: ``offload.s3_checksums = "when_required"`` (the
default) turns that off; our explicit SHA-256 is sent either way.

Credentials: the standard AWS chain (environment, shared files, instance
role). Under systemd, ``LoadCredential=s3-credentials:rollcap-s3-credentials``
(from /etc/credstore/) exposes an AWS shared-credentials INI file (profile [default]) at
``$CREDENTIALS_DIRECTORY/s3-credentials``; it is used when present.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.session
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from botocore.utils import parse_timestamp
from s3transfer.subscribers import BaseSubscriber
from s3transfer.utils import ChunksizeAdjuster

from rollcap.config.schema import OffloadConfig
from rollcap.storage.base import (
    META,
    ObjectInfo,
    Storage,
    StorageError,
    VerificationError,
    describe_for,
    part_size_for,
)

log = logging.getLogger(__name__)

MiB = 1024 * 1024
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
}
# The server recomputed a checksum we sent and it did not match the bytes.
DIGEST_CODES = {"BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch"}
_CONTENT_TYPES = {
    ".pcap.zst": "application/zstd",
    ".pcap.gz": "application/gzip",
    ".pcap": "application/vnd.tcpdump.pcap",
}


def systemd_credentials_file(environ: dict[str, str] | None = None) -> Path | None:
    """``$CREDENTIALS_DIRECTORY/s3-credentials`` if systemd passed one (LoadCredential=)."""
    env = os.environ if environ is None else environ
    d = env.get("CREDENTIALS_DIRECTORY")
    if not d:
        return None
    p = Path(d) / CREDENTIAL_NAME
    return p if p.is_file() else None


def composite_sha256(path: Path, part_size: int) -> tuple[str, str]:
    """S3's COMPOSITE checksum of a multipart object with parts of part_size
    (base64 of the SHA-256 of the concatenated part digests, "-<parts>") and, from
    the same read, the hex SHA-256 of the whole file."""
    outer = hashlib.sha256()
    whole = hashlib.sha256()
    parts = 0
    with path.open("rb", buffering=0) as f:
        while True:
            h = hashlib.sha256()
            left = part_size
            while left:
                b = f.read(min(left, 4 * MiB))
                if not b:
                    break
                h.update(b)
                whole.update(b)
                left -= len(b)
            if left == part_size:
                break
            outer.update(h.digest())
            parts += 1
            if left:
                break
    return f"{base64.b64encode(outer.digest()).decode()}-{parts}", whole.hexdigest()


def composite_from_parts(digests: Sequence[bytes]) -> str:
    """The COMPOSITE checksum from part digests computed elsewhere."""
    outer = hashlib.sha256(b"".join(digests)).digest()
    return f"{base64.b64encode(outer).decode()}-{len(digests)}"


def _timestamp(value: str) -> Any:
    """botocore's timestamp parser, with a fast path for listings' ISO 8601."""
    try:
        return datetime.fromisoformat(value)
    except (ValueError, TypeError):
        return parse_timestamp(value)


def _error(e: Exception, what: str) -> StorageError:
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        code = str(err.get("Code") or e.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
        msg = err.get("Message") or code
        return StorageError(f"{what}: {code}: {msg}", code=code, permanent=code in PERMANENT_CODES)
    if isinstance(e, NoCredentialsError):
        return StorageError(f"{what}: no AWS credentials found", code="NoCredentials",
                            permanent=True)  # fmt: skip
    if isinstance(e, BotoCoreError):
        return StorageError(f"{what}: {e}", code=type(e).__name__)
    return StorageError(f"{what}: {e}", code=type(e).__name__)


class _Progress(BaseSubscriber):
    def __init__(self, cb: Callable[[int], None]) -> None:
        self.cb = cb

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self.cb(bytes_transferred)


class S3Storage(Storage):
    manifests = True

    def __init__(self, cfg: OffloadConfig) -> None:
        self.bucket = cfg.bucket
        self.key_prefix = cfg.prefix
        self.endpoint = cfg.endpoint_url or "AWS"
        self.concurrency = cfg.concurrency
        self.part_size: int = part_size_for(cfg) or 5 * MiB
        self._describe = describe_for(cfg)
        self.threshold = max(8 * MiB, self.part_size)
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
        # Any: the S3 stubs (mypy-boto3-s3) are optional
        self.client: Any = boto3.Session(botocore_session=session).client(
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
        # Part digests the compressor computed, by key: sent as each part's
        # ChecksumSHA256 so botocore does not hash the parts again.
        self._part_digests: dict[str, Sequence[bytes]] = {}
        self.client.meta.events.register(
            "before-parameter-build.s3.UploadPart", self._part_checksum
        )
        self.transfer_config = TransferConfig(
            multipart_threshold=self.threshold,
            multipart_chunksize=self.part_size,
            max_concurrency=cfg.concurrency * cfg.concurrency,
            use_threads=True,
            preferred_transfer_client="classic",
        )
        self._manager = create_transfer_manager(self.client, self.transfer_config)
        self._futures: set[Any] = set()  # uploads in progress, for close()
        self._futures_lock = threading.Lock()

    def describe(self) -> str:
        return self._describe

    def _part_checksum(self, params: dict[str, Any], **_kw: Any) -> None:
        digests = self._part_digests.get(params.get("Key", ""))
        n = params.get("PartNumber", 0)
        if digests and 1 <= n <= len(digests) and "ChecksumSHA256" not in params:
            params["ChecksumSHA256"] = base64.b64encode(digests[n - 1]).decode()

    def _what(self, op: str, key: str = "") -> str:
        target = f"s3://{self.bucket}/{key}" if key else f"bucket {self.bucket}"
        return f"{op} {target} at {self.endpoint}"

    def check(self) -> None:
        # HEAD bucket: SeaweedFS creates a bucket on PUT, so this is where a
        # missing bucket shows (404). HEAD has no body: map the status to a code.
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as e:
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = str(e.response.get("Error", {}).get("Code", status))
            if status == 404 or code in ("404", "NoSuchBucket"):
                raise StorageError(
                    f"{self._what('HEAD')}: NoSuchBucket: the bucket does not exist",
                    code="NoSuchBucket", permanent=True,
                ) from None  # fmt: skip
            if status == 403 or code == "403":
                # find the precise reason (bad key, bad secret, policy) with a GET
                try:
                    self.client.list_objects_v2(
                        Bucket=self.bucket, Prefix=self.key_prefix, MaxKeys=1
                    )
                except Exception as e2:
                    raise _error(e2, self._what("LIST")) from None
                raise StorageError(f"{self._what('HEAD')}: AccessDenied", code="AccessDenied",
                                   permanent=True) from None  # fmt: skip
            raise _error(e, self._what("HEAD")) from None
        except Exception as e:
            raise _error(e, self._what("HEAD")) from None

    def put_file(self, local: Path, key: str, *, size: int, sha256: str,
                 metadata: dict[str, str],
                 progress: Callable[[int], None] | None = None,
                 part_sha256: Sequence[bytes] = ()) -> ObjectInfo:  # fmt: skip
        meta = {**metadata, META["sha256"]: sha256}
        extra: dict[str, Any] = {"Metadata": meta, "ContentType": self._content_type(key)}
        multipart = size >= self.threshold
        part = ChunksizeAdjuster().adjust_chunksize(self.part_size, size)
        known_parts = part == self.part_size and len(part_sha256) == -(-size // part)
        if multipart:
            extra["ChecksumAlgorithm"] = "SHA256"  # per part, verified by the server
            if known_parts:
                self._part_digests[key] = part_sha256
        else:
            extra["ChecksumSHA256"] = base64.b64encode(bytes.fromhex(sha256)).decode()
        try:
            subscribers = [_Progress(progress)] if progress is not None else None
            fut = self._manager.upload(
                str(local), self.bucket, key, extra_args=extra, subscribers=subscribers
            )
            with self._futures_lock:
                self._futures.add(fut)
            try:
                fut.result()
            finally:
                with self._futures_lock:
                    self._futures.discard(fut)
                self._part_digests.pop(key, None)
        except Exception as e:
            err = _error(e, self._what("PUT", key))
            if err.code in DIGEST_CODES:  # the file, not the destination: a file-level retry
                bad = VerificationError(str(err))
                bad.code = err.code
                raise bad from None
            raise err from None
        info, checksum = self._head(key, checksum=True)
        if info is None:
            raise VerificationError(f"{self._what('HEAD', key)}: missing after upload")
        if info.size != size:
            raise VerificationError(f"{self._what('HEAD', key)}: size {info.size}, expected {size}")
        if info.sha256 != sha256:
            raise VerificationError(
                f"{self._what('HEAD', key)}: metadata sha256 {info.sha256!r}, expected {sha256}"
            )
        if multipart:
            # The server verified each part against botocore's digest; check
            # that those parts are our file, and that our file is `sha256`.
            if known_parts:
                expected = composite_from_parts(part_sha256)  # hashed as it was written
            else:
                expected, whole = composite_sha256(local, part)
                if whole != sha256:
                    raise VerificationError(f"{local}: SHA-256 {whole}, expected {sha256}")
        else:
            expected = extra["ChecksumSHA256"]
        if checksum and checksum != expected:
            raise VerificationError(
                f"{self._what('HEAD', key)}: server checksum {checksum}, expected {expected}"
            )
        return info

    @staticmethod
    def _content_type(key: str) -> str:
        for ext, ctype in _CONTENT_TYPES.items():
            if key.endswith(ext):
                return ctype
        return "application/octet-stream"

    def _head(self, key: str, checksum: bool = False) -> tuple[ObjectInfo | None, str]:
        kw: dict[str, Any] = {"ChecksumMode": "ENABLED"} if checksum else {}
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=key, **kw)
        except ClientError as e:
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404:
                return None, ""
            if status == 403:  # HEAD has no body to say why
                raise StorageError(
                    f"{self._what('HEAD', key)}: AccessDenied: 403 Forbidden (wrong "
                    "credentials, or no s3:GetObject permission)",
                    code="AccessDenied", permanent=True,
                ) from None  # fmt: skip
            raise _error(e, self._what("HEAD", key)) from None
        except Exception as e:
            raise _error(e, self._what("HEAD", key)) from None
        info = ObjectInfo(key, int(r["ContentLength"]), dict(r.get("Metadata", {})))
        return info, str(r.get("ChecksumSHA256") or "")

    def head(self, key: str) -> ObjectInfo | None:
        return self._head(key)[0]

    def list(self, prefix: str, with_metadata: bool = False) -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                objs = [ObjectInfo(o["Key"], int(o["Size"])) for o in page.get("Contents", [])]
                if with_metadata and objs:
                    # user metadata is not in listings: HEAD each, in parallel
                    with ThreadPoolExecutor(self.concurrency * 2) as pool:
                        heads = list(pool.map(lambda o: self.head(o.key), objs))
                    objs = [h for h in heads if h is not None]
                yield from objs
        except StorageError:
            raise
        except Exception as e:
            raise _error(e, self._what("LIST", prefix)) from None

    def list_after(self, prefix: str, start_after: str, page_size: int = 1000
                   ) -> Iterator[ObjectInfo]:  # fmt: skip
        paginator = self.client.get_paginator("list_objects_v2")
        kw: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after:
            kw["StartAfter"] = start_after
        try:
            pages = paginator.paginate(
                **kw, PaginationConfig={"PageSize": max(1, min(1000, page_size))}
            )
            for page in pages:
                for o in page.get("Contents", []):
                    yield ObjectInfo(o["Key"], int(o["Size"]))
        except Exception as e:
            raise _error(e, self._what("LIST", prefix)) from None

    def put_bytes(self, key: str, body: bytes, content_type: str) -> None:
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType=content_type,
                ChecksumSHA256=digest,
            )  # fmt: skip
        except Exception as e:
            raise _error(e, self._what("PUT", key)) from None

    def list_prefixes(self, prefix: str) -> Iterator[str]:
        # Delimiter='/' returns the "directories" (CommonPrefixes), not the objects
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                for cp in page.get("CommonPrefixes", []):
                    yield str(cp["Prefix"])
        except Exception as e:
            raise _error(e, self._what("LIST", prefix)) from None

    def download(self, key: str, dest: Path) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        os.close(fd)
        try:
            self._manager.download(self.bucket, key, tmp).result()
            os.replace(tmp, dest)
        except Exception as e:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise _error(e, self._what("GET", key)) from None

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as e:
            raise _error(e, self._what("DELETE", key)) from None

    def cleanup_incomplete(self, ours: Callable[[str], bool]) -> builtins.list[str]:
        """Abort incomplete multipart uploads of our keys: they are invisible in
        listings but their parts are stored and billed (Arkime #1366)."""
        aborted = []
        paginator = self.client.get_paginator("list_multipart_uploads")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.key_prefix):
                for up in page.get("Uploads", []):
                    key = up["Key"]
                    if not ours(key):
                        continue
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=up["UploadId"]
                    )
                    aborted.append(key)
        except Exception as e:
            raise _error(e, self._what("LIST-UPLOADS", self.key_prefix)) from None
        return aborted

    def close(self) -> None:
        # Cancel what is still running (the service is stopping): s3transfer then
        # aborts its multipart uploads; anything it cannot abort is found at start.
        # (Not shutdown(cancel=True): s3transfer 0.17 passes its arguments in the
        # wrong order there and raises TypeError.)
        with self._futures_lock:
            running = list(self._futures)
        for fut in running:
            fut.cancel()
        self._manager.shutdown()
