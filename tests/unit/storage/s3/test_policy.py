"""The IAM policies `rollcap check-destination --policy --role ...` prints,
checked against every key the offload writes with a small IAM matcher
(wildcards, policy variables, s3:prefix conditions), and as JSON from the CLI."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rollcap.config.schema import OffloadConfig
from rollcap.keep.fleet import BadObject, ack_key, ack_of_key, request_key
from rollcap.keys import KeyFields, render_key
from rollcap.storage import manifest
from rollcap.storage.s3.policy import iam_policy, key_in_scope
from tests.support.cli import rollcap

T0 = datetime(2026, 11, 26, 12, 5, 1, tzinfo=UTC)
USER = "${aws:username}"


def _like(pattern: str, value: str, user: str) -> bool:
    """IAM's StringLike and ARN matching: '*' any run (including '/'), '?' one
    character, ${aws:username} (and the rollcap-host principal tag) the caller."""
    pattern = pattern.replace(USER, user).replace("${aws:PrincipalTag/rollcap-host}", user)
    rx = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(rx, value, re.S) is not None


def allowed(policy: dict[str, Any], user: str, action: str, resource: str,
            prefix: str | None = None, *, if_none_match: bool = True,
            creating: bool = True) -> bool:  # fmt: skip
    """Whether some statement allows the request. ``if_none_match``: the
    request carries the header; ``creating``: it creates an object (PutObject,
    CompleteMultipartUpload; not CreateMultipartUpload, UploadPart)."""
    context = {
        ("Null", "s3:if-none-match"): str(not if_none_match).lower(),
        ("Bool", "s3:ObjectCreationOperation"): str(creating).lower(),
    }
    for st in policy["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        if st["Effect"] != "Allow" or action not in actions:
            continue
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        if not any(_like(r, resource, user) for r in resources):
            continue
        conditions = dict(st.get("Condition", {}))
        like = conditions.pop("StringLike", {}).get("s3:prefix")
        if like is not None and not any(_like(p, prefix or "", user) for p in like):
            continue
        # any other condition must be one this matcher knows (else: fail loudly)
        if all(context[(op, key)] == want for op, kv in conditions.items()
               for key, want in kv.items()):  # fmt: skip
            return True
    return False


def _keys(cfg: OffloadConfig, host: str) -> list[str]:
    """A capture key and every index entry key the offload writes for it."""
    key = render_key(cfg.key_template, KeyFields(cfg.prefix, host, "eth0", T0, 42, ".pcap.zst"))
    t = int(T0.timestamp())
    e = manifest.Entry(key=key, host=host, iface="eth0", opened=T0, closed_ts=t + 900,
                       first_ns=t * 10**9, last_ns=(t + 899) * 10**9,
                       packets=9, pcap_bytes=900, size=500, linktype=1)  # fmt: skip
    entries = manifest.entry_keys(e, cfg.prefix)
    assert len(entries) == 3  # 12:05 .. 12:20 covers three slots
    return [key, *entries]


CFG = OffloadConfig(destination="s3://b-1/caps", object_lock_mode="GOVERNANCE", object_lock_days=7)
ARN = "arn:aws:s3:::b-1/"


def test_one_host_policy_lets_each_host_write_its_own_keys_and_no_other_hosts() -> None:
    policy = iam_policy(CFG, USER, CFG.key_template)
    assert "web1" not in json.dumps(policy)  # one policy for the fleet
    for key in _keys(CFG, "web1"):
        for action in ("s3:PutObject", "s3:AbortMultipartUpload"):
            assert allowed(policy, "web1", action, ARN + key), (action, key)
            assert not allowed(policy, "web2", action, ARN + key), (action, key)
    capture = _keys(CFG, "web1")[0]
    for action in ("s3:PutObjectTagging", "s3:PutObjectRetention", "s3:GetObject"):
        assert allowed(policy, "web1", action, ARN + capture)
        assert not allowed(policy, "web2", action, ARN + capture)
    # a host whose name starts with another's gets neither's keys
    assert not allowed(policy, "web", "s3:PutObject", ARN + capture)
    assert not allowed(policy, "web1", "s3:PutObject", ARN + _keys(CFG, "web10")[1])
    # listing: its own prefix only
    assert allowed(policy, "web1", "s3:ListBucket", "arn:aws:s3:::b-1", "caps/web1/")
    assert not allowed(policy, "web1", "s3:ListBucket", "arn:aws:s3:::b-1", "caps/web2/")
    assert not allowed(policy, "web1", "s3:ListBucket", "arn:aws:s3:::b-1", "caps/")
    text = json.dumps(policy)
    assert "Delete" not in text and "Bypass" not in text and "LegalHold" not in text


def test_the_index_pattern_needs_readers_to_check_the_shape() -> None:
    """IAM's '*' matches '/': web2 may write a key below _index/ that ends in a
    web1-looking name. manifest.parse_key refuses it (one directory too deep)."""
    policy = iam_policy(CFG, USER, CFG.key_template)
    web1_entry = _keys(CFG, "web1")[1]
    slot, _, name = web1_entry.rpartition("/")
    sneaky = f"{slot}/web2~x/{name}"
    assert allowed(policy, "web2", "s3:PutObject", ARN + sneaky)
    assert manifest.parse_key(sneaky, CFG.prefix) is None
    assert manifest.parse_key(web1_entry, CFG.prefix) is not None


def test_principal_tag_variant_and_a_custom_template() -> None:
    tag = "${aws:PrincipalTag/rollcap-host}"
    policy = iam_policy(CFG, tag, CFG.key_template)
    assert policy["Statement"][0]["Resource"] == f"{ARN}caps/{tag}/*"
    assert policy["Statement"][1]["Resource"] == f"{ARN}caps/_index/*/{tag}~*"
    root = OffloadConfig(destination="s3://b-1")
    p = iam_policy(root, USER, root.key_template)
    assert p["Statement"][1]["Resource"] == f"{ARN}_index/*/{USER}~*"
    for key in _keys(root, "web1"):
        assert allowed(p, "web1", "s3:PutObject", ARN + key)
        assert not allowed(p, "web2", "s3:PutObject", ARN + key)


def test_reader_reads_and_holds_everything_below_the_prefix_and_writes_nothing() -> None:
    policy = iam_policy(CFG, USER, CFG.key_template, role="reader")
    for key in _keys(CFG, "web1") + _keys(CFG, "web2"):
        for action in ("s3:GetObject", "s3:GetObjectTagging", "s3:PutObjectLegalHold",
                       "s3:GetObjectLegalHold"):  # fmt: skip
            assert allowed(policy, "alice", action, ARN + key)
        assert not allowed(policy, "alice", "s3:PutObject", ARN + key)
    assert allowed(policy, "alice", "s3:ListBucket", "arn:aws:s3:::b-1", "caps/")
    assert not allowed(policy, "alice", "s3:GetObject", ARN + "other/x")
    text = json.dumps(policy)
    assert 's3:PutObject"' not in text and "Delete" not in text and "Bypass" not in text


def test_requester_writes_requests_and_nothing_else() -> None:
    policy = iam_policy(CFG, USER, CFG.key_template, role="requester")
    assert allowed(policy, "ops", "s3:PutObject", ARN + "caps/_requests/INC-42.json")
    for key in _keys(CFG, "web1"):
        for action in ("s3:PutObject", "s3:GetObject", "s3:PutObjectLegalHold"):
            assert not allowed(policy, "ops", action, ARN + key)
    assert allowed(policy, "ops", "s3:ListBucket", "arn:aws:s3:::b-1", "caps/_requests/")
    assert not allowed(policy, "ops", "s3:ListBucket", "arn:aws:s3:::b-1", "caps/web1/")
    # keep --status: reads the acknowledgements and the index's names, writes neither
    ack = ARN + ack_key("caps", "INC-42", "web1")
    assert allowed(policy, "ops", "s3:GetObject", ack)
    assert not allowed(policy, "ops", "s3:PutObject", ack)
    assert allowed(policy, "ops", "s3:ListBucket", "arn:aws:s3:::b-1", "caps/_index/acks/v1/")
    entry = ARN + _keys(CFG, "web1")[1]
    assert not allowed(policy, "ops", "s3:GetObject", entry)


def test_the_requester_compacts_the_flow_index_and_hosts_cannot() -> None:
    """`rollcap index --compact`: the requester reads the hosts' summaries and
    creates (write-once) the slot's compacted object; no host can write one,
    nor can the requester write a host's summary."""
    req = iam_policy(CFG, USER, CFG.key_template, role="requester")
    host = iam_policy(CFG, USER, CFG.key_template)
    summary = ARN + "caps/_index/flows/v1/date=2026-11-26/hour=12/minute=10/web1~eth0~x.ndjson.gz"
    comp = (ARN + "caps/_index/flows/v1c/date=2026-11-26/hour=12/minute=10/"
            "g000001-0123456789abcdef.ndjson.gz")
    assert allowed(req, "ops", "s3:GetObject", summary)
    assert allowed(req, "ops", "s3:GetObject", comp)
    assert allowed(req, "ops", "s3:PutObject", comp)
    assert not allowed(req, "ops", "s3:PutObject", comp, if_none_match=False)  # no overwrite
    assert not allowed(req, "ops", "s3:PutObject", summary)
    assert allowed(req, "ops", "s3:ListBucket", "arn:aws:s3:::b-1",
                   "caps/_index/flows/v1/date=2026-11-26/")  # fmt: skip
    for user in ("web1", "g000001-0123456789abcdef.ndjson.gz"):
        assert not allowed(host, user, "s3:PutObject", comp)
    # the captures stay out of reach
    for key in _keys(CFG, "web1")[:1]:
        assert not allowed(req, "ops", "s3:GetObject", ARN + key)


