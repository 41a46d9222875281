"""`rollcap check-destination`: can this host's offload work, and with least privilege?

One line per check: credentials, the bucket, each permission the offload
needs (probed without leaving anything behind: a multipart upload is started
with each configured setting and aborted again), and the bucket's Object Lock
and default encryption against the config. Then the IAM policy scoped to this
host's own keys (storage.s3.policy). Exit 0 when nothing failed, else 1 with the
failed checks named.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator

from rollcap.commands import _config
from rollcap.config.schema import RollcapConfig
from rollcap.errors import RollcapError
from rollcap.spool.readyname import local_hostname
from rollcap.storage.base import CheckResult, CheckStatus, StorageError
from rollcap.storage.s3.policy import (
    HOST_VARIABLES,
    ROLES,
    host_scope,
    iam_policy,
    index_pattern,
    object_actions,
)

HELP = "check credentials, bucket and permissions; print a least-privilege IAM policy"
DESCRIPTION = (
    "Check that this host's offload can use offload.destination: credentials, bucket, "
    "each permission it needs, and the bucket's Object Lock and default encryption "
    "against the config; then print a least-privilege IAM policy for this host."
)
# `--help` ends with these (and rollcap(8)); tests/unit/test_cli.py parses each
EXAMPLES: tuple[tuple[str, str | None], ...] = (
    ("rollcap check-destination", "credentials, bucket and permissions of offload.destination"),
    ("rollcap check-destination --policy --role reader", "the IAM policy for an operator's laptop"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    _config.add_config_argument(p)
    p.add_argument("--policy", action="store_true", help="only print the IAM policy (no requests)")
    p.add_argument(
        "--role",
        choices=ROLES,
        default="host",
        help="whose policy: a capture host's offload (default), a reader (list, fetch, "
        "hold), or a requester of fleet keeps",
    )
    p.add_argument(
        "--host-variable",
        choices=[*HOST_VARIABLES, "none"],
        default="username",
        help="how the host policy names the host: the IAM user name (default; one policy "
        "for the fleet, each host's user named as the host), the principal tag "
        "rollcap-host, or none (this host's name written out)",
    )
    p.add_argument(
        "--no-write-once-condition",
        dest="write_once",
        action="store_false",
        help="host policy: grant s3:PutObject without the s3:if-none-match / "
        "s3:ObjectCreationOperation conditions, for a server that does not evaluate "
        "them (SeaweedFS 4.48 denies every write with them). The host can then "
        "overwrite its own past objects: use bucket versioning or Object Lock",
    )


def render_policy(cfg: RollcapConfig, host: str, role: str = "host",
                  variable: str = "username", write_once: bool = True) -> str:  # fmt: skip
    oc = cfg.offload
    name = HOST_VARIABLES.get(variable, host)
    body = json.dumps(iam_policy(oc, name, oc.key_template, role, write_once), indent=2)
    if role == "reader":
        note = (
            "# IAM policy for readers (rollcap list, fetch, hold): everything below the "
            "prefix, read only, plus legal holds."
        )
    elif role == "requester":
        note = "# IAM policy for requesters of fleet keeps: request objects only."
    else:
        scope, per_host = host_scope(oc.key_template, oc.prefix, name)
        who = {
            "username": "each host's IAM user named as the host (capture.hostname)",
            "tag": "each host's principal tagged rollcap-host=HOST (capture.hostname)",
        }.get(variable, f"host {host} alone")
        note = (
            f"# Least-privilege IAM policy for {who}: its own keys ({scope}*) and index "
            f"entries ({index_pattern(oc.prefix, name)}) only."
            if per_host
            else f"# IAM policy for {who}. offload.key_template does not start with "
            "{prefix}/{host}/, so it cannot be scoped to a host's keys alone."
        )
        note += f"\n# Actions on the objects: {', '.join(object_actions(oc))}."
        note += (
            "\n# Write-once: s3:PutObject only with If-None-Match (s3:if-none-match) or as "
            "a multipart step (s3:ObjectCreationOperation false); for servers that do not "
            "evaluate these keys: --no-write-once-condition."
            if write_once
            else "\n# NOT write-once (--no-write-once-condition): the host can overwrite its "
            "own past objects; use bucket versioning or Object Lock."
        )
    return f"{note}\n{body}\n"


def run(args: argparse.Namespace) -> int:
    cfg = _config.load(args)
    oc = cfg.offload
    host = local_hostname(cfg.capture.hostname)
    if args.policy:
        if not oc.is_s3:
            raise RollcapError(f"{oc.destination}: a policy is only for s3:// destinations")
        sys.stdout.write(render_policy(cfg, host, args.role, args.host_variable,
                                       args.write_once))  # fmt: skip
        return 0
    from rollcap.storage import open_storage

    try:
        store = open_storage(oc, host)
    except StorageError as e:
        raise RollcapError(f"check-destination: {e}") from None
    results: list[CheckResult] = []
    try:
        print(f"check-destination: {store.describe()} for host {host}")
        if oc.is_s3:
            from rollcap.storage.s3.checks import S3Checks  # botocore: only when needed
            from rollcap.storage.s3.storage import S3Storage

            assert isinstance(store, S3Storage)
            checks: Iterator[CheckResult] = S3Checks(store, oc, host).run()
        else:
            checks = iter([_local(store.check)])
        for r in checks:
            results.append(r)
            print(r.line(), flush=True)
    finally:
        store.close()
    if oc.is_s3:
        print()
        sys.stdout.write(render_policy(cfg, host, args.role, args.host_variable,
                                       args.write_once))  # fmt: skip
    failed = [r.name for r in results if r.status is CheckStatus.FAIL]
    if failed:
        print(f"rollcap: check-destination failed: {', '.join(failed)}", file=sys.stderr)
        return RollcapError.exit_code
    print("rollcap: check-destination: all checks passed", file=sys.stderr)
    return 0


def _local(check: Callable[[], None]) -> CheckResult:
    try:
        check()
    except StorageError as e:
        return CheckResult(CheckStatus.FAIL, "archive", str(e))
    return CheckResult(CheckStatus.OK, "archive", "writable")
