"""`rollcap index`: write the flow summaries missing for the captures of a
window (stored with offload.flow_index off, or before it existed), with the
offload's own code (rollcap/flows/backfill.py). Resumable: what has a summary
is skipped. Exit 0 when nothing failed, 1 otherwise."""

from __future__ import annotations

import argparse
import sys

from rollcap.commands import _config
from rollcap.commands._selection import (
    add_selection_arguments,
    find,
    open_destination,
    setup,
    storage_errors,
)
from rollcap.errors import RollcapError

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
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    _config.add_config_argument(p)
    add_selection_arguments(p, default_span=None)
    p.add_argument("-j", "--jobs", type=int, default=2, metavar="N",
                   help="captures summarised at a time (default 2)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    # the summariser (numpy): loaded by this command only, not by every `rollcap` run
    from rollcap.flows.backfill import Backfill, Counts

    if args.jobs < 1 or args.jobs > 64:
        raise RollcapError(f"--jobs {args.jobs}: a number of captures at a time, 1-64")
    cfg = _config.load_for_reading(args)
    setup(args, cfg)
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