def test_hosts_read_requests_and_write_only_their_own_acknowledgement() -> None:
    policy = iam_policy(CFG, USER, CFG.key_template)
    req = ARN + request_key("caps", "INC-42")
    assert allowed(policy, "web1", "s3:GetObject", req)
    assert allowed(policy, "web1", "s3:ListBucket", "arn:aws:s3:::b-1", "caps/_requests/")
    for kw in ({}, {"if_none_match": False}, {"creating": False}):
        assert not allowed(policy, "web1", "s3:PutObject", req, **kw)  # type: ignore[arg-type]
    own, other = ack_key("caps", "INC-42", "web1"), ack_key("caps", "INC-42", "web2")
    assert allowed(policy, "web1", "s3:PutObject", ARN + own)
    assert not allowed(policy, "web1", "s3:PutObject", ARN + own, if_none_match=False)
    assert not allowed(policy, "web1", "s3:PutObject", ARN + other)
    assert not allowed(policy, "web1", "s3:PutObject", ARN + "caps/_requests/x/web1~ack.json")
    # the pattern lets web1 write odd keys ending in its name below _index/: the
    # readers refuse every key not exactly an acknowledgement's shape
    odd = "caps/_index/acks/v1/INC-42/web2~ack.json/web1~ack.json"
    assert allowed(policy, "web1", "s3:PutObject", ARN + odd)
    with pytest.raises(BadObject):
        ack_of_key(odd, "caps")


