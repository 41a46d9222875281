"""Uploads through s3transfer (classic client) that never overwrite anything.

PutObject and CompleteMultipartUpload carry ``If-None-Match: *``, added by a
botocore hook because s3transfer does not accept IfNoneMatch as an upload
argument; the loser of a race gets 412 and ObjectExistsError (s3transfer
aborts its parts). A server that answers 501 NotImplemented gets one warning
per start, then a HEAD before each upload instead. Part digests the
compressor computed go out as each part's ChecksumSHA256, so botocore does not
hash the parts again.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.exceptions import ClientError
from s3transfer.subscribers import BaseSubscriber

from rollcap.storage.base import ObjectExistsError, StorageError, VerificationError
from rollcap.storage.s3.client import DIGEST_CODES, S3_ERRORS, code_of, s3_error, status_of

log = logging.getLogger("rollcap.storage.s3")


class _Progress(BaseSubscriber):
    def __init__(self, cb: Callable[[int], None]) -> None:
        self.cb = cb

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self.cb(bytes_transferred)


class _NotImplemented(Exception):
    """The server answered 501 to a conditional write."""


class Uploader:
    def __init__(self, client: Any, bucket: str, describe: str, *, threshold: int,
                 part_size: int, concurrency: int) -> None:  # fmt: skip
        self.client = client
        self.bucket = bucket
        self._describe = describe
        #: If-None-Match: * until the server says 501 (then HEAD first)
        self.conditional_writes = True
        self._fallback_lock = threading.Lock()
        self._part_digests: dict[str, Sequence[bytes]] = {}
        events = client.meta.events
        events.register("before-parameter-build.s3.UploadPart", self._part_checksum)
        events.register("before-parameter-build.s3.PutObject", self._if_none_match)
        events.register("before-parameter-build.s3.CompleteMultipartUpload", self._if_none_match)
        self.manager = create_transfer_manager(client, TransferConfig(
            multipart_threshold=threshold,
            multipart_chunksize=part_size,
            max_concurrency=concurrency * concurrency,  # files in parallel, parts in each
            use_threads=True,
            preferred_transfer_client="classic",
        ))  # fmt: skip
        self._futures: set[Any] = set()  # uploads in progress, for close()
        self._futures_lock = threading.Lock()

    def _part_checksum(self, params: dict[str, Any], **_kw: Any) -> None:
        digests = self._part_digests.get(params.get("Key", ""))
        n = params.get("PartNumber", 0)
        if digests and 1 <= n <= len(digests) and "ChecksumSHA256" not in params:
            params["ChecksumSHA256"] = base64.b64encode(digests[n - 1]).decode()

    def _if_none_match(self, params: dict[str, Any], **_kw: Any) -> None:
        if self.conditional_writes:
            params.setdefault("IfNoneMatch", "*")

    def upload(self, local: Path, key: str, extra: dict[str, Any], *,
               progress: Callable[[int], None] | None, digests: Sequence[bytes],
               exists: Callable[[str], bool], what: str) -> None:  # fmt: skip
        """Store local under key unless it is taken (ObjectExistsError).
        ``exists(key)``: the HEAD for servers without conditional writes."""
        try:
            self._once(local, key, extra, progress, digests, exists, what)
        except _NotImplemented:
            self.fall_back_to_check_first()
            self._once(local, key, extra, progress, digests, exists, what)

    def _once(self, local: Path, key: str, extra: dict[str, Any],
              progress: Callable[[int], None] | None, digests: Sequence[bytes],
              exists: Callable[[str], bool], what: str) -> None:  # fmt: skip
        conditional = self.conditional_writes
        if not conditional and exists(key):
            raise ObjectExistsError(key)
        if digests:
            self._part_digests[key] = digests
        try:
            subscribers = [_Progress(progress)] if progress is not None else None
            fut = self.manager.upload(
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
        except ClientError as e:
            status, code = status_of(e), code_of(e)
            if status == 412 or code == "PreconditionFailed":
                raise ObjectExistsError(key) from None  # s3transfer aborted its parts
            if conditional and (status == 501 or code == "NotImplemented"):
                raise _NotImplemented() from None
            raise put_error(e, what) from None
        except S3_ERRORS as e:
            raise put_error(e, what) from None

    def fall_back_to_check_first(self) -> None:
        with self._fallback_lock:
            if self.conditional_writes:
                self.conditional_writes = False
                log.warning(
                    "%s does not support conditional writes (If-None-Match answered 501 "
                    "NotImplemented): checking that each key is free before uploading "
                    "instead; two writers racing for one key could overwrite each other",
                    self._describe,
                )

    def close(self) -> None:
        # Cancel what is still running (the service is stopping): s3transfer then
        # aborts its multipart uploads; anything it cannot abort is found at start.
        # (Not shutdown(cancel=True): s3transfer 0.17 passes its arguments in the
        # wrong order there and raises TypeError.)
        with self._futures_lock:
            running = list(self._futures)
        for fut in running:
            fut.cancel()
        self.manager.shutdown()


def put_error(e: BaseException, what: str) -> StorageError:
    err = s3_error(e, what)
    if err.code in DIGEST_CODES:  # the file, not the destination: a file-level retry
        bad = VerificationError(str(err))
        bad.code = err.code
        return bad
    return err
