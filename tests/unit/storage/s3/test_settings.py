"""The [offload] S3 settings: validation, what is sent, how HEAD is judged, the
per-host policy, and the verdict on an existing object. Pure logic; the same
against SeaweedFS is in tests/integration/test_storage_s3_settings.py."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rollcap.config.load import parse_config
from rollcap.config.schema import OffloadConfig
from rollcap.errors import ConfigError
from rollcap.offload.compress import Compressed
from rollcap.offload.existing import judge
from rollcap.storage.base import META, ObjectInfo
from rollcap.storage.s3.policy import host_scope, iam_policy
from rollcap.storage.s3.settings import ObjectSettings, check_head, check_tags, encode_tags

REPO = Path(__file__).resolve().parents[4]
NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def _problems(body: str, dest: str = "s3://b-1/p") -> list[str]:
    try:
        parse_config(f'[offload]\ndestination = "{dest}"\n{body}')
    except ConfigError as e:
        return e.problems
    return []


def test_a_full_enterprise_config_is_valid() -> None:
    cfg = parse_config(
        '[offload]\ndestination = "s3://b-1/p"\nstorage_class = "INTELLIGENT_TIERING"\n'
        'sse = "aws:kms"\nsse_kms_key_id = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd"\n'
        '[offload.tags]\nteam = "netops"\n"cost center" = "4711"\n'
    )
    assert cfg.offload.tags == {"team": "netops", "cost center": "4711"}


@pytest.mark.parametrize(
    ("body", "dest", "words"),
    [
        ('storage_class = "GLACIERX"', "s3://b-1/p", "offload.storage_class: must be one of"),
        ('sse = "aws:kms:dsse"', "s3://b-1/p", "offload.sse: must be one of"),
        ('sse_kms_key_id = "alias/x"', "s3://b-1/p", 'only with sse = "aws:kms"'),
        ('sse = "aws:kms"\nsse_kms_key_id = "my key"', "s3://b-1/p", "a KMS key id"),
        ('object_lock_mode = "GOVERNANCE"', "s3://b-1/p", "object_lock_days: must be at least 1"),
        ("object_lock_days = 3", "s3://b-1/p", "object_lock_days: needs object_lock_mode"),
        ('object_lock_mode = "LEGAL"', "s3://b-1/p", "offload.object_lock_mode: must be one of"),
        ('tags = { host = "x" }', "s3://b-1/p", "tag 'host' is rollcap's own"),
        ('tags = { "aws:x" = "y" }', "s3://b-1/p", "not starting with aws:"),
        ('tags = { a = "b&c" }', "s3://b-1/p", "tag 'a': the value may have"),
        ("tags = { a = 1 }", "s3://b-1/p", "offload.tags.a: must be a string"),
        ('sse = "AES256"', "file:///var/x", "offload.sse: only for s3:// destinations"),
        ('storage_class = "STANDARD"', "file:///var/x", "only for s3:// destinations"),
    ],
)
def test_settings_errors_name_the_key_and_what_is_allowed(
    body: str, dest: str, words: str
) -> None:
    problems = _problems(body, dest)
    assert len(problems) == 1 and words in problems[0], problems


def test_too_many_tags() -> None:
    body = "tags = { " + ", ".join(f't{i} = "v"' for i in range(8)) + " }"
    assert "at most 7 tags" in _problems(body)[0]


def test_upload_args_carry_every_setting() -> None:
    s = ObjectSettings("STANDARD_IA", "aws:kms", "alias/pcap", {"team": "net ops"}, True,
                       "COMPLIANCE", 30)  # fmt: skip
    tags = s.tags("h1", "eth0")
    assert tags == {"team": "net ops", "host": "h1", "iface": "eth0", "source": "rollcap"}
    until = s.retain_until(NOW)
    assert until == NOW + timedelta(days=30)
    assert s.upload_args(tags, until) == {
        "StorageClass": "STANDARD_IA",
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "alias/pcap",
        "Tagging": "team=net%20ops&host=h1&iface=eth0&source=rollcap",
        "ObjectLockMode": "COMPLIANCE",
        "ObjectLockRetainUntilDate": until,
    }
    assert ObjectSettings().upload_args({}, None) == {}
    assert encode_tags({"a/b": "c=d"}) == "a%2Fb=c%3Dd"


def _head(**kw: object) -> dict[str, object]:
    return {"StorageClass": "STANDARD_IA", "ServerSideEncryption": "AES256",
            "ObjectLockMode": "GOVERNANCE",
            "ObjectLockRetainUntilDate": NOW + timedelta(days=7), "LastModified": NOW,
            **kw}  # fmt: skip


S = ObjectSettings("STANDARD_IA", "AES256", "", {}, False, "GOVERNANCE", 7)


def test_head_showing_every_setting_passes() -> None:
    assert check_head(S, _head(), retain_until=NOW + timedelta(days=7)) == []
    assert check_head(S, _head()) == []  # the exists path: LastModified + days


@pytest.mark.parametrize(
    ("head", "words"),
    [
        ({"StorageClass": None}, "storage_class: asked for STANDARD_IA, the object has STANDARD"),
        ({"ServerSideEncryption": None}, "sse: asked for AES256, the object has none"),
        ({"ObjectLockMode": None}, "object_lock_mode: asked for GOVERNANCE, the object has none"),
        ({"ObjectLockRetainUntilDate": NOW + timedelta(days=1)}, "object_lock_days: asked for 7"),
    ],
)
def test_head_names_the_setting_the_server_ignored(head: dict[str, object], words: str) -> None:
    problems = check_head(S, _head(**head), retain_until=NOW + timedelta(days=7))
    assert len(problems) == 1 and words in problems[0], problems


def test_standard_class_may_be_omitted_from_head_as_aws_does() -> None:
    s = ObjectSettings(storage_class="STANDARD")
    assert check_head(s, {}) == []
    assert check_head(ObjectSettings(storage_class="GLACIER"), {}) != []


@pytest.mark.parametrize(
    ("wanted", "got", "ok"),
    [
        ("1234abcd-12ab-34cd-56ef-1234567890ab",
         "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", True),
        ("1234abcd-12ab-34cd-56ef-1234567890ab",
         "arn:aws:kms:eu-west-1:111122223333:key/ffffffff-12ab-34cd-56ef-1234567890ab", False),
        ("arn:aws:kms:eu-west-1:111122223333:key/k1", "arn:aws:kms:eu-west-1:111122223333:key/k1",
         True),
        ("alias/pcap", "arn:aws:kms:eu-west-1:111122223333:key/k1", True),  # cannot resolve
        ("alias/pcap", "", False),
    ],
)  # fmt: skip
def test_kms_key_in_head(wanted: str, got: str, ok: bool) -> None:
    s = ObjectSettings(sse="aws:kms", kms_key_id=wanted)
    head = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": got}
    assert (check_head(s, head) == []) is ok


def test_tags_missing_from_the_object_are_named() -> None:
    wanted = {"team": "netops", "host": "h1"}
    assert check_tags(wanted, [{"Key": "host", "Value": "h1"}, {"Key": "team", "Value": "netops"},
                               {"Key": "other", "Value": "x"}]) == []  # fmt: skip
    assert check_tags(wanted, [{"Key": "host", "Value": "h1"}]) == [
        "tags: the object lacks team=netops (it has 1 tags)"
    ]
    assert "(it has none)" in check_tags(wanted, [])[0]


@pytest.mark.parametrize(
    ("template", "prefix", "scope", "per_host"),
    [
        ("{prefix}/{host}/{start:%Y}/{iface}-{seq}{ext}", "caps", "caps/h1/", True),
        ("{prefix}/{host}/{start:%Y}/{iface}-{seq}{ext}", "", "h1/", True),
        ("{prefix}/{start:%Y}/{host}-{seq}{ext}", "caps", "caps/", False),
        ("{prefix}/site-a/{host}-{start:%Y}-{seq}{ext}", "caps", "caps/site-a/", False),
    ],
)
def test_host_scope(template: str, prefix: str, scope: str, per_host: bool) -> None:
    assert host_scope(template, prefix, "h1") == (scope, per_host)


def test_the_policy_grants_no_delete_and_follows_the_settings() -> None:
    plain = OffloadConfig(destination="s3://b-1/caps", rollcap_tags=False)
    p = iam_policy(plain, "h1", plain.key_template)
    own = p["Statement"][0]
    assert own["Resource"] == "arn:aws:s3:::b-1/caps/h1/*"
    # s3:PutObject: in the write-once statements (tests/unit/storage/s3/test_policy.py)
    assert own["Action"] == ["s3:GetObject", "s3:AbortMultipartUpload"]
    unconditioned = iam_policy(plain, "h1", plain.key_template, write_once=False)
    assert unconditioned["Statement"][0]["Action"][0] == "s3:PutObject"
    text = str(p)
    assert "Delete" not in text and "Bypass" not in text and "LegalHold" not in text
    full = OffloadConfig(destination="s3://b-1/caps", object_lock_mode="COMPLIANCE",
                         object_lock_days=1, sse="aws:kms", region="eu-west-1")  # fmt: skip
    p = iam_policy(full, "h1", full.key_template)
    assert "s3:PutObjectRetention" in p["Statement"][0]["Action"]
    assert "s3:PutObjectTagging" in p["Statement"][0]["Action"]  # rollcap_tags by default
    kms = p["Statement"][-1]
    assert kms["Action"] == ["kms:GenerateDataKey", "kms:Decrypt"]
    assert kms["Resource"].startswith("arn:aws:kms:eu-west-1:")


def _compressed(size: int = 100, sha: str = "ab" * 32) -> Compressed:
    return Compressed(size, sha, 1000, "0badf00d", 7, None, None, 1)


def _existing(size: int = 100, sha: str = "ab" * 32, crc: str = "0badf00d") -> ObjectInfo:
    meta = {META["sha256"]: sha, META["pcap_crc32"]: crc, META["pcap_bytes"]: "1000",
            META["packets"]: "7"}  # fmt: skip
    return ObjectInfo("caps/k", size, meta, checksum="c2VydmVy")


@pytest.mark.parametrize(
    ("existing", "same", "stored", "words"),
    [
        (_existing(), True, True, ""),
        (_existing(), False, False, "server's checksum c2VydmVy of other bytes (a damaged"),
        (_existing(size=50), False, False, "50 bytes instead of 100 (a damaged upload)"),
        (_existing(), None, True, ""),  # no server checksum: metadata, as before
        (_existing(size=50), None, False, "a damaged upload"),
        (_existing(sha="cd" * 32), False, True, ""),  # same pcap, other compression
        (_existing(sha="cd" * 32, crc="00000000"), False, False, "different content"),
    ],
)
def test_the_verdict_on_an_existing_object(
    existing: ObjectInfo, same: bool | None, stored: bool, words: str
) -> None:
    v = judge(existing, _compressed(), same_bytes=same, where="s3://b")
    assert v.stored is stored
    assert words in v.reason
    if not stored:
        assert "caps/k" in v.reason and "never overwritten" in v.reason


def test_a_broken_aws_profile_is_one_clear_line(tmp_path: Path) -> None:
    """botocore's own error while opening S3 storage: rollcap's error, not a traceback."""
    cfg = tmp_path / "rollcap.toml"
    cfg.write_text('[offload]\ndestination = "s3://b-1/p"\n')
    p = subprocess.run(
        [sys.executable, "-m", "rollcap", "list", "--since", "-1h", "--config", str(cfg)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "AWS_PROFILE": "nonesuch",
             "AWS_CONFIG_FILE": str(tmp_path / "none"), "HOME": str(tmp_path)},
    )  # fmt: skip
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [
        "rollcap: opening s3://b-1/p failed: cannot open s3://b-1/p at AWS: The config profile "
        "(nonesuch) could not be found (ProfileNotFound)"
    ]
