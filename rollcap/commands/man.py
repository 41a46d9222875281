"""`rollcap man [PAGE]`: the man pages, from a clone as from the package."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

from rollcap import __version__, exitcodes

HELP = "show the man page rollcap(8) or rollcap.toml(5)"
DESCRIPTION = (
    "Show a man page, rendered from the same source the package builds its pages from "
    "(the command line's parser for rollcap(8), the config's schema for rollcap.toml(5)), "
    "so it works from a clone as well as installed. Needs man (man-db); --roff prints "
    "the page's source instead, for man -l. Reads no config."
)
EXAMPLES: tuple[tuple[str, str | None], ...] = (
    ("rollcap man", "rollcap(8): every command, option and exit status"),
    ("rollcap man rollcap.toml", "rollcap.toml(5): every config key"),
    ("rollcap man --roff rollcap > rollcap.8", "the source, for man -l rollcap.8"),
)
PAGES = ("rollcap", "rollcap.toml")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("page", nargs="?", choices=PAGES, default="rollcap", metavar="PAGE",
                   help="rollcap (default) or rollcap.toml")  # fmt: skip
    p.add_argument("--roff", action="store_true", help="print the page's roff source")


def source(page: str) -> str:
    if page == "rollcap.toml":
        from rollcap.config.render import render_manpage

        return render_manpage(__version__)
    from rollcap.manpage import render  # imports rollcap.cli: not at module level

    return render(__version__)


def run(args: argparse.Namespace) -> int:
    roff = source(args.page)
    if args.roff:
        sys.stdout.write(roff)
        return exitcodes.OK
    man = shutil.which("man")
    if man is None:
        print("rollcap: man is not installed (apt install man-db); "
              f"rollcap man --roff {args.page} prints the page's source",
              file=sys.stderr)  # fmt: skip
        return exitcodes.FAILURE
    sys.stdout.flush()
    return subprocess.run([man, "-l", "-"], input=roff.encode(), check=False).returncode
