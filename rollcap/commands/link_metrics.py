"""`rollcap link-metrics` (root; each unit's ExecStartPre, and
rollcap-metrics-publish.service): node_exporter's textfile directory gets a
copy of each daemon's metrics, never a way for a rollcap user to write there."""

from __future__ import annotations

import argparse

from rollcap.commands import _config
from rollcap.errors import RollcapError

HELP = (
    "(root; each unit's ExecStartPre) remove what lets or let a rollcap user write "
    "into node_exporter's directory, and publish a copy of the daemon's textfile there"
)
DESCRIPTION = (
    "Run as root before a daemon starts (its unit's ExecStartPre): remove whatever lets, "
    "or let, a rollcap user write into node_exporter's textfile directory, and publish a "
    "copy of that daemon's metrics there. With --publish: only refresh the copies of both "
    "daemons' textfiles. A broken config is the daemon's to report: it is read as far as "
    "it can be."
)
# `--help` ends with these (and rollcap(8)); tests/unit/test_cli.py parses each
EXAMPLES: tuple[tuple[str, str | None], ...] = (
    ("rollcap link-metrics capture", "as rollcap-capture.service's ExecStartPre runs it"),
    ("rollcap link-metrics --publish", None),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    _config.add_config_argument(p)
    p.add_argument("daemon", nargs="?", choices=["capture", "offload"])
    p.add_argument(
        "--publish",
        action="store_true",
        help="only publish copies of both daemons' textfiles (rollcap-metrics-publish.service)",
    )


def run(args: argparse.Namespace) -> int:
    from rollcap.metrics import publish

    if (args.daemon is None) != args.publish:
        raise RollcapError("link-metrics takes a daemon (capture or offload) or --publish")
    # before the daemon starts, which reports a broken config itself
    cfg = _config.load_for_reading(args, warn=False)
    if args.publish:
        return publish.publish_and_log(cfg)
    return publish.publish_at_start(cfg, args.daemon)
