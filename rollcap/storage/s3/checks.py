"""The S3 checks of `rollcap check-destination` (rollcap.commands.check_destination),
one CheckResult each."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from rollcap.config.schema import OffloadConfig
from rollcap.storage.base import CheckResult, CheckStatus, StorageError
from rollcap.storage.s3.policy import host_scope, index_pattern
from rollcap.storage.s3.settings import encode_tags
from rollcap.storage.s3.storage import S3Storage

_CREDENTIAL_CODES = {
    "SignatureDoesNotMatch": "the secret access key does not belong to access key {key}",
    "InvalidAccessKeyId": "the server does not know access key {key}",
    "ExpiredToken": "the session token has expired",
    "InvalidToken": "the session token is not valid",
    "NoCredentials": "no AWS credentials found ($CREDENTIALS_DIRECTORY/s3-credentials, "
    "environment, ~/.aws, instance role)",
}


# A write-once host policy (storage.s3.policy) allows these probes through
# s3:ObjectCreationOperation = false, a key some servers do not evaluate
_WRITE_ONCE_HINT = (
    "; a server that does not evaluate s3:ObjectCreationOperation denies it under the "
    "write-once policy: print it with --no-write-once-condition"
)


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code") or "")


def _status(e: ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _say(e: ClientError) -> str:
    code = _code(e) or str(_status(e))
    msg = e.response.get("Error", {}).get("Message") or ""
    return f"{code}: {msg}" if msg and msg != code else code


class S3Checks:
    """The checks, in order; each a CheckResult."""

    def __init__(self, store: S3Storage, cfg: OffloadConfig, host: str) -> None:
        self.store = store
        self.cfg = cfg
        self.c: Any = store.client
        self.bucket = store.bucket
        self.host = host
        self.scope = store.scope or host_scope(cfg.key_template, cfg.prefix, host)[0]
        probe = f"rollcap-check-{uuid.uuid4().hex[:12]}"
        # a capture-like key under the host's prefix, and an index entry naming
        # this host (storage.s3.policy.index_pattern); both only ever started as
        # multipart uploads and aborted: hosts may not delete
        self.probe = f"{self.scope}.{probe}"
        self.index_probe = index_pattern(cfg.prefix, host).replace("*/", f"{probe}/", 1)
        self.index_probe = self.index_probe.replace("~*", f"~{probe}")
        self.existing_key = ""

    def run(self) -> Iterator[CheckResult]:
        first = self._credentials_and_bucket()
        yield from first
        if any(r.status is CheckStatus.FAIL for r in first):
            for name in ("permissions", "bucket settings"):
                yield CheckResult(CheckStatus.SKIP, name, "not checked: fix the above first")
            return
        yield self._list()
        yield self._head()
        yield from self._put_and_abort()
        yield from self._index_entry()
        yield self._list_uploads()
        yield from self._settings_probes()
        yield self._object_lock()
        yield self._encryption()

    # -- the checks ---------------------------------------------------------

    def _credentials_and_bucket(self) -> list[CheckResult]:
        creds = self.store.session.get_credentials()
        if creds is None:
            return [
                CheckResult(CheckStatus.FAIL, "credentials", _CREDENTIAL_CODES["NoCredentials"])
            ]
        key = creds.access_key
        where = f"access key {key} ({creds.method})"
        try:
            self.store.check()
        except StorageError as e:
            if e.code in _CREDENTIAL_CODES:
                why = _CREDENTIAL_CODES[e.code].format(key=key)
                return [CheckResult(CheckStatus.FAIL, "credentials", f"{why} ({e.code}): {e}")]
            if e.code == "NoSuchBucket":
                return [
                    CheckResult(CheckStatus.OK, "credentials", f"{where} accepted"),
                    CheckResult(
                        CheckStatus.FAIL,
                        "bucket",
                        f"{self.bucket} does not exist at {self.store.endpoint}",
                    ),
                ]
            if e.code == "AccessDenied":
                return [
                    CheckResult(CheckStatus.OK, "credentials", f"{where} accepted"),
                    CheckResult(
                        CheckStatus.FAIL,
                        "bucket",
                        f"access denied: {e} (needs s3:ListBucket on {self.scope or 'the prefix'})",
                    ),
                ]
            return [CheckResult(CheckStatus.FAIL, "endpoint", f"{e}")]
        return [
            CheckResult(CheckStatus.OK, "credentials", f"{where} accepted"),
            CheckResult(CheckStatus.OK, "bucket", f"{self.bucket} at {self.store.endpoint}"),
        ]

    def _call(
        self, name: str, ok: str, action: str, fn: Callable[[], Any], fine: tuple[str, ...] = ()
    ) -> tuple[CheckResult, Any]:
        """fn's answer (or an error code in ``fine``) means the action is allowed."""
        try:
            return CheckResult(CheckStatus.OK, name, ok), fn()
        except ClientError as e:
            if _code(e) in fine or str(_status(e)) in fine:
                return CheckResult(CheckStatus.OK, name, ok), None
            hint = f" (needs {action})" if _code(e) in ("AccessDenied", "") else ""
            return CheckResult(CheckStatus.FAIL, name, f"{_say(e)}{hint}"), None

    def _list(self) -> CheckResult:
        res, r = self._call(
            "list",
            f"s3:ListBucket on {self.scope or '(bucket root)'}",
            "s3:ListBucket",
            lambda: self.c.list_objects_v2(Bucket=self.bucket, Prefix=self.scope, MaxKeys=1),
        )
        if r:
            self.existing_key = next((o["Key"] for o in r.get("Contents", [])), "")
        return res

    def _head(self) -> CheckResult:
        key = self.existing_key or self.probe
        try:
            self.c.head_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            if _status(e) == 404:
                return CheckResult(
                    CheckStatus.OK, "head", "s3:GetObject (HEAD of a missing key: 404)"
                )
            if _status(e) == 403 and not self.existing_key:
                # S3 answers 403 for a missing key to a caller without s3:ListBucket
                # on it; with no object of ours yet, that is all one can tell
                return CheckResult(
                    CheckStatus.WARN,
                    "head",
                    "403 for a missing key: cannot tell s3:GetObject "
                    "until this host has stored an object",
                )
            return CheckResult(CheckStatus.FAIL, "head", f"{_say(e)} (needs s3:GetObject)")
        return CheckResult(CheckStatus.OK, "head", f"s3:GetObject ({key})")

    def _start_and_abort(
        self, name: str, action: str, extra: dict[str, Any], ok: str, key: str = ""
    ) -> Iterator[CheckResult]:
        key = key or self.probe
        try:
            up = self.c.create_multipart_upload(Bucket=self.bucket, Key=key, **extra)
        except ClientError as e:
            hint = f" (needs {action}{_WRITE_ONCE_HINT})" if _code(e) == "AccessDenied" else ""
            yield CheckResult(CheckStatus.FAIL, name, f"{_say(e)}{hint}")
            return
        yield CheckResult(CheckStatus.OK, name, ok)
        aborted = self._abort(up["UploadId"], key)
        if not extra or aborted.status is CheckStatus.FAIL:  # the plain one stands for the abort
            yield aborted

    def _abort(self, upload_id: str, key: str) -> CheckResult:
        try:
            self.c.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as e:
            return CheckResult(
                CheckStatus.FAIL,
                "abort multipart",
                f"{_say(e)} (needs s3:AbortMultipartUpload on {key}; "
                "an incomplete upload of it is left)",
            )
        return CheckResult(CheckStatus.OK, "abort multipart", "s3:AbortMultipartUpload")

    def _put_and_abort(self) -> Iterator[CheckResult]:
        yield from self._start_and_abort(
            "put",
            "s3:PutObject",
            {},
            f"s3:PutObject below {self.scope or '(bucket root)'} "
            "(a multipart upload started and aborted)",
        )

    def _index_entry(self) -> Iterator[CheckResult]:
        if not self.store.manifests:
            yield CheckResult(
                CheckStatus.SKIP, "put index entry", "this key template writes no index entries"
            )
            return
        yield from self._start_and_abort(
            "put index entry",
            f"s3:PutObject on {index_pattern(self.cfg.prefix, self.host)}",
            {},
            f"s3:PutObject of an index entry naming {self.host} (started and aborted)",
            key=self.index_probe,
        )

    def _list_uploads(self) -> CheckResult:
        return self._call(
            "list uploads",
            "s3:ListBucketMultipartUploads",
            "s3:ListBucketMultipartUploads",
            lambda: self.c.list_multipart_uploads(
                Bucket=self.bucket, Prefix=self.scope, MaxUploads=1
            ),
        )[0]

    def _settings_probes(self) -> Iterator[CheckResult]:
        s = self.store.settings
        if s.storage_class:
            yield from self._start_and_abort(
                "storage class",
                "s3:PutObject",
                {"StorageClass": s.storage_class},
                f"{s.storage_class} accepted",
            )
        else:
            yield CheckResult(
                CheckStatus.SKIP, "storage class", "storage_class not set: the bucket's default"
            )
        if s.sse:
            extra = {"ServerSideEncryption": s.sse}
            action = "s3:PutObject"
            if s.kms_key_id:
                extra["SSEKMSKeyId"] = s.kms_key_id
            if s.sse == "aws:kms":
                action = "kms:GenerateDataKey on the key"
            yield from self._start_and_abort(
                "encryption", action, extra, f"{s.sse} {s.kms_key_id}".strip() + " accepted"
            )
        else:
            yield CheckResult(
                CheckStatus.SKIP, "encryption", "sse not set: the bucket's default encryption"
            )
        tags = s.tags("host", "iface")
        if tags:
            yield from self._start_and_abort(
                "put tagging",
                "s3:PutObjectTagging",
                {"Tagging": encode_tags(tags)},
                "s3:PutObjectTagging",
            )
            yield self._call(
                "get tagging",
                "s3:GetObjectTagging (to verify tags)",
                "s3:GetObjectTagging",
                lambda: self.c.get_object_tagging(Bucket=self.bucket, Key=self.probe),
                fine=("NoSuchKey", "404"),
            )[0]
        else:
            yield CheckResult(CheckStatus.SKIP, "put tagging", "no tags configured")
        if s.lock_mode:
            until = s.retain_until(datetime.now(UTC))
            put = list(self._start_and_abort(
                "put retention",
                "s3:PutObjectRetention",
                {"ObjectLockMode": s.lock_mode, "ObjectLockRetainUntilDate": until},
                f"s3:PutObjectRetention ({s.lock_mode}, {s.lock_days} days)",
            ))  # fmt: skip
            if put[0].status is CheckStatus.FAIL and "InvalidRequest" in put[0].detail:
                put[0] = CheckResult(
                    CheckStatus.FAIL, put[0].name, put[0].detail + " (has the bucket Object Lock?)"
                )
            yield from put
            if put[0].status is CheckStatus.FAIL:
                yield CheckResult(
                    CheckStatus.SKIP, "get retention", "not checked: put retention failed"
                )
                return
            yield self._call(
                "get retention",
                "s3:GetObjectRetention (to verify retention)",
                "s3:GetObjectRetention",
                lambda: self.c.get_object_retention(Bucket=self.bucket, Key=self.probe),
                fine=("NoSuchKey", "404", "NoSuchObjectLockConfiguration"),
            )[0]
        else:
            yield CheckResult(CheckStatus.SKIP, "put retention", "object_lock_mode not set")

    def _object_lock(self) -> CheckResult:
        mode = self.cfg.object_lock_mode
        try:
            r = self.c.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as e:
            if _code(e) == "ObjectLockConfigurationNotFoundError" or _status(e) == 404:
                if mode:
                    return CheckResult(
                        CheckStatus.FAIL,
                        "bucket object lock",
                        (
                            f"object_lock_mode = {mode!r}, but {self.bucket} has no Object Lock "
                            "(enabled when a bucket is created, or on a versioned one)"
                        ),
                    )
                return CheckResult(
                    CheckStatus.OK, "bucket object lock", "none (object_lock_mode not set)"
                )
            return CheckResult(
                CheckStatus.WARN,
                "bucket object lock",
                f"cannot read it: {_say(e)} (needs s3:GetBucketObjectLockConfiguration)",
            )
        conf = r.get("ObjectLockConfiguration", {})
        enabled = conf.get("ObjectLockEnabled") == "Enabled"
        rule = conf.get("Rule", {}).get("DefaultRetention", {})
        default = (
            f"; default retention {rule.get('Mode')} "
            f"{rule.get('Days') or rule.get('Years')} {'days' if rule.get('Days') else 'years'}"
            if rule
            else ""
        )
        if mode and not enabled:
            return CheckResult(
                CheckStatus.FAIL,
                "bucket object lock",
                f"object_lock_mode = {mode!r}, but Object Lock is not enabled on {self.bucket}",
            )
        if not enabled:
            return CheckResult(
                CheckStatus.OK, "bucket object lock", "none (object_lock_mode not set)"
            )
        asked = (
            f"objects get {mode} for {self.cfg.object_lock_days} days"
            if mode
            else ("object_lock_mode not set: the bucket's default applies")
        )
        return CheckResult(CheckStatus.OK, "bucket object lock", f"enabled{default}; {asked}")

    def _encryption(self) -> CheckResult:
        sse = self.cfg.sse
        try:
            r = self.c.get_bucket_encryption(Bucket=self.bucket)
        except ClientError as e:
            if _code(e) == "ServerSideEncryptionConfigurationNotFoundError" or _status(e) == 404:
                if sse:
                    return CheckResult(
                        CheckStatus.OK,
                        "bucket encryption",
                        f"no default; rollcap asks for {sse} with every upload",
                    )
                return CheckResult(
                    CheckStatus.WARN,
                    "bucket encryption",
                    "no default encryption and sse not set: objects may be stored unencrypted",
                )
            return CheckResult(
                CheckStatus.WARN,
                "bucket encryption",
                f"cannot read it: {_say(e)} (needs s3:GetEncryptionConfiguration)",
            )
        rules = r.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
        by_default = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else {}
        algo = by_default.get("SSEAlgorithm", "none")
        key = by_default.get("KMSMasterKeyID", "")
        default = f"{algo} {key}".strip()
        if not sse:
            return CheckResult(
                CheckStatus.OK, "bucket encryption", f"default {default} applies (sse not set)"
            )
        if sse == algo and (not self.cfg.sse_kms_key_id or key.endswith(self.cfg.sse_kms_key_id)):
            return CheckResult(
                CheckStatus.OK, "bucket encryption", f"default {default}, as configured"
            )
        return CheckResult(
            CheckStatus.OK,
            "bucket encryption",
            f"default {default}; rollcap asks for {sse} {self.cfg.sse_kms_key_id}".rstrip()
            + " with every upload",
        )
