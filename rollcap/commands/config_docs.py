"""`rollcap config-docs`: the config's documentation, from its schema."""

from __future__ import annotations

import argparse
import sys

from rollcap import __version__

HELP = "print the sample config, markdown reference or man page"
DESCRIPTION = (
    "Print the documentation of /etc/rollcap.toml, generated from the schema the daemons "
    "validate against: a commented sample config (default), the markdown reference "
    "(docs/config.md) or the man page rollcap.toml(5). Reads no config."
)
# `--help` ends with these (and rollcap(8)); tests/unit/test_cli.py parses each
EXAMPLES: tuple[tuple[str, str | None], ...] = (
    ("rollcap config-docs > rollcap.toml", "a commented sample config to start from"),
    ("rollcap config-docs --format man | man -l -", None),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["sample", "markdown", "man"], default="sample")


def run(args: argparse.Namespace) -> int:
    from rollcap.config import render

    if args.format == "man":
        sys.stdout.write(render.render_manpage(__version__))
    elif args.format == "markdown":
        sys.stdout.write(render.render_markdown())
    else:
        sys.stdout.write(render.render_sample())
    return 0