@pytest.mark.parametrize(
    ("key", "host", "ok"),
    [
        ("caps/web1/2026/11/26/web1-eth0-20261126T120501Z-000042.pcap.zst", "web1", True),
        ("caps/web2/2026/11/26/web2-eth0-20261126T120501Z-000042.pcap.zst", "web1", False),
        ("caps/web10/2026/x.pcap", "web1", False),
        ("caps/web1/../web2/x.pcap", "web1", False),
        ("caps/web1/", "web1", False),
        ("other/web1/x.pcap", "web1", False),
    ],
)
def test_key_in_scope(key: str, host: str, ok: bool) -> None:
    assert key_in_scope(key, CFG.key_template, CFG.prefix, host) is ok


def test_custom_template_attributes_no_key_to_a_host() -> None:
    t = "{prefix}/{start:%Y}/{host}-{iface}-{seq}{ext}"
    assert not key_in_scope("caps/2026/web1-eth0-1.pcap", t, "caps", "web1")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            [],
            ["caps/${aws:username}/*", "caps/_index/*/${aws:username}~*", "s3:PutObjectRetention"],
        ),
        (["--host-variable", "tag"], ["caps/${aws:PrincipalTag/rollcap-host}/*"]),
        (["--host-variable", "none"], ["caps/edge1/*", "caps/_index/*/edge1~*"]),
        (["--role", "reader"], ["s3:PutObjectLegalHold", "s3:GetObjectLegalHold"]),
        (["--role", "requester"], ["caps/_requests/*", "caps/_index/acks/v1/*"]),
        ([], ["caps/_requests/*", "caps/_index/*/${aws:username}~*"]),
    ],
)
def test_printed_policy_is_json(tmp_path: Path, args: list[str], words: list[str]) -> None:
    cfg = tmp_path / "rollcap.toml"
    cfg.write_text(
        '[capture]\nhostname = "edge1"\n[offload]\ndestination = "s3://b-1/caps"\n'
        'object_lock_mode = "GOVERNANCE"\nobject_lock_days = 7\n'
    )
    r = rollcap("check-destination", "--config", str(cfg), "--policy", *args)
    assert r.returncode == 0, r.stderr
    comments = [line for line in r.stdout.splitlines() if line.startswith("#")]
    body = json.loads("\n".join(line for line in r.stdout.splitlines() if not line.startswith("#")))
    assert comments and body["Version"] == "2012-10-17"
    for w in words:
        assert w in json.dumps(body), (w, r.stdout)


