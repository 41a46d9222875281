"""The [offload] S3 settings against a real SeaweedFS with an Object Lock bucket:
each setting round-trips, a server that ignores one is named before anything
is deleted, conditional writes keep two writers from overwriting each other.
What SeaweedFS lacks (SSE-KMS) is asserted on the wire, through a recording
proxy in front of it."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from rollcap.config.schema import OffloadConfig
from rollcap.storage import META, ObjectExistsError, StorageError, VerificationError
from rollcap.storage.s3.storage import S3Storage
from tests.support.recproxy import Answer, RecordingProxy, Request
from tests.support.seaweedfs import SeaweedFS

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
META_HI = {META["host"]: "h1", META["iface"]: "eth0", META["packets"]: "7"}
SETTINGS: dict[str, Any] = {
    "storage_class": "STANDARD_IA",
    "sse": "AES256",
    "tags": {"team": "netops", "cost-center": "4711"},
    "object_lock_mode": "GOVERNANCE",
    "object_lock_days": 2,
}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _file(tmp_path: Path, name: str, size: int) -> Path:
    p = tmp_path / name
    p.write_bytes(os.urandom(size))
    return p


def _key(n: int = 1) -> str:
    return f"caps/h1/2026/11/26/h1-eth0-20261126T120000Z-{n:06d}.pcap.zst"


@pytest.fixture
def creds(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in seaweedfs.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


@pytest.fixture
def lock_bucket(seaweedfs: SeaweedFS) -> str:
    name = f"lk-{uuid.uuid4().hex[:12]}"
    seaweedfs.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


@pytest.fixture
def plain_bucket(seaweedfs: SeaweedFS) -> str:
    name = f"pl-{uuid.uuid4().hex[:12]}"
    seaweedfs.client().create_bucket(Bucket=name)
    return name


def _store(endpoint: str, bucket: str, **kw: Any) -> S3Storage:
    cfg = OffloadConfig(
        destination=f"s3://{bucket}/caps", endpoint_url=endpoint, region="us-east-1",
        s3_part_megabytes=5, concurrency=2, **kw,
    )  # fmt: skip
    return S3Storage(cfg)


@pytest.fixture
def proxy(seaweedfs: SeaweedFS) -> Iterator[RecordingProxy]:
    p = RecordingProxy(("127.0.0.1", seaweedfs.s3_port))
    yield p
    p.close()


@pytest.mark.parametrize("size", [100_000, 11 * MiB + 3], ids=["single-put", "multipart"])
def test_every_setting_round_trips(
    seaweedfs: SeaweedFS, lock_bucket: str, creds: None, tmp_path: Path, size: int
) -> None:
    store = _store(seaweedfs.endpoint, lock_bucket, **SETTINGS)
    src = _file(tmp_path, "a", size)
    before = datetime.now(UTC)
    store.put_file(src, _key(), size=size, sha256=_sha(src), metadata=META_HI)
    store.close()
    c = seaweedfs.client()
    head = c.head_object(Bucket=lock_bucket, Key=_key())
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ObjectLockMode"] == "GOVERNANCE"
    until = head["ObjectLockRetainUntilDate"]
    assert before + timedelta(days=2) - timedelta(seconds=1) <= until
    assert until <= datetime.now(UTC) + timedelta(days=2)
    tag_set = c.get_object_tagging(Bucket=lock_bucket, Key=_key())["TagSet"]
    tags = {t["Key"]: t["Value"] for t in tag_set}
    assert tags == {"team": "netops", "cost-center": "4711", "host": "h1", "iface": "eth0",
                    "source": "rollcap"}  # fmt: skip
    ret = c.get_object_retention(Bucket=lock_bucket, Key=_key())["Retention"]
    assert ret["Mode"] == "GOVERNANCE" and ret["RetainUntilDate"] == until


def test_a_locked_object_cannot_be_deleted_with_the_offloads_credentials(
    seaweedfs: SeaweedFS, lock_bucket: str, creds: None, tmp_path: Path
) -> None:
    store = _store(seaweedfs.endpoint, lock_bucket, **SETTINGS)
    src = _file(tmp_path, "a", 1000)
    store.put_file(src, _key(), size=1000, sha256=_sha(src), metadata=META_HI)
    version = store.client.head_object(Bucket=lock_bucket, Key=_key())["VersionId"]
    with pytest.raises(ClientError) as e:  # the very client the offload uses
        store.client.delete_object(Bucket=lock_bucket, Key=_key(), VersionId=version)
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    store.delete(_key())  # a plain delete only stacks a delete marker on top
    back = store.client.get_object(Bucket=lock_bucket, Key=_key(), VersionId=version)
    assert hashlib.sha256(back["Body"].read()).hexdigest() == _sha(src)
    store.close()


def test_a_bucket_without_object_lock_is_named_before_anything_is_deleted(
    seaweedfs: SeaweedFS, plain_bucket: str, creds: None, tmp_path: Path
) -> None:
    store = _store(seaweedfs.endpoint, plain_bucket, object_lock_mode="COMPLIANCE",
                   object_lock_days=1)  # fmt: skip
    src = _file(tmp_path, "a", 1000)
    with pytest.raises(StorageError) as e:
        store.put_file(src, _key(), size=1000, sha256=_sha(src), metadata=META_HI)
    # SeaweedFS (like AWS) refuses; a server that stored it anyway would fail the
    # HEAD check instead (test_a_setting_the_server_ignored_is_named_and_the_file_kept)
    assert e.value.code == "InvalidRequest", e.value
    assert store.head(_key()) is None
    store.close()


@pytest.mark.parametrize(
    ("header", "setting", "words"),
    [
        ("x-amz-storage-class", "storage_class", "storage_class: asked for STANDARD_IA, the "
         "object has STANDARD"),
        ("x-amz-server-side-encryption", "sse", "sse: asked for AES256, the object has none"),
        ("x-amz-object-lock-mode", "object_lock_mode", "object_lock_mode: asked for GOVERNANCE"),
    ],
)  # fmt: skip
def test_a_setting_the_server_ignored_is_named_and_the_file_kept(
    lock_bucket: str, creds: None, tmp_path: Path, proxy: RecordingProxy,
    header: str, setting: str, words: str,
) -> None:  # fmt: skip
    """The proxy hides the setting from HEAD, as a server ignoring it would."""

    def hide(req: Request, headers: dict[str, str]) -> None:
        if req.method == "HEAD":
            headers.pop(header, None)

    proxy.rewrite = hide
    store = _store(proxy.endpoint, lock_bucket, **SETTINGS)
    src = _file(tmp_path, "a", 1000)
    with pytest.raises(VerificationError) as e:
        store.put_file(src, _key(), size=1000, sha256=_sha(src), metadata=META_HI)
    store.close()
    assert e.value.code == "SettingIgnored" and words in str(e.value), e.value
    assert setting in str(e.value)
    [put] = proxy.ops("PutObject")
    assert put.headers["x-amz-object-lock-mode"] == "GOVERNANCE"
    # AWS wants a checksum algorithm named with Object Lock headers; the checksum
    # is still ours, not hashed again
    assert put.headers["x-amz-sdk-checksum-algorithm"] == "SHA256"
    assert put.headers["x-amz-checksum-sha256"] == base64.b64encode(
        bytes.fromhex(_sha(src))
    ).decode()


def test_sse_kms_headers_go_out_with_single_puts_and_multipart_uploads(
    lock_bucket: str, creds: None, tmp_path: Path, proxy: RecordingProxy
) -> None:
    key_id = "1234abcd-12ab-34cd-56ef-1234567890ab"
    store = _store(proxy.endpoint, lock_bucket, sse="aws:kms", sse_kms_key_id=key_id,
                   storage_class="ONEZONE_IA")  # fmt: skip
    for n, size in ((1, 1000), (2, 11 * MiB)):
        src = _file(tmp_path, f"a{n}", size)
        # SeaweedFS has no KMS: it refuses (500); what matters is what was asked
        with pytest.raises(StorageError):
            store.put_file(src, _key(n), size=size, sha256=_sha(src), metadata=META_HI)
    store.close()
    sent = proxy.ops("PutObject") + proxy.ops("CreateMultipartUpload")
    assert {r.op for r in sent} == {"PutObject", "CreateMultipartUpload"}
    for r in sent:
        assert r.headers["x-amz-server-side-encryption"] == "aws:kms", r
        assert r.headers["x-amz-server-side-encryption-aws-kms-key-id"] == key_id, r
        assert r.headers["x-amz-storage-class"] == "ONEZONE_IA", r
        assert "host=h1" in r.headers["x-amz-tagging"], r


def test_a_second_writer_racing_for_the_same_key_gets_412_and_overwrites_nothing(
    seaweedfs: SeaweedFS, plain_bucket: str, creds: None, tmp_path: Path
) -> None:
    """Two writers upload their parts at the same time; the second to complete
    gets 412 at CompleteMultipartUpload. (The second's complete is held until
    the first has returned: SeaweedFS 4.48 checks If-None-Match before, not
    atomically with, completing, so two completes in the same instant can both
    pass there; AWS answers one of them 409/412. rollcap's HEAD then fails the
    loser's verification and it keeps its file: see docs/offload.md.)"""
    size = 11 * MiB
    files = [_file(tmp_path, f"w{i}", size) for i in range(2)]
    stores = [_store(seaweedfs.endpoint, plain_bucket) for _ in files]
    results: list[object] = [None, None]
    go = threading.Barrier(2)
    first_done = threading.Event()
    parts = [0, 0]

    def count_part(i: int) -> Any:
        def count(**_kw: Any) -> None:
            parts[i] += 1

        return count

    for i, st in enumerate(stores):
        st.client.meta.events.register("before-call.s3.UploadPart", count_part(i))
    def hold_second_complete(**_kw: Any) -> None:  # returns None: the call goes on
        first_done.wait(60)

    stores[1].client.meta.events.register(
        "before-call.s3.CompleteMultipartUpload", hold_second_complete
    )

    def write(i: int) -> None:
        go.wait()
        try:
            results[i] = stores[i].put_file(files[i], _key(), size=size, sha256=_sha(files[i]),
                                            metadata={})  # fmt: skip
        except StorageError as e:
            results[i] = e
        finally:
            if i == 0:
                first_done.set()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for st in stores:
        st.close()
    assert parts == [3, 3]  # both uploaded everything
    assert not isinstance(results[0], Exception), results
    assert isinstance(results[1], ObjectExistsError), results
    c = seaweedfs.client()
    body = c.get_object(Bucket=plain_bucket, Key=_key())["Body"].read()
    assert hashlib.sha256(body).hexdigest() == _sha(files[0])
    assert c.list_multipart_uploads(Bucket=plain_bucket).get("Uploads", []) == []  # aborted
    # and a single PUT onto the taken key: 412 as well, nothing overwritten
    small = _file(tmp_path, "s", 1000)
    s = _store(seaweedfs.endpoint, plain_bucket)
    with pytest.raises(ObjectExistsError):
        s.put_file(small, _key(), size=1000, sha256=_sha(small), metadata={})
    s.close()
    body = c.get_object(Bucket=plain_bucket, Key=_key())["Body"].read()
    assert hashlib.sha256(body).hexdigest() == _sha(files[0])


def test_a_server_without_conditional_writes_gets_check_first_and_one_warning(
    plain_bucket: str, creds: None, tmp_path: Path, proxy: RecordingProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    def no_conditionals(req: Request) -> Answer | None:
        if "if-none-match" in req.headers:
            body = b"<Error><Code>NotImplemented</Code><Message>nope</Message></Error>"
            return 501, {"content-type": "application/xml"}, body
        return None

    proxy.answer = no_conditionals
    store = _store(proxy.endpoint, plain_bucket)
    with caplog.at_level(logging.WARNING, logger="rollcap"):
        for n, size in ((1, 1000), (2, 11 * MiB), (3, 2000)):
            src = _file(tmp_path, f"a{n}", size)
            info = store.put_file(src, _key(n), size=size, sha256=_sha(src), metadata={})
            assert info.size == size
        src = _file(tmp_path, "again", 1000)
        with pytest.raises(ObjectExistsError):  # found by HEAD first
            store.put_file(src, _key(1), size=1000, sha256=_sha(src), metadata={})
    store.close()
    warnings = [r for r in caplog.records if "conditional writes" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert not store.conditional_writes


def test_the_bucket_check_works_under_the_per_host_policy(
    plain_bucket: str, creds: None, proxy: RecordingProxy
) -> None:
    """The policy limits s3:ListBucket to the host's prefix, so HeadBucket (no
    prefix) answers 403: listing its own prefix must then do."""

    def deny_head_bucket(req: Request) -> Answer | None:
        if req.method == "HEAD" and req.path.strip("/") == plain_bucket:
            return 403, {}, b""
        if "list-type=2" in req.path and "prefix=caps%2Fh1%2F" not in req.path:
            body = b"<Error><Code>AccessDenied</Code><Message>denied</Message></Error>"
            return 403, {"content-type": "application/xml"}, body
        return None

    proxy.answer = deny_head_bucket
    cfg = OffloadConfig(destination=f"s3://{plain_bucket}/caps", endpoint_url=proxy.endpoint,
                        region="us-east-1")  # fmt: skip
    S3Storage(cfg, host="h1").check()  # its own prefix may be listed: fine
    with pytest.raises(StorageError) as e:
        S3Storage(cfg).check()  # no host: lists the whole prefix, denied
    assert e.value.code == "AccessDenied" and e.value.permanent
    listed = [r.path for r in proxy.requests if "list-type=2" in r.path]
    assert any("prefix=caps%2Fh1%2F" in p for p in listed), listed


def test_a_server_without_tagging_is_named_not_a_vague_error(
    plain_bucket: str, creds: None, tmp_path: Path, proxy: RecordingProxy
) -> None:
    def no_tagging(req: Request) -> Answer | None:
        if req.method == "GET" and req.path.endswith("?tagging"):
            body = b"<Error><Code>NotImplemented</Code><Message>no</Message></Error>"
            return 501, {"content-type": "application/xml"}, body
        return None

    proxy.answer = no_tagging
    store = _store(proxy.endpoint, plain_bucket)  # rollcap_tags by default
    src = _file(tmp_path, "a", 1000)
    with pytest.raises(VerificationError) as e:
        store.put_file(src, _key(), size=1000, sha256=_sha(src), metadata=META_HI)
    store.close()
    assert e.value.code == "SettingIgnored"
    assert "set rollcap_tags = false" in str(e.value), e.value
