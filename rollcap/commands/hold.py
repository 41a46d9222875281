"""`rollcap hold`: set (or release) an S3 Object Lock legal hold on every
capture that `rollcap list` shows for the same window and host/interface
filter, to preserve the evidence of an incident. A legal hold has no expiry:
the object cannot be deleted or overwritten until it is released
(--release), whatever its retention. Needs s3:PutObjectLegalHold, which the
hosts' own offload policy does not grant (`check-destination --policy --role
reader` does).

Exit codes: 0 all held; 1 nothing in the window, or any object not held
(each named); 2 bad command line; 78 bad config.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rollcap.commands import _config, _selection
from rollcap.commands._selection import NothingFound
from rollcap.errors import RollcapError
from rollcap.retrieve.catalog import Capture
from rollcap.storage.base import Storage, StorageError

HELP = "set or release a legal hold on captures of a time window"
DESCRIPTION = (
    "Set an S3 Object Lock legal hold on every capture `rollcap list` shows for "
    "[--since, --until) and the host/interface filter (the bucket needs Object Lock)."
)
# `--help` ends with these (and rollcap(8)); tests/unit/test_cli.py parses each
EXAMPLES: tuple[tuple[str, str | None], ...] = (
    (
        "rollcap hold --around '2026-11-26 12:45' --before 30m --after 10m -H web1",
        "preserve an incident's evidence",
    ),
    ("rollcap hold --release --since yesterday --until today -H web1", None),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    _config.add_config_argument(p)
    _selection.add_selection_arguments(p, default_span=None)
    p.add_argument("--release", action="store_true", help="release the legal holds instead")
    p.add_argument("--json", action="store_true", help="print a JSON array")


def _apply(storage: Storage, caps: list[Capture], on: bool) -> list[str]:
    """One error message per capture ("" where the hold was set)."""

    def one(c: Capture) -> str:
        try:
            storage.set_legal_hold(c.key, on)
        except StorageError as e:
            return str(e)
        return ""

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, caps))


def run(args: argparse.Namespace) -> int:
    cfg = _config.load(args)
    _selection.setup(args, cfg)
    on = not args.release
    _selection.check_arguments(args)
    storage = _selection.open_destination(cfg)
    if type(storage).set_legal_hold is Storage.set_legal_hold:
        # the backend has no legal holds (file://): say so once, before any listing
        storage.close()
        raise RollcapError(
            f"hold: {storage.describe()} has no legal holds; they need an S3 destination "
            "whose bucket has Object Lock (offload.destination)"
        )
    try:
        try:
            caps = _selection.find(args, cfg, storage, workers=8)[0]
        except NothingFound:
            if args.json:
                print("[]")
            raise
        errors = _apply(storage, caps, on)
    finally:
        storage.close()
    status = "ON" if on else "OFF"
    done = "held" if on else "released"
    if args.json:
        out: list[dict[str, Any]] = [
            {
                **_selection.capture_json(c),
                "legal_hold": status if not err else None,
                "error": err or None,
            }
            for c, err in zip(caps, errors, strict=True)
        ]
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for c, err in zip(caps, errors, strict=True):
            if not err:
                print(f"{done} {c.key}")
    failed = [(c, err) for c, err in zip(caps, errors, strict=True) if err]
    for c, err in failed:
        print(f"rollcap: not {done}: {c.key}: {err}", file=sys.stderr)
    ok = len(caps) - len(failed)
    print(
        f"rollcap: legal hold {status} on {ok} of {len(caps)} objects in {storage.describe()}",
        file=sys.stderr,
    )
    if failed:
        raise RollcapError(f"{len(failed)} objects not {done}")
    return 0
