"""`rollcap keep`: ship a window of the ring (issue 27).

This branch has the fleet side only (`--fleet`, `--status`); the local keep
(pins on this host) comes with the ring's command, which this module joins.

Exit codes: 0 done; 1 a host has not answered (--status), or the bucket
failed; 2 bad command line; 78 bad config.
"""

from __future__ import annotations

import argparse

from rollcap.commands import _config, _selection
from rollcap.errors import UsageError
from rollcap.keep import fleetcmd

HELP = "keep a window of packets: on this host, or across the fleet through the bucket"
DESCRIPTION = (
    "Keep the packets of a window. --fleet writes one request object below the "
    "destination's prefix; every host's offload ships what its ring still holds "
    "and acknowledges. --status ID shows who answered."
)
EXAMPLES: tuple[tuple[str, str | None], ...] = (
    ("rollcap keep --fleet --host 'web*' --since -30m --reason INC-42", "ask the web hosts"),
    ("rollcap keep --status f20261207T221500Z-1a2b3c4d", None),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    _config.add_config_argument(p)
    p._negative_number_matcher = _selection._NEGATIVE_VALUE
    p.add_argument("--since", metavar="TIME", help="window start")
    p.add_argument("--until", metavar="TIME", help="window end (default: now)")
    p.add_argument("--around", metavar="TIME", help="instead of --since/--until")
    p.add_argument("--before", metavar="DURATION", help="with --around")
    p.add_argument("--after", metavar="DURATION", help="with --around")
    p.add_argument("--reason", metavar="TEXT", help="why (shown with every object kept)")
    p.add_argument("--json", action="store_true", help="--status as JSON")
    fleetcmd.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    if args.status:
        return fleetcmd.status(args, _config.load_for_reading(args), args.json)
    if not args.fleet:
        raise UsageError("keep: this build keeps across the fleet only: --fleet or --status ID")
    if not args.reason:
        raise UsageError("keep --fleet needs --reason TEXT (e.g. the incident's id)")
    args.default_span = None
    since, until = _selection._window(args)
    return fleetcmd.request(args, _config.load(args), since, until)
