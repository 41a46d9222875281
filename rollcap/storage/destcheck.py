"""`rollcap check-destination`: can this host's offload work, and with least privilege?

One line per check: credentials, the bucket, each permission the offload
needs (probed without leaving anything behind: a multipart upload is started
with each configured setting and aborted again), and the bucket's Object Lock
and default encryption against the config. Then the IAM policy scoped to this
host's own keys (storage.policy). Exit 0 when nothing failed, else 1 with the
failed checks named.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from rollcap.config.schema import RollcapConfig
from rollcap.errors import RollcapError
from rollcap.naming import local_hostname
from rollcap.storage.base import StorageError
from rollcap.storage.policy import host_scope, iam_policy, object_actions

OK, FAIL, WARN, SKIP = "ok", "FAIL", "warn", "skip"


@dataclass(frozen=True)
class Result:
    status: str  # OK | FAIL | WARN | SKIP
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<5} {self.name:<22} {self.detail}"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Check that this host's offload can use offload.destination: credentials, bucket, "
        "each permission it needs, and the bucket's Object Lock and default encryption "
        "against the config; then print a least-privilege IAM policy for this host."
    )
    p.add_argument("--policy", action="store_true", help="only print the IAM policy (no requests)")


def render_policy(cfg: RollcapConfig, host: str) -> str:
    oc = cfg.offload
    scope, per_host = host_scope(oc.key_template, oc.prefix, host)
    note = (
        f"# Least-privilege IAM policy for host {host}: its own keys ({scope}*) only."
        if per_host
        else f"# IAM policy for host {host}. offload.key_template does not start with "
        "{prefix}/{host}/, so it cannot be scoped to this host's keys alone."
    )
    body = json.dumps(iam_policy(oc, host, oc.key_template), indent=2)
    return f"{note}\n# Actions on the objects: {', '.join(object_actions(oc))}.\n{body}\n"


def run(args: argparse.Namespace, cfg: RollcapConfig) -> int:
    oc = cfg.offload
    host = local_hostname(cfg.capture.hostname)
    if args.policy:
        if not oc.is_s3:
            raise RollcapError(f"{oc.destination}: a policy is only for s3:// destinations")
        sys.stdout.write(render_policy(cfg, host))
        return 0
    from rollcap.storage import open_storage

    try:
        store = open_storage(oc, host)
    except StorageError as e:
        raise RollcapError(f"check-destination: {e}") from None
    results: list[Result] = []
    try:
        print(f"check-destination: {store.describe()} for host {host}")
        if oc.is_s3:
            from rollcap.storage.s3 import S3Storage
            from rollcap.storage.s3checks import S3Checks  # botocore: only when needed

            assert isinstance(store, S3Storage)
            checks: Iterator[Result] = S3Checks(store, oc, host).run()
        else:
            checks = iter([_local(store.check)])
        for r in checks:
            results.append(r)
            print(r.line(), flush=True)
    finally:
        store.close()
    if oc.is_s3:
        print()
        sys.stdout.write(render_policy(cfg, host))
    failed = [r.name for r in results if r.status == FAIL]
    if failed:
        print(f"rollcap: check-destination failed: {', '.join(failed)}", file=sys.stderr)
        return RollcapError.exit_code
    print("rollcap: check-destination: all checks passed", file=sys.stderr)
    return 0


def _local(check: Callable[[], None]) -> Result:
    try:
        check()
    except StorageError as e:
        return Result(FAIL, "archive", str(e))
    return Result(OK, "archive", "writable")
