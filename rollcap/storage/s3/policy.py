"""The least-privilege IAM policies around one bucket: hosts, readers, requesters.

``host`` (each capture host's offload): its own captures (``prefix/HOST/`` with
the default key template) and index entries naming itself
(``prefix/_index/*/HOST~*``, storage/manifest.py), so a compromised host can
neither read nor plant another host's captures or entries, nor delete or
unlock anything: no s3:DeleteObject, no s3:BypassGovernanceRetention, no legal
holds. Write-once by default: s3:PutObject only with ``If-None-Match`` (the
``s3:if-none-match`` condition key) or as a multipart step that creates no
object (``s3:ObjectCreationOperation`` false), so the host cannot overwrite
its own past captures and entries either, on a server that evaluates those
keys (AWS). ``write_once=False`` leaves them out, for servers that do not
(they match no request there, and every write is denied). The host's name is
an IAM policy variable (``${aws:username}``, or the principal tag
``rollcap-host``), so one policy serves the whole fleet.

``reader`` (the analyst: list, fetch, hold): lists and reads everything below
the prefix and sets legal holds. ``requester`` (fleet keep requests,
keep/fleet.py): writes and reads request objects below ``prefix/_requests/``,
reads the hosts' acknowledgements (``prefix/_index/acks/v1/``) and lists the
index's key names (which hosts exist: `keep --status`); it also compacts the
flow index (`rollcap index --compact`: reads ``prefix/_index/flows/v1/``,
creates objects below ``prefix/_index/flows/v1c/`` with If-None-Match), and
nothing else.
Hosts read and list requests, and write their acknowledgement as an index
entry named after themselves (the same statement as their manifest entries).
Pure logic.
"""

from __future__ import annotations

import string
from typing import Any

from rollcap.config.schema import OffloadConfig
from rollcap.flows.compact import DIR as COMPACT_DIR
from rollcap.keep.fleet import ACKS_DIR, REQUESTS_DIR
from rollcap.storage.manifest import ENTRY_NAMED, INDEX_DIR

FLOWS_DIR = ENTRY_NAMED[1]

#: how the policy names the host: the IAM user's name, a principal tag, or this
#: host's name written out (for an evaluator without policy variables)
HOST_VARIABLES = {
    "username": "${aws:username}",
    "tag": "${aws:PrincipalTag/rollcap-host}",
}
ROLES = ("host", "reader", "requester")


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


def key_in_scope(key: str, template: str, prefix: str, host: str) -> bool:
    """Whether a capture key lies where only ``host`` may write (its scope).
    False when the template gives hosts no prefix of their own: then no key
    can be attributed to a host by where it lies."""
    scope, per_host = host_scope(template, prefix, host)
    return per_host and under_scope(key, scope)


def under_scope(key: str, scope: str) -> bool:
    """key lies below scope (a host_scope), with no '', '.' or '..' segment
    that a file:// archive would resolve out of it."""
    if not key.startswith(scope) or len(key) == len(scope):
        return False
    return not any(p in ("", ".", "..") for p in key[len(scope) :].split("/"))


def _base(prefix: str) -> str:
    p = prefix.strip("/")
    return f"{p}/" if p else ""


def index_pattern(prefix: str, host: str) -> str:
    """Every index entry ``host`` may write (every kind, every slot)."""
    return f"{_base(prefix)}{INDEX_DIR}/*/{host}~*"


def requests_prefix(prefix: str) -> str:
    return f"{_base(prefix)}{REQUESTS_DIR}/"


def object_actions(cfg: OffloadConfig, put: bool = True) -> list[str]:
    """What the offload does to its own objects, with these settings
    (``put=False``: all but s3:PutObject)."""
    actions = ["s3:PutObject"] if put else []
    actions += ["s3:GetObject", "s3:AbortMultipartUpload"]
    if cfg.tags or cfg.rollcap_tags:
        actions += ["s3:PutObjectTagging", "s3:GetObjectTagging"]
    if cfg.object_lock_mode:
        # HEAD shows the retention only to a caller allowed to read it
        actions += ["s3:PutObjectRetention", "s3:GetObjectRetention"]
    return actions


# What the offload does to its index entries: one PUT each (the key names all
# an entry holds); AbortMultipartUpload for check-destination's probe, which
# starts and aborts an upload so that it leaves nothing behind.
INDEX_ACTIONS = ["s3:PutObject", "s3:AbortMultipartUpload"]
# Write-once (AWS, "Enforce conditional writes on Amazon S3 buckets"):
# PutObject and CompleteMultipartUpload are authorized as s3:PutObject only with
# an If-None-Match header; CreateMultipartUpload and UploadPart (also
# s3:PutObject, and they take no conditional header) create no object.
# Every write the offload makes carries the header (storage/s3/upload.py).
CREATE_ONCE = {"Null": {"s3:if-none-match": "false"}}
MULTIPART_STEP = {"Bool": {"s3:ObjectCreationOperation": "false"}}
READER_ACTIONS = [
    "s3:GetObject",
    "s3:GetObjectTagging",
    "s3:GetObjectRetention",
    "s3:GetObjectLegalHold",
    "s3:PutObjectLegalHold",
]
REQUESTER_ACTIONS = ["s3:PutObject", "s3:GetObject"]
# hosts: fleet keep requests are input, never theirs to write
HOST_REQUEST_ACTIONS = ["s3:GetObject"]


def _kms_resource(cfg: OffloadConfig) -> str:
    key = cfg.sse_kms_key_id
    region = cfg.region or "REGION"
    if key.startswith("arn:"):
        return key
    if key and not key.startswith("alias/"):
        return f"arn:aws:kms:{region}:ACCOUNT-ID:key/{key}"
    return f"arn:aws:kms:{region}:ACCOUNT-ID:key/KEY-ID"  # an alias or aws/s3: name the key


