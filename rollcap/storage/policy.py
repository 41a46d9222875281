"""The least-privilege IAM policy for one host's offload.

Scoped to the part of the bucket this host's keys share (``prefix/host/`` with
the default key template), so a compromised host can neither read nor plant
another host's captures, nor delete or unlock anything: no s3:DeleteObject,
no s3:BypassGovernanceRetention, no legal holds. Pure logic.
"""

from __future__ import annotations

import string
from typing import Any

from rollcap.config.schema import OffloadConfig


def host_scope(template: str, prefix: str, host: str) -> tuple[str, bool]:
    """The key prefix every key of this host starts with (up to its last '/'),
    and whether that prefix is this host's alone (the template puts {host}
    before any other placeholder)."""
    out = ""
    per_host = False
    for literal, name, _spec, _conv in string.Formatter().parse(template):
        out += literal
        if name == "prefix":
            out += prefix
        elif name == "host":
            out += host
            per_host = True
        elif name is not None:
            break
    if not prefix:
        out = out.lstrip("/")  # "{prefix}/..." with an empty prefix
    scope = out[: out.rfind("/") + 1]
    return scope, per_host and host in scope.split("/")


def object_actions(cfg: OffloadConfig) -> list[str]:
    """What the offload does to its own objects, with these settings."""
    actions = ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"]
    if cfg.tags or cfg.rollcap_tags:
        actions += ["s3:PutObjectTagging", "s3:GetObjectTagging"]
    if cfg.object_lock_mode:
        # HEAD shows the retention only to a caller allowed to read it
        actions += ["s3:PutObjectRetention", "s3:GetObjectRetention"]
    return actions


def _kms_resource(cfg: OffloadConfig) -> str:
    key = cfg.sse_kms_key_id
    region = cfg.region or "REGION"
    if key.startswith("arn:"):
        return key
    if key and not key.startswith("alias/"):
        return f"arn:aws:kms:{region}:ACCOUNT-ID:key/{key}"
    return f"arn:aws:kms:{region}:ACCOUNT-ID:key/KEY-ID"  # an alias or aws/s3: name the key


def iam_policy(cfg: OffloadConfig, host: str, template: str) -> dict[str, Any]:
    scope, _per_host = host_scope(template, cfg.prefix, host)
    bucket = f"arn:aws:s3:::{cfg.bucket}"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "RollcapOwnCaptures",
            "Effect": "Allow",
            "Action": object_actions(cfg),
            "Resource": f"{bucket}/{scope}*",
        },
        {
            # also authorizes HeadBucket, which then answers 403: rollcap's
            # destination check falls back to listing this prefix
            "Sid": "RollcapListOwnPrefix",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket,
            "Condition": {"StringLike": {"s3:prefix": [f"{scope}*"]}},
        },
        {
            # no prefix condition exists for these: they show key names of
            # incomplete uploads and the bucket's settings, no data
            "Sid": "RollcapBucketChecks",
            "Effect": "Allow",
            "Action": [
                "s3:ListBucketMultipartUploads",
                "s3:GetBucketObjectLockConfiguration",
                "s3:GetEncryptionConfiguration",
            ],
            "Resource": bucket,
        },
    ]
    if cfg.sse == "aws:kms":
        statements.append(
            {
                "Sid": "RollcapKmsKey",
                "Effect": "Allow",
                # Decrypt: multipart uploads read back their data key
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                "Resource": _kms_resource(cfg),
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}
