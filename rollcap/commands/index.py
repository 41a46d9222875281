"""`rollcap index`: write the flow summaries missing for the captures of a
window (stored with offload.flow_index off, or before it existed), with the
offload's own code (rollcap/flows/backfill.py). Resumable: what has a summary
is skipped. Exit 0 when nothing failed, 1 otherwise."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from rollcap.commands import _config
from rollcap.commands._selection import (
    _window,
    add_selection_arguments,
    find,
    open_destination,
    setup,
    storage_errors,
)
from rollcap.errors import RollcapError

if TYPE_CHECKING:
    from rollcap.config.schema import RollcapConfig

HELP = "write missing flow summaries for stored captures (backfill the flow index)"
DESCRIPTION = (
    "Write the flow summary of every capture in [--since, --until) that has none "
    "(stored with offload.flow_index off, or by an older rollcap): each is downloaded, "
    "decompressed and summarised as the offload does it. Captures that have one are "
    "skipped, so an interrupted run can simply be run again."
)
EXAMPLES: tuple[tuple[str, str | None], ...] = (
    ("rollcap index --since '2026-11-26' --until '2026-11-27'", "a UTC day, every host"),
    ("rollcap index --since '6 hours ago' -H web1", None),
    ("rollcap index --compact --since '2026-11-26' --until '2026-11-27'",
     "one object per 10-minute slot for fleet-wide readers (an analyst's identity)"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    _config.add_config_argument(p)
    add_selection_arguments(p, default_span=None)
    p.add_argument("-j", "--jobs", type=int, default=2, metavar="N",
                   help="captures summarised at a time (default 2)")  # fmt: skip
    p.add_argument("--compact", action="store_true",
                   help="instead: write one compacted object per 10-minute slot of the "
                        "window from its hosts' summaries (fewer GETs for fleet-wide "
                        "`flows`/`fetch --filter`); run by an analyst or requester "
                        "identity, not by hosts (docs/flows.md)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    # the summariser (numpy): loaded by this command only, not by every `rollcap` run
    from rollcap.flows.backfill import Backfill, Counts

    if args.jobs < 1 or args.jobs > 64:
        raise RollcapError(f"--jobs {args.jobs}: a number of captures at a time, 1-64")
    cfg = _config.load_for_reading(args)
    setup(args, cfg)
    if args.compact:
        return _compact(args, cfg)
    storage = open_destination(cfg)
    counts = Counts()
    try:
        caps, _summary, _window = find(args, cfg, storage, workers=16)
        fill = Backfill(storage, prefix=storage.key_prefix,
                        max_flows=cfg.offload.flow_index_max_flows,
                        hosts=args.host, workers=args.jobs)  # fmt: skip
        with storage_errors(storage.describe(), "indexing"):
            for o in fill.run(caps):
                counts.add(o)
                if o.kind in ("skipped", "failed"):
                    print(f"rollcap: {o.key}: {o.kind}: {o.detail}", file=sys.stderr)
                elif args.verbose:
                    print(f"rollcap: {o.key}: {o.kind}", file=sys.stderr)
    finally:
        storage.close()
    print(
        f"{len(caps)} captures in the window: {counts.written} summaries written "
        f"({counts.flows} flows), {counts.exists} had one, {counts.skipped} skipped, "
        f"{counts.failed} failed"
    )
    return 1 if counts.failed else 0


def _compact(args: argparse.Namespace, cfg: RollcapConfig) -> int:
    from rollcap.flows import compact as compaction
    from rollcap.retrieve.timeexpr import to_datetime

    if args.host:
        raise RollcapError("--compact: a slot's compaction holds every host; drop --host")
    since_ns, until_ns = _window(args)
    storage = open_destination(cfg)
    done: dict[str, int] = {"written": 0, "current": 0, "empty": 0, "failed": 0}
    sources = 0
    try:
        with storage_errors(storage.describe(), "compacting the flow index"):
            for r in compaction.compact(storage, storage.key_prefix, to_datetime(since_ns),
                                        to_datetime(max(since_ns + 1, until_ns))):  # fmt: skip
                done[r.kind] += 1
                if r.kind == "written":
                    sources += r.sources
                if r.kind == "failed":
                    print(f"rollcap: slot {r.slot:%Y-%m-%d %H:%M}: failed: {r.detail}",
                          file=sys.stderr)  # fmt: skip
                elif args.verbose and r.kind != "empty":
                    print(f"rollcap: slot {r.slot:%Y-%m-%d %H:%M}: {r.kind} {r.key} "
                          f"({r.sources} summaries)", file=sys.stderr)  # fmt: skip
    finally:
        storage.close()
    print(f"{done['written']} slots compacted ({sources} summaries), {done['current']} "
          f"already current, {done['empty']} without summaries, {done['failed']} failed")
    return 1 if done["failed"] else 0
