"""The `rollcap` subcommands, one module each, named as the command (check-config:
check_config.py). A module holds what the command line needs and nothing a
daemon runs: HELP (one line for `rollcap --help`), DESCRIPTION (its own
`--help`), EXAMPLES (two or more (command line, comment or None) pairs that
end its `--help` and its part of rollcap(8)), add_arguments(parser) and
run(args) -> exit status. rollcap.cli maps
the names to the modules; modules starting with '_' are shared by several.

A new subcommand: a module here with those five names, and a line in
rollcap.cli.COMMANDS.
"""

from __future__ import annotations

import argparse
from typing import Protocol


class Command(Protocol):
    HELP: str
    DESCRIPTION: str
    EXAMPLES: tuple[tuple[str, str | None], ...]

    def add_arguments(self, p: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...
