"""The offload compresses straight into the upload: a capture reaches the
disk once (when tcpdump writes it), never again as a compressed temp file.

Through a real `rollcap offload` process against SeaweedFS: a multipart
upload whose parts come from memory, watched with inotify on the offload's
temp dir and measured by the process's own /proc/PID/io write_bytes; and an
outage in the middle of such an upload.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rollcap.config.schema import OffloadConfig
from rollcap.storage.base import ObjectExistsError, StorageError, VerificationError
from rollcap.storage.s3.storage import S3Storage
from tests.integration.test_offload import (
    T0,
    Offload,
    keys_in,
    make_captures,
    new_bucket,
    procs,  # noqa: F401 - fixture
    spool,  # noqa: F401 - fixture
    state,
    wait_for_multipart,
    write_config,
)
from tests.support.recproxy import Answer, RecordingProxy, Request
from tests.support.seaweedfs import SeaweedFS

pytestmark = pytest.mark.integration

IN_MODIFY, IN_MOVED_TO, IN_CREATE = 0x2, 0x80, 0x100


class DirWatch:
    """inotify on one directory: every file created, moved in or written."""

    def __init__(self, path: Path) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        wd = self.libc.inotify_add_watch(
            self.fd, bytes(path), IN_CREATE | IN_MODIFY | IN_MOVED_TO
        )
        assert wd >= 0, os.strerror(ctypes.get_errno())

    def events(self) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            off = 0
            while off < len(data):
                _wd, mask, _cookie, n = struct.unpack_from("iIII", data, off)
                name = data[off + 16 : off + 16 + n].rstrip(b"\0").decode(errors="replace")
                out.append((mask, name))
                off += 16 + n

    def close(self) -> None:
        os.close(self.fd)


def write_bytes(pid: int) -> int:
    """Bytes the process caused to be written to storage (/proc/PID/io)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise AssertionError(f"no write_bytes in /proc/{pid}/io")


