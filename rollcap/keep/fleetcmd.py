"""`rollcap keep --fleet` and `rollcap keep --status ID`: the requester's side.

The command module (rollcap/commands/keep.py) parses the window; this writes
the one request object, or reads the acknowledgements back (keep/fleet.py).
Run with the requester's credentials (`check-destination --policy --role
requester`), from any machine with the destination in its config.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import TYPE_CHECKING

from rollcap.errors import RollcapError, UsageError
from rollcap.retrieve.timeexpr import TimeExprError, parse_duration_ns

if TYPE_CHECKING:
    from rollcap.config.schema import RollcapConfig
    from rollcap.storage.base import Storage

# rollcap.keep.fleet and rollcap.storage are imported where a fleet keep needs
# them: a local `rollcap keep` (trigger to durable pin, goal 1 s) never loads them


class NotAnswered(RollcapError):
    """`keep --status`: some host the request names has not answered (exit 1)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fleet", action="store_true",
                   help="ask every host (or those of --host) through the bucket: writes one "
                   "request object that each host's offload answers at its next poll")  # fmt: skip
    p.add_argument("--host", action="append", metavar="PATTERN", default=[],
                   help="with --fleet: only hosts matching this pattern ('*' and '?'; repeat "
                   "for several; default: every host)")  # fmt: skip
    p.add_argument("--expires", metavar="DURATION", default="24h",
                   help="with --fleet: hosts answer the request until then (default 24h, "
                   "at most 7d)")  # fmt: skip
    p.add_argument("--status", metavar="ID",
                   help="which hosts answered fleet keep ID: shipped, held nothing, refused, "
                   "not answered (exit 1 while any has not)")  # fmt: skip


def _open(cfg: RollcapConfig) -> Storage:
    from rollcap.commands._selection import open_destination

    return open_destination(cfg)


def _patterns(args: argparse.Namespace) -> tuple[str, ...]:
    from rollcap.keep import fleet

    pats = tuple(h.strip() for item in args.host for h in item.split(",") if h.strip())
    for h in pats:
        if not re.fullmatch(fleet.HOST_PATTERN, h):
            raise UsageError(f"--host {h!r}: a host name or pattern of letters, digits, '.', "
                             "'-', '*' and '?'")  # fmt: skip
    return pats


def request(args: argparse.Namespace, cfg: RollcapConfig, since_ns: int, until_ns: int) -> int:
    """Write one request; print its id (the last word of the one line)."""
    from rollcap.keep import fleet
    from rollcap.storage.base import StorageError

    try:
        ttl = parse_duration_ns(args.expires, arg="--expires")
    except TimeExprError as e:
        raise UsageError(str(e)) from None
    try:
        req = fleet.new_request(args.reason, since_ns, until_ns, _patterns(args), ttl_ns=ttl,
                                request_id=getattr(args, "id", None))  # fmt: skip
    except fleet.BadObject as e:
        raise UsageError(str(e)) from None
    storage = _open(cfg)
    try:
        # written once (If-None-Match): a taken id would keep the other request
        if storage.head(fleet.request_key(storage.key_prefix, req.id)) is not None:
            raise UsageError(f"keep --fleet --id {req.id}: a request with this id exists")
        key = fleet.write_request(storage, storage.key_prefix, req)
    except StorageError as e:
        raise RollcapError(f"keep --fleet: cannot write the request: {e}") from None
    finally:
        storage.close()
    print(f"rollcap: fleet keep requested in {storage.describe()}/{key}; hosts answer at their "
          f"next poll; `rollcap keep --status {req.id}`", file=sys.stderr)  # fmt: skip
    print(req.id)
    return 0


def status(args: argparse.Namespace, cfg: RollcapConfig, as_json: bool = False) -> int:
    from rollcap.keep import fleet
    from rollcap.storage.base import StorageError

    storage = _open(cfg)
    try:
        st = fleet.status(storage, storage.key_prefix, args.status)
    except fleet.BadObject as e:
        raise RollcapError(str(e)) from None
    except StorageError as e:
        raise RollcapError(f"keep --status: {e}") from None
    finally:
        storage.close()
    if as_json:
        json.dump(st.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print("\n".join(fleet.status_lines(st)))
    if st.waiting:
        raise NotAnswered(f"{len(st.waiting)} host(s) have not answered yet")
    return 0