def test_the_host_policy_is_write_once() -> None:
    """A compromised host cannot overwrite its own past captures or entries:
    s3:PutObject needs If-None-Match, except for the multipart steps that create
    no object (the pattern of AWS's "Enforce conditional writes on Amazon S3
    buckets"). Tagging and retention are not object creation: not conditioned."""
    policy = iam_policy(CFG, USER, CFG.key_template)
    for key in _keys(CFG, "web1"):  # the capture and its index entries
        arn = ARN + key
        assert allowed(policy, "web1", "s3:PutObject", arn)  # PutObject, Complete with it
        assert not allowed(policy, "web1", "s3:PutObject", arn, if_none_match=False)
        # CreateMultipartUpload, UploadPart: no header, no object (and the probes)
        assert allowed(policy, "web1", "s3:PutObject", arn, if_none_match=False, creating=False)
        assert not allowed(policy, "web2", "s3:PutObject", arn, creating=False)
        assert allowed(policy, "web1", "s3:AbortMultipartUpload", arn)
    puts = [st for st in policy["Statement"] if "s3:PutObject" in st["Action"]]
    assert [st["Condition"] for st in puts] == [
        {"Null": {"s3:if-none-match": "false"}},
        {"Bool": {"s3:ObjectCreationOperation": "false"}},
    ]
    capture = ARN + _keys(CFG, "web1")[0]
    assert allowed(policy, "web1", "s3:PutObjectTagging", capture, if_none_match=False)


def test_without_the_write_once_condition_a_host_can_overwrite_its_own_keys() -> None:
    policy = iam_policy(CFG, USER, CFG.key_template, write_once=False)
    assert "Condition" not in json.dumps(policy).replace('"Condition": {"StringLike"', "")
    for key in _keys(CFG, "web1"):
        assert allowed(policy, "web1", "s3:PutObject", ARN + key, if_none_match=False)
        assert not allowed(policy, "web2", "s3:PutObject", ARN + key, if_none_match=False)


def test_the_cli_prints_the_write_once_policy_unless_told_not_to(tmp_path: Path) -> None:
    cfg = tmp_path / "r.toml"
    cfg.write_text('[capture]\nhostname = "web1"\n[offload]\ndestination = "s3://b-1/caps"\n')
    for flags, write_once in (((), True), (("--no-write-once-condition",), False)):
        p = rollcap("check-destination", "--config", str(cfg), "--policy", *flags)
        assert p.returncode == 0, p.stderr
        body = json.loads("\n".join(ln for ln in p.stdout.splitlines() if not ln.startswith("#")))
        text = json.dumps(body)
        assert ("s3:if-none-match" in text) is write_once
        assert ("s3:ObjectCreationOperation" in text) is write_once
        assert allowed(body, "web1", "s3:PutObject", ARN + "caps/web1/x",
                       if_none_match=False) is not write_once  # fmt: skip
        assert ("NOT write-once" in p.stdout) is not write_once
