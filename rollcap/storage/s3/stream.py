"""Uploads straight from the compressor: the compressed bytes never touch
the local disk.

A file whose compressed size stays below the multipart threshold is held in
one memory buffer and sent in one PutObject (``If-None-Match: *`` and
``x-amz-checksum-sha256``, as upload's). A larger one cannot start its
multipart upload before its metadata is known (CreateMultipartUpload carries
it, and it holds the SHA-256 of all the compressed bytes): the producer runs
once to the end hashing only, then again into part buffers that go up as
UploadPart (each with its own SHA-256) while the next one fills, and
CompleteMultipartUpload carries ``If-None-Match: *``. The second run must
write the same bytes (it is checked before the object is completed).

Memory: part buffers are taken from ``concurrency`` slots of at most
``threshold`` bytes each (max(s3_part_megabytes, 8 MiB)), shared by all the
files in flight, so the buffers never hold more than concurrency x threshold.

Any failure (a part, the completion, a stop) aborts the multipart upload, so
no invisible parts are left to be billed; the caller retries the whole file
from its pcap.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any

from botocore.exceptions import ClientError

from rollcap.storage.base import (
    ObjectExistsError,
    P,
    Producer,
    StorageError,
    VerificationError,
)
from rollcap.storage.s3.client import S3_ERRORS, code_of, status_of
from rollcap.storage.s3.upload import Uploader, put_error

WAIT = 0.5  # seconds between looks at the stop event while waiting on parts
ABORT_WAIT = 10.0  # seconds a failed upload waits for its running parts before the abort


class _Stopping(StorageError):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what}: stopped", code="Stopping")


class StreamUploader:
    def __init__(self, uploader: Uploader, *, threshold: int, concurrency: int) -> None:
        self.up = uploader
        self.client = uploader.client
        self.bucket = uploader.bucket
        self.threshold = threshold
        self._slots = threading.Semaphore(concurrency)  # part buffers (memory bound)
        self._parts = ThreadPoolExecutor(concurrency, thread_name_prefix="s3-part")
        self.closing = threading.Event()

    def close(self) -> None:
        self.closing.set()
        self._parts.shutdown(wait=False, cancel_futures=True)

    def _stopped(self, stop: threading.Event | None) -> bool:
        return self.closing.is_set() or (stop is not None and stop.is_set())

    def _take_slot(self, stop: threading.Event | None, what: str,
                   running: Sequence[Future[tuple[str, bytes]]] = ()) -> None:  # fmt: skip
        """A part buffer's slot; waits for one (a part being sent frees it)."""
        while not self._slots.acquire(timeout=WAIT):
            if self._stopped(stop):
                raise _Stopping(what)
            _raise_failed(running, what)

    def upload(self, key: str, produce: Producer[P],
               extra_for: Callable[[P, bool], dict[str, Any]], *,
               part_size: Callable[[int], int], exists: Callable[[str], bool], what: str,
               progress: Callable[[int], None] | None,
               stop: threading.Event | None) -> tuple[P, tuple[bytes, ...]]:  # fmt: skip
        """Store what produce writes under key; returns produce's result and
        the part digests (() for a single PUT). ``extra_for(result,
        multipart)``: the request's arguments (metadata, settings, checksum)."""
        if not self.up.conditional_writes and exists(key):
            raise ObjectExistsError(key)
        held = over = False
        buf = bytearray()

        def fill(data: bytes) -> None:
            nonlocal held, over
            if over:
                return  # past the threshold: only hashed now
            if not held:
                self._take_slot(stop, what)
                held = True
            if len(buf) + len(data) >= self.threshold:
                buf.clear()
                self._slots.release()
                held, over = False, True
                return
            buf.extend(data)

        try:
            first = produce(fill)
            if not over:
                self._put(key, buf, first, extra_for(first, False), exists, what)
                if progress is not None:
                    progress(len(buf))
                return first, ()
        finally:
            if held:
                self._slots.release()
        return self._multipart(
            key, produce, first, extra_for(first, True), part_size(first.size), exists, what,
            progress, stop,
        )  # fmt: skip

    def _refused(self, e: ClientError, attempt: int, key: str, produced: Any,
                 exists: Callable[[str], bool], what: str) -> None:  # fmt: skip
        """What a refused conditional write means: the key is taken (412, or found
        after a server without conditional writes refused the header: the caller
        aborts), or an error; returns when the write is to be sent again without
        the condition."""
        status, code = status_of(e), code_of(e)
        if status == 412 or code == "PreconditionFailed":
            raise ObjectExistsError(key, produced) from None
        if attempt == 1 and self.up.conditional_writes and (
            status == 501 or code == "NotImplemented"
        ):
            self.up.fall_back_to_check_first()
            if exists(key):
                raise ObjectExistsError(key, produced) from None
            return
        raise put_error(e, what) from None

    def _put(self, key: str, body: bytearray, produced: Any, extra: dict[str, Any],
             exists: Callable[[str], bool], what: str) -> None:  # fmt: skip
        for attempt in (1, 2):
            try:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)
                return
            except ClientError as e:
                self._refused(e, attempt, key, produced, exists, what)  # else: retry once
            except S3_ERRORS as e:
                raise put_error(e, what) from None

    def _multipart(self, key: str, produce: Producer[P], first: P, extra: dict[str, Any],
                   part: int, exists: Callable[[str], bool], what: str,
                   progress: Callable[[int], None] | None,
                   stop: threading.Event | None) -> tuple[P, tuple[bytes, ...]]:  # fmt: skip
        try:
            upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, **extra
            )["UploadId"]
        except S3_ERRORS as e:
            raise put_error(e, what) from None
        futures: list[Future[tuple[str, bytes]]] = []
        try:
            cur = bytearray()
            self._take_slot(stop, what)
            held = True

            def send() -> None:
                nonlocal cur, held
                n = len(futures) + 1
                try:
                    fut = self._parts.submit(self._part, key, upload_id, n, cur, progress)
                except RuntimeError:  # close() shut the part threads down: stopping
                    raise _Stopping(what) from None
                held = False  # the part's now: released when it is done (or cancelled)
                fut.add_done_callback(lambda _f: self._slots.release())
                futures.append(fut)
                cur = bytearray()

            def write(data: bytes) -> None:
                nonlocal cur, held
                mv = memoryview(data)
                while mv:
                    if not held:
                        self._take_slot(stop, what, futures)
                        held = True
                    take = part - len(cur)
                    cur += mv[:take]
                    mv = mv[take:]
                    if len(cur) == part:
                        _raise_failed(futures, what)
                        send()

            try:
                second = produce(write)
                if cur or not futures:
                    if not held:
                        self._take_slot(stop, what, futures)
                        held = True
                    send()
            finally:
                if held:
                    self._slots.release()
            if (second.size, second.sha256) != (first.size, first.sha256):
                raise VerificationError(
                    f"{what}: compressed to other bytes the second time (sha256 "
                    f"{second.sha256}, {second.size} bytes; first {first.sha256}, "
                    f"{first.size} bytes); not completed"
                )
            while True:
                _done, pending = wait(futures, timeout=WAIT, return_when=FIRST_EXCEPTION)
                _raise_failed(futures, what)
                if not pending:
                    break
                if self._stopped(stop):
                    raise _Stopping(what)
            results = [f.result() for f in futures]
            self._complete(key, upload_id, results, second, exists, what)
            return second, tuple(d for _etag, d in results)
        except BaseException:
            for f in futures:
                f.cancel()
            # a part still being sent could land after the abort (AWS says to
            # abort again then): let it end first, briefly, unless stopping
            wait(futures, timeout=0 if self._stopped(stop) else ABORT_WAIT)
            # no orphan parts: they are invisible but stored (and billed)
            with contextlib.suppress(*S3_ERRORS):
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                )
            raise

    def _part(self, key: str, upload_id: str, n: int, data: bytearray,
              progress: Callable[[int], None] | None) -> tuple[str, bytes]:  # fmt: skip
        digest = hashlib.sha256(data).digest()
        r = self.client.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=data,
            ChecksumSHA256=base64.b64encode(digest).decode(),
        )  # fmt: skip
        if progress is not None:
            progress(len(data))
        return str(r["ETag"]), digest

    def _complete(self, key: str, upload_id: str, results: list[tuple[str, bytes]],
                  produced: Any, exists: Callable[[str], bool], what: str) -> None:  # fmt: skip
        parts = [
            {"PartNumber": i, "ETag": etag, "ChecksumSHA256": base64.b64encode(d).decode()}
            for i, (etag, d) in enumerate(results, 1)
        ]
        for attempt in (1, 2):
            try:
                self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )  # fmt: skip
                return
            except ClientError as e:
                self._refused(e, attempt, key, produced, exists, what)  # else: retry once
            except S3_ERRORS as e:
                raise put_error(e, what) from None


def _raise_failed(futures: Sequence[Future[tuple[str, bytes]]], what: str) -> None:
    """Raise the first failed part's error (a StorageError for the server's)."""
    for f in futures:
        e = f.exception() if f.done() and not f.cancelled() else None
        if isinstance(e, S3_ERRORS):
            raise put_error(e, f"{what} (UploadPart)") from None
        if e is not None:
            raise e

