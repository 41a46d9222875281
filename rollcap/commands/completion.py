"""`rollcap completion`: the bash completion script, and the hosts it offers."""

from __future__ import annotations

import argparse
import sys

from rollcap import exitcodes
from rollcap.commands._config import add_config_argument

HELP = "print the bash completion script (or the hosts it completes)"
DESCRIPTION = (
    "Print the bash completion script for rollcap, generated from the command line's own "
    "parser: subcommands, options, their choices, files, interfaces, and hosts for -H "
    "(--hosts: this host and the hosts below the destination's prefix, one listing; the "
    "script gives it 2 s). The package installs the script; from a clone, source it "
    "(source <(rollcap completion))."
)
EXAMPLES: tuple[tuple[str, str | None], ...] = (
    ("rollcap completion bash > ~/.local/share/bash-completion/completions/rollcap",
     "from a clone: bash-completion loads it for you"),
    ("rollcap completion --hosts --config fleet.toml", "the hosts -H completes"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", nargs="?", choices=["bash"], default="bash", metavar="SHELL",
                   help="bash (the only one)")  # fmt: skip
    p.add_argument("--hosts", action="store_true",
                   help="print the hosts -H completes, one a line, and nothing on an error")
    add_config_argument(p)


def run(args: argparse.Namespace) -> int:
    if args.hosts:
        for h in hosts(args):
            print(h)
        return exitcodes.OK
    from rollcap.cli import build_parser
    from rollcap.completion import render_bash

    sys.stdout.write(render_bash(build_parser()))
    return exitcodes.OK


def hosts(args: argparse.Namespace) -> list[str]:
    """This host (the config's hostname), then the hosts under the destination's
    prefix where the key template puts them first; what cannot be read is left out."""
    from rollcap.commands._config import config_path
    from rollcap.config.load import load_config
    from rollcap.errors import RollcapError
    from rollcap.retrieve.select import hosts_below
    from rollcap.spool.readyname import local_hostname
    from rollcap.storage import StorageError, open_storage

    try:
        cfg = load_config(config_path(args))
    except RollcapError:
        return []
    out = [local_hostname(cfg.capture.hostname)]
    try:
        storage = open_storage(cfg.offload)
        out += [h for h in hosts_below(storage, cfg.offload.key_template, storage.key_prefix)
                if h not in out]  # fmt: skip
    except (StorageError, RollcapError, OSError):
        pass
    return out