def test_a_multipart_capture_goes_from_memory_and_is_written_to_disk_once(
    seaweedfs: SeaweedFS, all_pcap: Path, spool: Path, tmp_path: Path,  # noqa: F811
    procs: list[Offload],  # noqa: F811
) -> None:  # fmt: skip
    bucket = new_bucket(seaweedfs)
    ready = spool / "ready"
    # ~60 MB stored uncompressed in 5 MiB parts: a dozen parts
    [f] = make_captures(all_pcap, ready, [T0], repeat=45)
    source = f.read_bytes()
    cfg = write_config(
        tmp_path / "rollcap.toml", spool, f"s3://{bucket}/caps", endpoint_url=seaweedfs.endpoint,
        region="us-east-1", compression="none", s3_part_megabytes=5, concurrency=2,
    )  # fmt: skip
    c = seaweedfs.client()
    watch = DirWatch(spool / "tmp")
    try:
        p = Offload(cfg, seaweedfs.env()).start()
        procs.append(p)
        wait_for_multipart(p, c, bucket)
        p.wait_for("drained", lambda: not any(ready.iterdir()), timeout=120)
        assert p.proc is not None
        written = write_bytes(p.proc.pid)  # from its start to the local delete
        assert p.stop() == 0
        created = watch.events()
    finally:
        watch.close()
    assert created == []  # nothing was put into (or written in) the temp dir
    # logs, the state file, the lock: far below the capture's size (a temp
    # file of the compressed capture would be all of it here: no compression)
    assert written < len(source) / 20, (written, len(source))
    [key] = keys_in(seaweedfs, bucket)
    head = c.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(source)
    parts = -(-len(source) // (5 * 1024 * 1024))
    assert head["ETag"].strip('"').endswith(f"-{parts}")  # a multipart upload
    assert head["ChecksumSHA256"].endswith(f"-{parts}")  # verified per part
    assert head["Metadata"]["rollcap-sha256"]  # metadata as with a single PUT
    assert c.get_object(Bucket=bucket, Key=key)["Body"].read() == source
    assert c.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert state(spool)["uploaded_files"] == 1


def test_an_outage_mid_multipart_keeps_the_pcap_and_stores_it_once_later(
    all_pcap: Path, spool: Path, tmp_path: Path, procs: list[Offload],  # noqa: F811
) -> None:  # fmt: skip
    w = SeaweedFS(bucket="midpart").start()
    try:
        ready = spool / "ready"
        [f] = make_captures(all_pcap, ready, [T0], repeat=45)
        source = f.read_bytes()
        cfg = write_config(
            tmp_path / "rollcap.toml", spool, "s3://midpart/caps", endpoint_url=w.endpoint,
            region="us-east-1", compression="none", s3_part_megabytes=5, concurrency=1,
            retry_max_seconds=2,
        )  # fmt: skip
        c = w.client()
        p = Offload(cfg, w.env()).start()
        procs.append(p)
        wait_for_multipart(p, c, "midpart")
        w.stop()  # parts in flight fail; the abort cannot reach the server either
        p.wait_for("the outage noticed", lambda: state(spool).get("state") == "destination-down")
        assert f.exists()  # kept: only a verified object lets it go
        assert list((spool / "tmp").iterdir()) == []
        w.start()  # same data dir and ports: the orphaned upload is still there
        p.wait_for("stored after the outage", lambda: not f.exists(), timeout=120)
        assert p.stop() == 0
        [key] = keys_in(w, "midpart")  # once
        assert c.get_object(Bucket="midpart", Key=key)["Body"].read() == source
        # the upload the outage cut off was aborted after recovery: no billed parts
        assert c.list_multipart_uploads(Bucket="midpart").get("Uploads", []) == []
        assert "works again" in p.text()
    finally:
        w.cleanup()


# -- S3Storage.put_stream against SeaweedFS (in process) --------------------

MiB = 1024 * 1024


@dataclass(frozen=True)
class Made:
    size: int
    sha256: str


class Maker:
    """A producer writing ``data`` in 1 MiB pieces; counts its runs."""

    def __init__(self, data: bytes, second: bytes | None = None) -> None:
        self.data, self.second, self.runs = data, second, 0

    def __call__(self, write: Callable[[bytes], None] | None) -> Made:
        self.runs += 1
        data = self.second if self.runs > 1 and self.second is not None else self.data
        if write is not None:
            for i in range(0, len(data), MiB):
                write(data[i : i + MiB])
        return Made(len(data), hashlib.sha256(data).hexdigest())


def _key(n: int = 1) -> str:
    return f"caps/h1/2026/11/26/h1-eth0-20261126T120000Z-{n:06d}.pcap.zst"


@pytest.fixture
def creds(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in seaweedfs.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


@pytest.fixture
def proxy(seaweedfs: SeaweedFS) -> Iterator[RecordingProxy]:
    p = RecordingProxy(("127.0.0.1", seaweedfs.s3_port))
    yield p
    p.close()


def _store(endpoint: str, bucket: str, **kw: Any) -> S3Storage:
    cfg = OffloadConfig(
        destination=f"s3://{bucket}/caps", endpoint_url=endpoint, region="us-east-1",
        s3_part_megabytes=5, concurrency=2, **kw,
    )  # fmt: skip
    return S3Storage(cfg)


def _uploads(seaweedfs: SeaweedFS, bucket: str) -> list[Any]:
    return list(seaweedfs.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []))


@pytest.mark.parametrize("size", [100_000, 11 * MiB + 3], ids=["single-put", "multipart"])
def test_put_stream_stores_verifies_and_names_its_metadata(
    seaweedfs: SeaweedFS, creds: None, size: int
) -> None:
    bucket = new_bucket(seaweedfs)
    store = _store(seaweedfs.endpoint, bucket)
    make = Maker(os.urandom(size))
    info, made = store.put_stream(_key(), make, lambda m: {"rollcap-packets": "7"})
    store.close()
    assert made.size == size and info.size == size
    assert info.sha256 == made.sha256 and info.metadata["rollcap-packets"] == "7"
    # the metadata (with the SHA-256 of all the bytes) goes out at the start of
    # a multipart upload: the producer ran to the end once before it
    assert make.runs == (1 if size < 8 * MiB else 2)
    assert ("-" in info.checksum) == (size >= 8 * MiB)
    body = seaweedfs.client().get_object(Bucket=bucket, Key=_key())["Body"].read()
    assert body == make.data


def test_a_taken_key_aborts_the_multipart_upload_and_returns_what_was_made(
    seaweedfs: SeaweedFS, creds: None
) -> None:
    bucket = new_bucket(seaweedfs)
    seaweedfs.client().put_object(Bucket=bucket, Key=_key(), Body=b"someone else's")
    store = _store(seaweedfs.endpoint, bucket)
    make = Maker(os.urandom(11 * MiB))
    with pytest.raises(ObjectExistsError) as e:  # the 412 at CompleteMultipartUpload
        store.put_stream(_key(), make, lambda m: {})
    store.close()
    assert e.value.produced == Made(len(make.data), hashlib.sha256(make.data).hexdigest())
    assert _uploads(seaweedfs, bucket) == []  # aborted: no parts left behind
    body = seaweedfs.client().get_object(Bucket=bucket, Key=_key())["Body"].read()
    assert body == b"someone else's"


def test_a_failed_part_aborts_the_upload_at_once(
    seaweedfs: SeaweedFS, creds: None, proxy: RecordingProxy
) -> None:
    bucket = new_bucket(seaweedfs)

    def fail_part_2(req: Request) -> Answer | None:
        if req.op == "UploadPart" and "partNumber=2" in req.path:
            body = b"<Error><Code>AccessDenied</Code><Message>no</Message></Error>"
            return 403, {"content-type": "application/xml"}, body
        return None

    proxy.answer = fail_part_2
    store = _store(proxy.endpoint, bucket)
    with pytest.raises(StorageError) as e:
        store.put_stream(_key(), Maker(os.urandom(16 * MiB)), lambda m: {})
    store.close()
    assert e.value.code == "AccessDenied"
    assert len(proxy.ops("DELETE uploadId")) == 1  # AbortMultipartUpload, by the failure
    assert _uploads(seaweedfs, bucket) == []
    assert "Contents" not in seaweedfs.client().list_objects_v2(Bucket=bucket)
    assert not proxy.ops("CompleteMultipartUpload")


def test_other_bytes_the_second_time_are_never_completed(
    seaweedfs: SeaweedFS, creds: None
) -> None:
    bucket = new_bucket(seaweedfs)
    store = _store(seaweedfs.endpoint, bucket)
    data = os.urandom(11 * MiB)
    other = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(VerificationError, match="other bytes the second time"):
        store.put_stream(_key(), Maker(data, second=other), lambda m: {})
    store.close()
    assert _uploads(seaweedfs, bucket) == []
    assert "Contents" not in seaweedfs.client().list_objects_v2(Bucket=bucket)


def test_without_conditional_writes_a_stream_completes_after_a_head(
    seaweedfs: SeaweedFS, creds: None, proxy: RecordingProxy
) -> None:
    bucket = new_bucket(seaweedfs)

    def no_conditionals(req: Request) -> Answer | None:
        if "if-none-match" in req.headers:
            body = b"<Error><Code>NotImplemented</Code><Message>nope</Message></Error>"
            return 501, {"content-type": "application/xml"}, body
        return None

    proxy.answer = no_conditionals
    store = _store(proxy.endpoint, bucket)
    for n, size in ((1, 11 * MiB), (2, 1000)):
        info, _ = store.put_stream(_key(n), Maker(os.urandom(size)), lambda m: {})
        assert info.size == size
    assert not store.conditional_writes
    with pytest.raises(ObjectExistsError) as e:  # found by HEAD, before a byte
        store.put_stream(_key(1), Maker(b"x" * 1000), lambda m: {})
    store.close()
    assert e.value.produced is None
    assert _uploads(seaweedfs, bucket) == []
