"""`rollcap keep`: pin a window of this host's ring so the offload ships it.

The pin is a file in <spool>/keep/ (rollcap.keep.pins), durable (fsynced)
before the command returns; root and members of group rollcap may write it.
Capture's budget never drops a file a pin holds; the offload uploads those
files (offload.mode = "on-demand": only those) with the keep's id and reason
in their metadata, and releases the pin once they are verified in the
destination. A window reaching into the future is pinned as it is captured,
and the file it ends in is cut when its end passes.

`--fleet` asks every host (or those of --host) instead, through one request
object in the bucket that each host's offload answers (rollcap.keep.fleetcmd,
docs/fleet.md); `--status ID` shows which hosts answered.

Exit codes: 0 pinned (or pinned already: the same id), fleet request written,
or every host answered (--status); 1 refused (over the pinned cap: the one
line names it), a host has not answered (--status), or the bucket failed; 2 bad
command line; 78 bad config.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from rollcap.commands import _config
from rollcap.errors import RollcapError, UsageError
from rollcap.keep import fleetcmd
from rollcap.keep.request import REASON_MAX, KeepOutcome, KeepRefused, KeepRequest, derived_id
from rollcap.keep.store import ensure_dir, submitter_for
from rollcap.retrieve import timeexpr
from rollcap.spool.readyname import local_hostname

HELP = "pin a time window of this host's ring so the offload ships it"
DESCRIPTION = (
    "Pin the captures of [--since, --until) (or --around T --before D --after D) in this "
    "host's spool: capture's budget never drops them and the offload uploads them with the "
    "keep's id and reason (offload.mode = on-demand: only what a keep holds is uploaded). "
    "The pin is durable before the command returns. Root and group rollcap may keep."
)
# `--help` ends with these (and rollcap(8)); tests/unit/test_cli.py parses each
EXAMPLES: tuple[tuple[str, str | None], ...] = (
    ("rollcap keep --since 30m --reason INC-42", "ship the last half hour"),
    (
        "rollcap keep --around '2026-11-26 12:45' --before 10m --after 5m --reason 'customer call'",
        "a window around a time; its future part is pinned as it is captured",
    ),
    ("rollcap keep --fleet --host 'web*' --since -30m --reason INC-42",
     "ask every web host, through the bucket"),
    ("rollcap keep --status f20261207T221500Z-1a2b3c4d", "which hosts answered"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    _config.add_config_argument(p)
    p.add_argument("--since", metavar="TIME", help=f"window start: {timeexpr.HELP}")
    p.add_argument("--until", metavar="TIME", help="window end (default: now)")
    p.add_argument("--around", metavar="TIME", help="instead of --since/--until: the window "
                   f"around TIME, --before and --after it (default {timeexpr.DEFAULT_AROUND} "
                   "each)")  # fmt: skip
    p.add_argument("--before", metavar="DURATION", help="with --around: " + timeexpr.DURATION_HELP)
    p.add_argument("--after", metavar="DURATION", help="with --around: " + timeexpr.DURATION_HELP)
    p._negative_number_matcher = timeexpr.NEGATIVE_VALUE  # --since -30m
    p.add_argument("--reason", metavar="TEXT",
                   help=f"why (printable ASCII, at most {REASON_MAX} characters): in the "
                   "journal, the objects' metadata and their index entries")  # fmt: skip
    p.add_argument("--id", metavar="ID", help="the keep's id (default: derived from the "
                   "window and reason, so the same command twice is one keep)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    fleetcmd.add_arguments(p)


def _request(args: argparse.Namespace, host: str) -> KeepRequest:
    try:
        since, until = timeexpr.window_ns(
            args.since, args.until, around=args.around, before=args.before, after=args.after,
            command="rollcap keep",
        )  # fmt: skip
    except timeexpr.TimeExprError as e:
        raise RollcapError(f"keep: {e}") from None
    rid = args.id or derived_id("cli", host, str(since), str(until), args.reason)
    try:
        return KeepRequest(id=rid, reason=args.reason, since_ns=since, until_ns=until,
                           created_ns=time.time_ns(), source="cli")  # fmt: skip
    except ValidationError as e:
        err = e.errors()[0]
        field = "--id" if err["loc"][:1] == ("id",) else "--reason"
        raise RollcapError(
            f"keep: {field}: {err['msg']} (--reason: printable ASCII, 1 to {REASON_MAX} "
            "characters; --id: letters, digits, '.', '_', '-', at most 64)"
        ) from None


def _utc(ns: int) -> str:
    return timeexpr.fmt_utc_ns(ns)


def run(args: argparse.Namespace) -> int:
    if args.status:
        return fleetcmd.status(args, _config.load_for_reading(args), args.json)
    if not args.reason:
        raise UsageError("keep needs --reason TEXT (e.g. the incident's id)")
    if args.host and not args.fleet:
        raise UsageError("keep --host PATTERN: only with --fleet")
    cfg = _config.load(args)
    req = _request(args, local_hostname(cfg.capture.hostname))
    if args.fleet:
        return fleetcmd.request(args, cfg, req.since_ns, req.until_ns)
    ensure_dir(Path(cfg.spool.directory), cfg.spool.group)
    t0 = time.monotonic()
    try:
        out = submitter_for(cfg)(req)
    except KeepRefused as e:
        raise RollcapError(str(e)) from None
    seconds = time.monotonic() - t0
    if args.json:
        print(json.dumps(_as_dict(req, out, seconds, cfg.offload.mode), sort_keys=True))
        return 0
    print(_text(req, out, seconds, cfg.offload.mode))
    return 0


def _as_dict(req: KeepRequest, out: KeepOutcome, seconds: float, mode: str) -> dict[str, object]:
    return {
        "id": out.request_id, "reason": req.reason, "since": _utc(req.since_ns),
        "until": _utc(req.until_ns), "files": out.files, "bytes": out.bytes,
        "unheld": [[_utc(a), _utc(b)] for a, b in out.unheld], "repeated": out.repeated,
        "durable_seconds": round(seconds, 4), "mode": mode,
    }  # fmt: skip


def _text(req: KeepRequest, out: KeepOutcome, seconds: float, mode: str) -> str:
    what = "was pinned already" if out.repeated else f"pinned in {seconds * 1000:.0f} ms"
    lines = [
        f"rollcap: keep {out.request_id} {what} ({req.reason}): "
        f"{_utc(req.since_ns)} to {_utc(req.until_ns)}",
        f"  {out.files} files, {out.bytes} bytes held now",
    ]
    if req.until_ns > time.time_ns():
        end = datetime.fromtimestamp(req.until_ns / 1e9, UTC).strftime("%H:%M:%SZ")
        lines.append(f"  the rest is pinned as it is captured; the file is cut at {end}")
    for a, b in out.unheld:
        lines.append(f"  no longer held here: {_utc(a)} to {_utc(b)}")
    if mode == "continuous":
        lines.append("  (offload.mode = continuous: what the ring no longer holds was uploaded "
                     "already: rollcap list shows it)")  # fmt: skip
    return "\n".join(lines)
