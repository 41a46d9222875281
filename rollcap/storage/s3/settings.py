"""What rollcap asks S3 to do with every object, and whether the server did it.

One place for the ``[offload]`` S3 settings (storage class, server-side
encryption, tags, Object Lock retention): the upload arguments sent with
PutObject and CreateMultipartUpload alike, and the check of HEAD (and
GetObjectTagging) before the local file is deleted. A server that silently
ignores a setting (an S3-compatible one without KMS, a bucket without Object
Lock) is named here, setting by setting. Pure logic: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from rollcap.config.schema import OffloadConfig

# Retain-until dates come back in whole seconds.
_DATE_SLACK = timedelta(seconds=1)
# On the "already exists" path the upload time is only known as LastModified,
# which S3 may set at the start of a long multipart upload.
_EXISTING_SLACK = timedelta(hours=1)


@dataclass(frozen=True)
class ObjectSettings:
    storage_class: str = ""
    sse: str = ""
    kms_key_id: str = ""
    static_tags: Mapping[str, str] = field(default_factory=dict)
    rollcap_tags: bool = False
    lock_mode: str = ""
    lock_days: int = 0

    @classmethod
    def from_config(cls, cfg: OffloadConfig) -> ObjectSettings:
        return cls(
            storage_class=cfg.storage_class, sse=cfg.sse, kms_key_id=cfg.sse_kms_key_id,
            static_tags=dict(cfg.tags), rollcap_tags=cfg.rollcap_tags,
            lock_mode=cfg.object_lock_mode, lock_days=cfg.object_lock_days,
        )  # fmt: skip

    def tags(self, host: str, iface: str) -> dict[str, str]:
        """The tags of an object of host and iface (rollcap's own last: they win)."""
        own = {"host": host, "iface": iface, "source": "rollcap"} if self.rollcap_tags else {}
        return {**self.static_tags, **{k: v for k, v in own.items() if v}}

    def retain_until(self, now: datetime) -> datetime | None:
        if not self.lock_mode:
            return None
        return now.astimezone(UTC).replace(microsecond=0) + timedelta(days=self.lock_days)

    def upload_args(self, tags: Mapping[str, str], retain_until: datetime | None) -> dict[str, Any]:
        """ExtraArgs for PutObject and CreateMultipartUpload (s3transfer passes
        them to both)."""
        args: dict[str, Any] = {}
        if self.storage_class:
            args["StorageClass"] = self.storage_class
        if self.sse:
            args["ServerSideEncryption"] = self.sse
            if self.kms_key_id:
                args["SSEKMSKeyId"] = self.kms_key_id
        if tags:
            args["Tagging"] = encode_tags(tags)
        if self.lock_mode and retain_until is not None:
            args["ObjectLockMode"] = self.lock_mode
            args["ObjectLockRetainUntilDate"] = retain_until
        return args


def encode_tags(tags: Mapping[str, str]) -> str:
    """x-amz-tagging: URL query encoding."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in tags.items())


def _kms_matches(wanted: str, got: str) -> bool:
    """HEAD names the key by its ARN; the config may give a key id or an alias.
    An alias cannot be resolved without kms:DescribeKey: any key then passes."""
    if not got:
        return False
    if wanted.startswith("alias/") or ":alias/" in wanted:
        return True
    if wanted.startswith("arn:"):
        return got == wanted
    return got == wanted or got.endswith(f":key/{wanted}")


def _as_utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def check_head(
    s: ObjectSettings, head: Mapping[str, Any], *, retain_until: datetime | None = None
) -> list[str]:
    """What the HEAD response shows was not applied, one line per setting.

    ``retain_until``: the date sent with this upload; None on the "already
    exists" path, where the object's LastModified + object_lock_days is the bar."""
    problems = []
    if s.storage_class:
        got = head.get("StorageClass") or "STANDARD"  # AWS omits the header for STANDARD
        if got != s.storage_class:
            problems.append(f"storage_class: asked for {s.storage_class}, the object has {got}")
    if s.sse:
        got = head.get("ServerSideEncryption") or "none"
        if got != s.sse:
            problems.append(f"sse: asked for {s.sse}, the object has {got}")
        elif s.kms_key_id and not _kms_matches(s.kms_key_id, str(head.get("SSEKMSKeyId") or "")):
            problems.append(
                f"sse_kms_key_id: asked for {s.kms_key_id}, the object is encrypted with "
                f"{head.get('SSEKMSKeyId') or 'no named key'}"
            )
    if s.lock_mode:
        mode = head.get("ObjectLockMode") or "none"
        until = _as_utc(head.get("ObjectLockRetainUntilDate"))
        if retain_until is not None:
            bar = retain_until - _DATE_SLACK
        else:
            modified = _as_utc(head.get("LastModified")) or datetime.now(UTC)
            bar = modified + timedelta(days=s.lock_days) - _EXISTING_SLACK
        if mode != s.lock_mode:
            problems.append(
                f"object_lock_mode: asked for {s.lock_mode}, the object has {mode} (was the "
                "bucket created with Object Lock?)"
            )
        elif until is None or until < bar:
            shown = until.strftime("%Y-%m-%dT%H:%M:%SZ") if until else "no date"
            problems.append(
                f"object_lock_days: asked for {s.lock_days} days (until at least "
                f"{bar:%Y-%m-%dT%H:%M:%SZ}), the object is locked until {shown}"
            )
    return problems


def check_tags(wanted: Mapping[str, str], tag_set: list[dict[str, str]]) -> list[str]:
    """What GetObjectTagging's TagSet lacks of the tags sent."""
    got = {t.get("Key", ""): t.get("Value", "") for t in tag_set}
    wrong = [k for k, v in wanted.items() if got.get(k) != v]
    if not wrong:
        return []
    return [
        "tags: the object lacks "
        + ", ".join(f"{k}={wanted[k]}" for k in wrong)
        + (f" (it has {len(got)} tags)" if got else " (it has none)")
    ]
