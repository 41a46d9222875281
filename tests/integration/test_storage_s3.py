"""S3Storage against a real SeaweedFS: what is verified by whom, and the errors an
operator sees. Each test uses its own bucket (the server is shared per session)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rollcap.config.schema import OffloadConfig
from rollcap.storage import META, StorageError, VerificationError, open_storage
from rollcap.storage.base import SizeMismatch
from rollcap.storage.s3.storage import S3Storage
from tests.support.seaweedfs import SeaweedFS

pytestmark = pytest.mark.integration


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def bucket(seaweedfs: SeaweedFS) -> str:
    name = f"st-{uuid.uuid4().hex[:12]}"
    seaweedfs.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def creds(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in seaweedfs.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


def _cfg(seaweedfs: SeaweedFS, bucket: str, **kw: object) -> OffloadConfig:
    return OffloadConfig(
        destination=f"s3://{bucket}/caps",
        endpoint_url=seaweedfs.endpoint,
        region="us-east-1",
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def store(seaweedfs: SeaweedFS, bucket: str, creds: None) -> Iterator[S3Storage]:
    s = open_storage(_cfg(seaweedfs, bucket, s3_part_megabytes=5, concurrency=3))
    assert isinstance(s, S3Storage)
    yield s
    s.close()


def _file(tmp_path: Path, name: str, size: int) -> Path:
    p = tmp_path / name
    p.write_bytes(os.urandom(size))
    return p


@pytest.mark.parametrize("checksums", ["when_required", "when_supported"])
@pytest.mark.parametrize("size", [100_000, 12 * 1024 * 1024 + 17])
def test_upload_verify_download_roundtrip(
    seaweedfs: SeaweedFS, bucket: str, creds: None, tmp_path: Path, size: int, checksums: str
) -> None:
    store = open_storage(_cfg(seaweedfs, bucket, s3_part_megabytes=5, s3_checksums=checksums))
    src = _file(tmp_path, "a.pcap.zst", size)
    key = "caps/h1/2026/11/26/h1-eth0-20261126T120000Z-000001.pcap.zst"
    info = store.put_file(src, key, size=size, sha256=_sha(src), metadata={META["packets"]: "7"})
    assert info.size == size
    assert info.sha256 == _sha(src)
    assert info.metadata[META["packets"]] == "7"
    head = store.head(key)
    assert head is not None and head.size == size and head.sha256 == _sha(src)
    back = tmp_path / "back"
    store.download(key, back)
    assert back.read_bytes() == src.read_bytes()
    # no multipart upload is left behind after a completed one
    c = seaweedfs.client()
    assert c.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    store.close()


@pytest.mark.parametrize("recorded", [0, 80, 6 * 1024 * 1024 - 1, 6 * 1024 * 1024 + 1, 10**9])
def test_download_of_an_object_whose_size_is_not_the_recorded_one_is_refused(
    store: S3Storage, bucket: str, tmp_path: Path, recorded: int
) -> None:
    """fetch passes the size the entry records: another size is refused, one line
    naming the object, and no file (nor a temp file) is left behind."""
    src = _file(tmp_path, "a.pcap.zst", 6 * 1024 * 1024)
    key = "caps/h1/2026/11/26/h1-eth0-20261126T120000Z-000001.pcap.zst"
    store.put_file(src, key, size=6 * 1024 * 1024, sha256=_sha(src), metadata={})
    dest_dir = tmp_path / "dl"
    dest_dir.mkdir()
    with pytest.raises(SizeMismatch) as e:
        store.download(key, dest_dir / "x", size=recorded)
    msg = str(e.value)
    assert f"GET s3://{bucket}/{key} at " in msg and "\n" not in msg
    assert f"the object holds 6,291,456 bytes, its entry records {recorded:,}; refused" in msg
    assert list(dest_dir.iterdir()) == []
    store.download(key, dest_dir / "x", size=6 * 1024 * 1024)
    assert (dest_dir / "x").read_bytes() == src.read_bytes()


def test_download_of_an_empty_object_recorded_larger_is_refused(
    store: S3Storage, bucket: str, tmp_path: Path
) -> None:
    key = "caps/h1/2026/11/26/h1-eth0-20261126T120000Z-000002.pcap.zst"
    store.client.put_object(Bucket=bucket, Key=key, Body=b"")
    with pytest.raises(SizeMismatch, match="holds 0 bytes, its entry records 80; refused"):
        store.download(key, tmp_path / "x", size=80)
    assert not (tmp_path / "x").exists()


def test_server_refuses_a_single_put_whose_checksum_does_not_match(
    store: S3Storage, tmp_path: Path
) -> None:
    src = _file(tmp_path, "a", 1000)
    with pytest.raises(StorageError) as e:
        store.put_file(src, "caps/x/bad", size=1000, sha256="00" * 32, metadata={})
    assert e.value.code == "BadDigest"
    assert store.head("caps/x/bad") is None  # nothing corrupted became visible


def test_multipart_with_a_wrong_checksum_is_not_verified(store: S3Storage, tmp_path: Path) -> None:
    size = 11 * 1024 * 1024
    src = _file(tmp_path, "a", size)
    with pytest.raises(VerificationError):
        store.put_file(src, "caps/x/bad-mp", size=size, sha256="00" * 32, metadata={})


def test_head_of_a_missing_key_is_none(store: S3Storage) -> None:
    assert store.head("caps/nothing/here") is None


def test_list_is_in_key_order_with_metadata(store: S3Storage, tmp_path: Path) -> None:
    src = _file(tmp_path, "a", 10)
    keys = [f"caps/h/2026/11/26/h-eth0-20261126T1{m}0000Z-00000{m}.pcap" for m in (3, 1, 2)]
    for i, k in enumerate(keys):
        store.put_file(src, k, size=10, sha256=_sha(src), metadata={META["packets"]: str(i)})
    listed = list(store.list("caps/h/", with_metadata=True))
    assert [o.key for o in listed] == sorted(keys)
    assert {o.metadata[META["packets"]] for o in listed} == {"0", "1", "2"}
    assert [o.key for o in store.list("caps/h/2026/11/26/h-eth0-20261126T11")] == [keys[1]]
    store.delete(keys[0])
    store.delete(keys[0])  # already gone: no error
    assert store.head(keys[0]) is None


def test_cleanup_aborts_only_our_stale_multipart_uploads(
    store: S3Storage, seaweedfs: SeaweedFS, bucket: str
) -> None:
    c = seaweedfs.client()
    ours = c.create_multipart_upload(Bucket=bucket, Key="caps/me/1.pcap.zst")
    c.upload_part(
        Bucket=bucket, Key="caps/me/1.pcap.zst", UploadId=ours["UploadId"], PartNumber=1,
        Body=b"x" * 1000,
    )  # fmt: skip
    c.create_multipart_upload(Bucket=bucket, Key="caps/other/1.pcap.zst")
    aborted = store.cleanup_incomplete(lambda k: k.startswith("caps/me/"))
    assert aborted == ["caps/me/1.pcap.zst"]
    left = [u["Key"] for u in c.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    assert left == ["caps/other/1.pcap.zst"]


def test_check_names_a_missing_bucket(seaweedfs: SeaweedFS, creds: None) -> None:
    store = open_storage(_cfg(seaweedfs, f"missing-{uuid.uuid4().hex[:8]}"))
    with pytest.raises(StorageError) as e:
        store.check()
    assert e.value.code == "NoSuchBucket" and e.value.permanent
    assert seaweedfs.endpoint in str(e.value) and "missing-" in str(e.value)


@pytest.mark.parametrize(
    ("key_id", "secret", "code"),
    [
        (None, "wrong-secret", "SignatureDoesNotMatch"),
        ("nobody", "wrong-secret", "InvalidAccessKeyId"),
    ],
)
def test_check_names_bad_credentials(
    seaweedfs: SeaweedFS, bucket: str, monkeypatch: pytest.MonkeyPatch,
    key_id: str | None, secret: str, code: str,
) -> None:  # fmt: skip
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id or seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    store = open_storage(_cfg(seaweedfs, bucket))
    with pytest.raises(StorageError) as e:
        store.check()
    assert e.value.code == code and e.value.permanent
    assert bucket in str(e.value) and seaweedfs.endpoint in str(e.value)


def test_systemd_credentials_file_is_used(
    seaweedfs: SeaweedFS, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "nonexistent"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "nonexistent-config"))
    creddir = tmp_path / "creds"
    creddir.mkdir()
    (creddir / "s3-credentials").write_text(
        f"[default]\naws_access_key_id = {seaweedfs.access_key}\n"
        f"aws_secret_access_key = {seaweedfs.secret_key}\n"
    )
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creddir))
    store = open_storage(_cfg(seaweedfs, bucket))
    store.check()  # would raise NoCredentials without the file
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    with pytest.raises(StorageError) as e:
        open_storage(_cfg(seaweedfs, bucket)).check()
    assert e.value.code == "NoCredentials"


def test_multipart_verified_from_part_digests(store: S3Storage, tmp_path: Path) -> None:
    size = 12 * 1024 * 1024 + 5
    src = _file(tmp_path, "a", size)
    data = src.read_bytes()
    ps = store.part_size
    digests = [hashlib.sha256(data[i : i + ps]).digest() for i in range(0, size, ps)]
    info = store.put_file(
        src, "caps/x/parts-ok", size=size, sha256=_sha(src), metadata={}, part_sha256=digests
    )
    assert info.size == size
    # the digests go out with the parts: the server itself refuses a part that
    # does not match them, and the object never becomes visible
    wrong = [*digests[:-1], hashlib.sha256(b"not the last part").digest()]
    with pytest.raises(VerificationError) as e:
        store.put_file(
            src, "caps/x/parts-bad", size=size, sha256=_sha(src), metadata={}, part_sha256=wrong
        )
    print(e.value.code, e.value)
    assert store.head("caps/x/parts-bad") is None


def test_bodies_are_not_hashed_again_for_signing(store: S3Storage, tmp_path: Path) -> None:
    """Each body carries a SHA-256 the server verifies; botocore must not also
    hash it for the signature (it would over plain http by default)."""
    sent: list[tuple[str, str, str]] = []

    def capture(request: object, **_kw: object) -> None:
        h = request.headers  # type: ignore[attr-defined]
        sent.append((h.get("x-amz-content-sha256", b"").decode(),
                     h.get("x-amz-checksum-sha256", b"").decode(),
                     request.url))  # type: ignore[attr-defined]  # fmt: skip

    store.client.meta.events.register("before-send.s3.PutObject", capture)
    store.client.meta.events.register("before-send.s3.UploadPart", capture)
    small = _file(tmp_path, "s", 1000)
    store.put_file(small, "caps/x/small", size=1000, sha256=_sha(small), metadata={})
    size = 11 * 1024 * 1024
    big = _file(tmp_path, "b", size)
    data = big.read_bytes()
    ps = store.part_size
    digests = [hashlib.sha256(data[i : i + ps]).digest() for i in range(0, size, ps)]
    store.put_file(big, "caps/x/big", size=size, sha256=_sha(big), metadata={}, part_sha256=digests)
    assert len(sent) == 1 + len(digests)
    assert all(signed == "UNSIGNED-PAYLOAD" for signed, _c, _u in sent), sent
    assert all(c for _s, c, _u in sent)  # ... because every body has a checksum


def test_every_capture_upload_carries_if_none_match(store: S3Storage, tmp_path: Path) -> None:
    """The write-once host policy (storage.s3.policy) allows object creation only
    with If-None-Match: the single PUT and the multipart completion carry it;
    CreateMultipartUpload and UploadPart take none (the policy exempts them)."""
    sent: list[str] = []

    def record(params: dict[str, Any], model: Any, **_kw: Any) -> None:
        sent.append(f"{model.name} {params['headers'].get('If-None-Match', '-')}")

    for op in ("PutObject", "CreateMultipartUpload", "CompleteMultipartUpload"):
        store.client.meta.events.register(f"before-call.s3.{op}", record)
    for name, size in (("small", 100_000), ("large", 9 * 1024 * 1024)):
        src = _file(tmp_path, name, size)
        store.put_file(src, f"caps/h1/{name}", size=size, sha256=_sha(src), metadata={})
    assert sent == ["PutObject *", "CreateMultipartUpload -", "CompleteMultipartUpload *"]


def test_index_entries_are_written_once(store: S3Storage) -> None:
    """put_bytes (manifest entries) sends If-None-Match: * like the captures do,
    so a write-once policy (storage.s3.policy) allows it and nothing overwrites an
    entry; a rewrite after a crash (the same key, so the same bytes) is a 412
    that counts as written."""
    sent: list[str] = []

    def put(params: dict[str, Any], **_kw: Any) -> None:
        sent.append(params["headers"].get("If-None-Match", "-"))

    store.client.meta.events.register("before-call.s3.PutObject", put)
    key = "caps/_index/manifest/v1/date=2026-11-26/hour=12/minute=00/h1~k"
    store.put_bytes(key, b'{"a":1}\n', "application/x-ndjson")
    store.put_bytes(key, b'{"a":2}\n', "application/x-ndjson")  # 412: no error
    assert sent == ["*", "*"]
    body = store.client.get_object(Bucket=store.bucket, Key=key)["Body"].read()
    assert body == b'{"a":1}\n'
