"""docs/retention.md's lifecycle rules are what an operator pastes into
put-bucket-lifecycle-configuration: a real S3 server must accept them as they
stand and give back every rule, and the rules must keep their promises (the
capture rule selects by a tag that index entries never carry)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.support.seaweedfs import SeaweedFS

ACTIONS = ("Expiration", "NoncurrentVersionExpiration", "AbortIncompleteMultipartUpload")
DOC = Path(__file__).resolve().parents[2] / "docs" / "retention.md"


def documented_rules() -> dict[str, Any]:
    text = DOC.read_text()
    marked = r"<!-- lifecycle:begin -->\n```json\n(.*?)```\n<!-- lifecycle:end -->"
    m = re.search(marked, text, re.S)
    assert m, "docs/retention.md has no lifecycle JSON between its markers"
    rules: dict[str, Any] = json.loads(m.group(1))
    return rules


def by_id(rules: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["ID"]: r for r in rules}


def days(rule: dict[str, Any]) -> int:
    return int(rule["Expiration"]["Days"])


def test_the_documented_rules_expire_the_index_after_the_captures() -> None:
    rules = by_id(documented_rules()["Rules"])
    captures = rules["rollcap-captures"]
    # index entries are written untagged (storage/s3 put_bytes): a tag filter
    # is what keeps the capture rule off them
    assert captures["Filter"]["And"]["Tags"] == [{"Key": "source", "Value": "rollcap"}]
    for index in ("rollcap-index-manifest", "rollcap-index-flows"):
        assert days(rules[index]) > days(captures), index
    prefixes = {r["Filter"].get("Prefix") for r in rules.values()}
    assert {"prod/_index/manifest/v1/", "prod/_index/flows/v1/", "prod/_requests/",
            "prod/_index/acks/v1/"} <= prefixes  # fmt: skip


def test_seaweedfs_accepts_the_documented_lifecycle_and_returns_it(seaweedfs: SeaweedFS) -> None:
    config = documented_rules()
    s3 = seaweedfs.client()
    s3.put_bucket_lifecycle_configuration(Bucket=seaweedfs.bucket, LifecycleConfiguration=config)
    try:
        stored = by_id(s3.get_bucket_lifecycle_configuration(Bucket=seaweedfs.bucket)["Rules"])
        want = by_id(config["Rules"])
        assert stored.keys() == want.keys()
        for rule_id, rule in want.items():
            got = stored[rule_id]
            assert got["Filter"] == rule["Filter"], rule_id
            assert got["Status"] == "Enabled", rule_id
            for action in ACTIONS:
                assert got.get(action) == rule.get(action), (rule_id, action)
    finally:
        # the session's bucket is shared with other tests
        s3.delete_bucket_lifecycle(Bucket=seaweedfs.bucket)