def _kms(cfg: OffloadConfig, actions: list[str]) -> list[dict[str, Any]]:
    if cfg.sse != "aws:kms":
        return []
    return [{"Sid": "RollcapKmsKey", "Effect": "Allow", "Action": actions,
             "Resource": _kms_resource(cfg)}]  # fmt: skip


def _list(sid: str, bucket: str, prefixes: list[str]) -> dict[str, Any]:
    st: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": "s3:ListBucket",
                          "Resource": bucket}  # fmt: skip
    if any(prefixes):
        st["Condition"] = {"StringLike": {"s3:prefix": prefixes}}
    return st


def iam_policy(cfg: OffloadConfig, host: str, template: str, role: str = "host",
               write_once: bool = True) -> dict[str, Any]:  # fmt: skip
    """The policy for ``role``. ``host``: how the policy names the host, a
    policy variable (HOST_VARIABLES) or a host name. ``write_once``: the host
    may create objects only with If-None-Match (see CREATE_ONCE)."""
    bucket = f"arn:aws:s3:::{cfg.bucket}"
    if role == "reader":
        statements = reader_statements(cfg, bucket)
    elif role == "requester":
        req = requests_prefix(cfg.prefix)
        acks = f"{_base(cfg.prefix)}{ACKS_DIR}/"
        statements = [
            {"Sid": "RollcapKeepRequests", "Effect": "Allow", "Action": REQUESTER_ACTIONS,
             "Resource": f"{bucket}/{req}*"},
            {"Sid": "RollcapKeepAcks", "Effect": "Allow", "Action": "s3:GetObject",
             "Resource": f"{bucket}/{acks}*"},
            # the index's key names say which hosts exist (who has not answered)
            _list("RollcapListKeepRequests", bucket,
                  [f"{req}*", f"{_base(cfg.prefix)}{INDEX_DIR}/*"]),
            # `rollcap index --compact` (flows/compact.py): reads the hosts' flow
            # summaries, creates (never overwrites) one object per slot below
            # v1c/, whose names hold no '~' (no host's pattern reaches them)
            {"Sid": "RollcapReadFlowSummaries", "Effect": "Allow", "Action": "s3:GetObject",
             "Resource": [f"{bucket}/{_base(cfg.prefix)}{FLOWS_DIR}/*",
                          f"{bucket}/{_base(cfg.prefix)}{COMPACT_DIR}/*"]},
            {"Sid": "RollcapCompactFlowIndex", "Effect": "Allow", "Action": "s3:PutObject",
             "Resource": f"{bucket}/{_base(cfg.prefix)}{COMPACT_DIR}/*",
             "Condition": CREATE_ONCE},
        ]  # fmt: skip
    elif role == "host":
        statements = host_statements(cfg, host, template, bucket, write_once)
    else:
        raise ValueError(f"role {role!r}: one of {', '.join(ROLES)}")
    return {"Version": "2012-10-17", "Statement": statements}


def host_statements(cfg: OffloadConfig, host: str, template: str, bucket: str,
                    write_once: bool = True) -> list[dict[str, Any]]:  # fmt: skip
    scope, _per_host = host_scope(template, cfg.prefix, host)
    captures = f"{bucket}/{scope}*"
    # IAM's '*' matches '/' too: readers refuse any key below _index/ that is
    # not exactly the shape an entry has (manifest.parse_key)
    entries = f"{bucket}/{index_pattern(cfg.prefix, host)}"
    put = not write_once  # s3:PutObject unconditioned, or in the two below
    statements: list[dict[str, Any]] = [
        {
            "Sid": "RollcapOwnCaptures",
            "Effect": "Allow",
            "Action": object_actions(cfg, put=put),
            "Resource": captures,
        },
        {
            "Sid": "RollcapOwnIndexEntries",
            "Effect": "Allow",
            "Action": INDEX_ACTIONS if put else INDEX_ACTIONS[1:],
            "Resource": entries,
        },
    ]
    if write_once:
        statements += [
            {"Sid": "RollcapCreateOnlyNew", "Effect": "Allow", "Action": "s3:PutObject",
             "Resource": [captures, entries], "Condition": CREATE_ONCE},
            {"Sid": "RollcapMultipartSteps", "Effect": "Allow", "Action": "s3:PutObject",
             "Resource": [captures, entries], "Condition": MULTIPART_STEP},
        ]  # fmt: skip
    req = requests_prefix(cfg.prefix)
    statements += [
        # fleet keep requests: read them; the acknowledgement is an entry above
        {"Sid": "RollcapReadKeepRequests", "Effect": "Allow", "Action": HOST_REQUEST_ACTIONS,
         "Resource": f"{bucket}/{req}*"},
        # also authorizes HeadBucket, which then answers 403: rollcap's
        # destination check falls back to listing this prefix
        _list("RollcapListOwnPrefix", bucket, [f"{scope}*", f"{req}*"]),
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
    # Decrypt: multipart uploads read back their data key
    return statements + _kms(cfg, ["kms:GenerateDataKey", "kms:Decrypt"])


def reader_statements(cfg: OffloadConfig, bucket: str) -> list[dict[str, Any]]:
    base = _base(cfg.prefix)
    return [
        {
            # legal holds: `rollcap hold` (and --release: whoever may set a
            # hold may lift it; give reader rights to the people who decide)
            "Sid": "RollcapReadAndHold",
            "Effect": "Allow",
            "Action": READER_ACTIONS,
            "Resource": f"{bucket}/{base}*",
        },
        _list("RollcapListPrefix", bucket, [f"{base}*"] if base else []),
        *_kms(cfg, ["kms:Decrypt"]),
    ]
