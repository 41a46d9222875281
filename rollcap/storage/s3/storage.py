"""S3 and S3-compatible servers (AWS, SeaweedFS, MinIO, Ceph) via boto3.

End-to-end verification (checked against SeaweedFS 4.x, see tests):
- a file below the multipart threshold goes up in one PutObject carrying
  ``x-amz-checksum-sha256`` = our SHA-256 of the compressed bytes: the server
  recomputes it and refuses a mismatch (BadDigest), so nothing corrupted ever
  becomes visible;
- a larger file goes up in parts with ``ChecksumAlgorithm=SHA256``, each
  carrying its SHA-256; the server verifies each part and stores the
  COMPOSITE checksum (SHA-256 of the part digests, "-N"); after completion we
  compare what HEAD returns with the composite of the digests of the parts
  sent (put_file: computed as the file was written, or read again);
- in both cases HEAD must then show the right size and our whole-object
  SHA-256 in the ``rollcap-sha256`` metadata before the caller deletes anything.
A server that returns no checksum at HEAD is checked by size and metadata only.
The same HEAD (and GetObjectTagging) shows that the ``[offload]`` S3 settings
took effect (storage class, encryption, tags, Object Lock retention:
storage.s3.settings); a setting the server ignored fails the verification.

Conditional writes: PutObject and CompleteMultipartUpload carry
``If-None-Match: *`` (added by a botocore hook: s3transfer does not accept
IfNoneMatch as an upload argument), so two writers can never overwrite each
other; the loser gets 412 and put_file/put_stream raise ObjectExistsError. A server
that answers 501 NotImplemented gets one warning, then HEAD-before-upload.

boto3 >= 1.36 adds CRC checksums to every request by default, which several
S3-compatible servers reject: ``offload.s3_checksums = "when_required"`` (the
default) turns that off; our explicit SHA-256 is sent either way.

Package layout (storage/s3/): client (the boto3 client, credentials, error
codes), upload (conditional uploads of files through s3transfer), stream (the offload's
uploads straight from the compressor, put_stream), checksum (the checksums
the server states), settings (what is asked for and whether it took effect),
policy (the IAM policies), checks (the S3 checks of check-destination).
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import hashlib
import io
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.utils import ChunksizeAdjuster

from rollcap.config.schema import OffloadConfig
from rollcap.storage.base import (
    META,
    MiB,
    ObjectInfo,
    P,
    Producer,
    SizeMismatch,
    Storage,
    StorageError,
    VerificationError,
    copy_exact,
    describe_for,
    part_size_for,
)
from rollcap.storage.s3.checksum import composite_from_parts, expected_checksum
from rollcap.storage.s3.client import (
    S3_ERRORS,
    code_of,
    make_client,
    s3_error,
    status_of,
    systemd_credentials_file,
)
from rollcap.storage.s3.policy import host_scope
from rollcap.storage.s3.settings import ObjectSettings, check_head, check_tags
from rollcap.storage.s3.stream import StreamUploader
from rollcap.storage.s3.upload import Uploader

__all__ = ["S3Storage", "SettingsNotApplied", "systemd_credentials_file"]

_CONTENT_TYPES = {
    ".pcap.zst": "application/zstd",
    ".pcap.gz": "application/gzip",
    ".pcap": "application/vnd.tcpdump.pcap",
}
# HEAD fields that show whether the S3 settings took effect (ObjectInfo.extra)
_SETTING_FIELDS = (
    "StorageClass", "ServerSideEncryption", "SSEKMSKeyId", "ObjectLockMode",
    "ObjectLockRetainUntilDate", "ObjectLockLegalHoldStatus", "LastModified", "VersionId",
)  # fmt: skip


def _object_size(r: dict[str, Any]) -> int | None:
    """The whole object's size a GET response states: Content-Range's total
    ("bytes 0-79/438000000") for a range, else its Content-Length."""
    cr = str(r.get("ContentRange") or "")
    if cr:
        total = cr.rpartition("/")[2]
        return int(total) if total.isdigit() else None
    return int(r["ContentLength"]) if "ContentLength" in r else None


class SettingsNotApplied(VerificationError):
    """The object is stored and intact, but the server ignored a setting."""

    def __init__(self, what: str, problems: Sequence[str]) -> None:
        super().__init__(f"{what}: the server did not apply " + "; ".join(problems))
        self.code = "SettingIgnored"
        self.problems = list(problems)


class S3Storage(Storage):
    manifests = True

    def __init__(self, cfg: OffloadConfig, host: str = "") -> None:
        """``host``: whose keys this storage writes, if one host's (the offload):
        its own part of the bucket is what a least-privilege policy lets it list."""
        self.bucket = cfg.bucket
        self.key_prefix = cfg.prefix
        self.scope = host_scope(cfg.key_template, cfg.prefix, host)[0] if host else ""
        self.endpoint = cfg.endpoint_url or "AWS"
        self.part_size: int = part_size_for(cfg) or 5 * MiB
        self._describe = describe_for(cfg)
        self.threshold = max(8 * MiB, self.part_size)
        self.settings = ObjectSettings.from_config(cfg)
        self.concurrency = cfg.concurrency
        try:
            self.session, self.client = make_client(cfg)
        except (BotoCoreError, ValueError) as e:  # a broken AWS config file, a bad region
            raise StorageError(f"cannot open {self._describe}: {e}", code=type(e).__name__,
                               permanent=True) from None  # fmt: skip
        self.uploader = Uploader(
            self.client, self.bucket, self._describe, threshold=self.threshold,
            part_size=self.part_size, concurrency=cfg.concurrency,
        )  # fmt: skip
        # put_stream's part buffers: concurrency x threshold bytes at most
        self.streamer = StreamUploader(
            self.uploader, threshold=self.threshold, concurrency=cfg.concurrency
        )

    @property
    def conditional_writes(self) -> bool:
        return self.uploader.conditional_writes

    def describe(self) -> str:
        return self._describe

    def _what(self, op: str, key: str = "") -> str:
        target = f"s3://{self.bucket}/{key}" if key else f"bucket {self.bucket}"
        return f"{op} {target} at {self.endpoint}"

    def check(self) -> None:
        # HEAD bucket: SeaweedFS creates a bucket on PUT, so this is where a
        # missing bucket shows (404). HEAD has no body: map the status to a code.
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as e:
            status = status_of(e)
            code = code_of(e)
            if status == 404 or code in ("404", "NoSuchBucket"):
                raise StorageError(
                    f"{self._what('HEAD')}: NoSuchBucket: the bucket does not exist",
                    code="NoSuchBucket", permanent=True,
                ) from None  # fmt: skip
            if status == 403 or code == "403":
                # Find the precise reason (bad key, bad secret, policy) with a GET.
                # A policy scoped to this host's prefix (policy.iam_policy) denies
                # HeadBucket but allows listing that prefix: then all is well.
                try:
                    self.client.list_objects_v2(
                        Bucket=self.bucket, Prefix=self.scope or self.key_prefix, MaxKeys=1
                    )
                except S3_ERRORS as e2:
                    raise s3_error(e2, self._what("LIST")) from None
                if self.scope:
                    return
                raise StorageError(f"{self._what('HEAD')}: AccessDenied", code="AccessDenied",
                                   permanent=True) from None  # fmt: skip
            raise s3_error(e, self._what("HEAD")) from None
        except S3_ERRORS as e:
            raise s3_error(e, self._what("HEAD")) from None

    # -- writing -----------------------------------------------------------

    def _upload_args(self, key: str, metadata: dict[str, str], sha256: str
                     ) -> tuple[dict[str, Any], dict[str, str], datetime | None]:  # fmt: skip
        """The upload's arguments (metadata, content type, settings), its tags
        and its retention date."""
        meta = {**metadata, META["sha256"]: sha256}
        tags = self.settings.tags(metadata.get(META["host"], ""), metadata.get(META["iface"], ""))
        retain_until = self.settings.retain_until(datetime.now(UTC))
        extra: dict[str, Any] = {
            "Metadata": meta,
            "ContentType": self._content_type(key),
            **self.settings.upload_args(tags, retain_until),
        }
        return extra, tags, retain_until

    def _single_put_checksum(self, extra: dict[str, Any], sha256: str) -> None:
        extra["ChecksumSHA256"] = base64.b64encode(bytes.fromhex(sha256)).decode()
        if self.settings.lock_mode:
            # AWS wants Content-MD5 or x-amz-sdk-checksum-algorithm with Object
            # Lock headers; botocore sends the header with our SHA-256 as is
            extra["ChecksumAlgorithm"] = "SHA256"

    def put_file(self, local: Path, key: str, *, size: int, sha256: str,
                 metadata: dict[str, str],
                 progress: Callable[[int], None] | None = None,
                 part_sha256: Sequence[bytes] = ()) -> ObjectInfo:  # fmt: skip
        extra, tags, retain_until = self._upload_args(key, metadata, sha256)
        multipart = size >= self.threshold
        part = ChunksizeAdjuster().adjust_chunksize(self.part_size, size)
        known_parts = part == self.part_size and len(part_sha256) == -(-size // part)
        if multipart:
            extra["ChecksumAlgorithm"] = "SHA256"  # per part, verified by the server
        else:
            self._single_put_checksum(extra, sha256)
        self.uploader.upload(
            local, key, extra, progress=progress,
            digests=part_sha256 if multipart and known_parts else (),
            exists=lambda k: self.head(k) is not None, what=self._what("PUT", key),
        )  # fmt: skip
        expected = None
        if multipart and known_parts:
            expected = composite_from_parts(part_sha256)
        return self._verify(key, local, size, sha256, part_sha256, expected, tags, retain_until)

    def put_stream(self, key: str, produce: Producer[P],
                   metadata: Callable[[P], dict[str, str]], *,
                   progress: Callable[[int], None] | None = None,
                   stop: threading.Event | None = None) -> tuple[ObjectInfo, P]:  # fmt: skip
        asked: dict[str, Any] = {}

        def extra_for(produced: P, multipart: bool) -> dict[str, Any]:
            extra, tags, retain_until = self._upload_args(key, metadata(produced), produced.sha256)
            asked.update(tags=tags, retain_until=retain_until)
            if multipart:
                extra["ChecksumAlgorithm"] = "SHA256"  # each part carries its SHA-256
            else:
                self._single_put_checksum(extra, produced.sha256)
            return extra

        produced, digests = self.streamer.upload(
            key, produce, extra_for,
            part_size=lambda size: ChunksizeAdjuster().adjust_chunksize(self.part_size, size),
            exists=lambda k: self.head(k) is not None, what=self._what("PUT", key),
            progress=progress, stop=stop,
        )  # fmt: skip
        # the parts as they were sent: their composite whatever size they had
        expected = composite_from_parts(digests) if digests else None
        info = self._verify(
            key, None, produced.size, produced.sha256, digests, expected, asked["tags"],
            asked["retain_until"],
        )  # fmt: skip
        return info, produced

    def _verify(self, key: str, local: Path | None, size: int, sha256: str,
                part_sha256: Sequence[bytes], expected: str | None, tags: dict[str, str],
                retain_until: datetime | None) -> ObjectInfo:  # fmt: skip
        """What HEAD says of the object just stored: its size, our SHA-256 in
        its metadata, the server's checksum (``expected``, else rebuilt), and
        the settings; VerificationError if any is not what was sent."""
        info, raw = self._head(key, checksum=True)
        if info is None:
            raise VerificationError(f"{self._what('HEAD', key)}: missing after upload")
        if info.size != size:
            raise VerificationError(f"{self._what('HEAD', key)}: size {info.size}, expected {size}")
        if info.sha256 != sha256:
            raise VerificationError(
                f"{self._what('HEAD', key)}: metadata sha256 {info.sha256!r}, expected {sha256}"
            )
        if info.checksum and ("-" not in info.checksum or expected is None):
            expected = expected_checksum(
                local, size, sha256, part_sha256, info.checksum, self.part_size
            )
        if info.checksum and info.checksum != expected:
            raise VerificationError(
                f"{self._what('HEAD', key)}: server checksum {info.checksum}, expected {expected}"
            )
        problems = check_head(self.settings, raw, retain_until=retain_until)
        problems += self._tag_problems(key, tags)
        if problems:
            raise SettingsNotApplied(self._what("HEAD", key), problems)
        return info

    def same_bytes(self, info: ObjectInfo, local: Path | None, *, size: int, sha256: str,
                   part_sha256: Sequence[bytes] = ()) -> bool | None:  # fmt: skip
        if info.size != size:
            return False
        if not info.checksum:
            return None
        expected = expected_checksum(
            local, size, sha256, part_sha256, info.checksum, self.part_size
        )
        return None if expected is None else info.checksum == expected

    def settings_problems(self, info: ObjectInfo) -> builtins.list[str]:
        host = info.metadata.get(META["host"], "")
        iface = info.metadata.get(META["iface"], "")
        problems = check_head(self.settings, info.extra)
        return problems + self._tag_problems(info.key, self.settings.tags(host, iface))

    def _tag_problems(self, key: str, tags: dict[str, str]) -> builtins.list[str]:
        if not tags:
            return []
        try:
            r = self.client.get_object_tagging(Bucket=self.bucket, Key=key)
        except ClientError as e:
            if status_of(e) == 501 or code_of(e) == "NotImplemented":
                return [
                    "tags: the server has no object tagging (GetObjectTagging: NotImplemented); "
                    "set rollcap_tags = false and no tags"
                ]
            raise s3_error(e, self._what("GET-TAGGING", key)) from None
        except S3_ERRORS as e:
            raise s3_error(e, self._what("GET-TAGGING", key)) from None
        return check_tags(tags, r.get("TagSet", []))

    @staticmethod
    def _content_type(key: str) -> str:
        for ext, ctype in _CONTENT_TYPES.items():
            if key.endswith(ext):
                return ctype
        return "application/octet-stream"

    # -- reading -----------------------------------------------------------

    def _head(self, key: str, checksum: bool = False) -> tuple[ObjectInfo | None, dict[str, Any]]:
        kw: dict[str, Any] = {"ChecksumMode": "ENABLED"} if checksum else {}
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=key, **kw)
        except ClientError as e:
            status = status_of(e)
            if status == 404:
                return None, {}
            if status == 403:  # HEAD has no body to say why
                raise StorageError(
                    f"{self._what('HEAD', key)}: AccessDenied: 403 Forbidden (wrong "
                    "credentials, or no s3:GetObject permission)",
                    code="AccessDenied", permanent=True,
                ) from None  # fmt: skip
            raise s3_error(e, self._what("HEAD", key)) from None
        except S3_ERRORS as e:
            raise s3_error(e, self._what("HEAD", key)) from None
        extra = {k: r[k] for k in _SETTING_FIELDS if k in r}
        info = ObjectInfo(
            key, int(r["ContentLength"]), dict(r.get("Metadata", {})),
            checksum=str(r.get("ChecksumSHA256") or ""), extra=extra,
        )  # fmt: skip
        return info, r

    def head(self, key: str, checksum: bool = False) -> ObjectInfo | None:
        return self._head(key, checksum)[0]

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
        except S3_ERRORS as e:
            raise s3_error(e, self._what("LIST", prefix)) from None

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
        except S3_ERRORS as e:
            raise s3_error(e, self._what("LIST", prefix)) from None

    def put_bytes(self, key: str, body: bytes, content_type: str) -> None:
        # the captures' encryption (a bucket policy may demand it); not their
        # storage class, tags or retention: entries are a small, rebuildable index
        args = self.settings.upload_args({}, None)
        sse = {k: v for k, v in args.items() if k in ("ServerSideEncryption", "SSEKMSKeyId")}
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType=content_type,
                ChecksumSHA256=digest, **sse,
            )  # fmt: skip
        except ClientError as e:
            # the conditional write (upload.py's hook) found the key taken: an
            # entry's key names all it holds, so it is this entry, written before
            # a crash or by the first attempt
            if code_of(e) == "PreconditionFailed" or status_of(e) == 412:
                return
            raise s3_error(e, self._what("PUT", key)) from None
        except S3_ERRORS as e:
            raise s3_error(e, self._what("PUT", key)) from None

    def list_prefixes(self, prefix: str) -> Iterator[str]:
        # Delimiter='/' returns the "directories" (CommonPrefixes), not the objects
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                for cp in page.get("CommonPrefixes", []):
                    yield str(cp["Prefix"])
        except S3_ERRORS as e:
            raise s3_error(e, self._what("LIST", prefix)) from None

    def download(self, key: str, dest: Path, *, size: int | None = None) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        done = False
        try:
            if size is None:
                os.close(fd)
                self.uploader.manager.download(self.bucket, key, tmp).result()
            else:
                with os.fdopen(fd, "wb") as out:
                    self._get_exact(key, out, size)
            os.replace(tmp, dest)
            done = True
        except S3_ERRORS as e:  # SizeMismatch (a StorageError) passes as it is
            raise s3_error(e, self._what("GET", key)) from None
        finally:
            if not done:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    def read_small(self, key: str, size: int) -> bytes:
        # in memory: one GET, no temp file (fetch reads one summary per capture)
        buf = io.BytesIO()
        try:
            self._get_exact(key, buf, size)
        except S3_ERRORS as e:  # SizeMismatch (a StorageError) passes as it is
            raise s3_error(e, self._what("GET", key)) from None
        return buf.getvalue()

    def _get_exact(self, key: str, out: BinaryIO, size: int) -> None:
        """One GET of bytes 0..size-1. Its Content-Range states the object's
        whole size (what HEAD states, in the same response as the bytes, so the
        object cannot change in between): it must be ``size``, else nothing is
        written. The range keeps a larger object's bytes on the server."""
        what = self._what("GET", key)
        kw: dict[str, Any] = {"Range": f"bytes=0-{size - 1}"} if size > 0 else {}
        try:
            r = self.client.get_object(Bucket=self.bucket, Key=key, **kw)
        except ClientError as e:
            if status_of(e) == 416:  # not even byte 0: the object is empty
                raise SizeMismatch(what, size, 0) from None
            raise
        body = r["Body"]
        try:
            stated = _object_size(r)
            if stated != size:
                raise SizeMismatch(what, size, stated)
            copy_exact(body, out, size, what)
        finally:
            body.close()

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except S3_ERRORS as e:
            raise s3_error(e, self._what("DELETE", key)) from None

    def set_legal_hold(self, key: str, on: bool) -> None:
        status = "ON" if on else "OFF"
        try:
            self.client.put_object_legal_hold(
                Bucket=self.bucket, Key=key, LegalHold={"Status": status}
            )
        except S3_ERRORS as e:
            err = s3_error(e, self._what("PUT-LEGAL-HOLD", key))
            if err.code == "InvalidRequest":
                err = StorageError(
                    f"{err} (legal holds need a bucket created with Object Lock)",
                    code=err.code, permanent=True,
                )  # fmt: skip
            raise err from None

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
        except S3_ERRORS as e:
            raise s3_error(e, self._what("LIST-UPLOADS", self.key_prefix)) from None
        return aborted

    def close(self) -> None:
        self.streamer.close()
        self.uploader.close()
