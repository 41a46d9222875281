"""The `rollcap` command: the table of subcommands (one module each, in
rollcap.commands) and the rules every one of them follows: how an error, a
closed stdout and Ctrl-C end the process."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import select
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence

from rollcap import __version__, exitcodes
from rollcap.commands import Command
from rollcap.errors import ConfigError, RollcapError

# In the order `rollcap --help` lists them: name -> module of rollcap.commands.
_MODULES = {
    "capture": "capture",
    "offload": "offload",
    "check-config": "check_config",
    "reload": "reload",
    "status": "status",
    "rotate": "rotate",
    "list": "list",
    "fetch": "fetch",
    "flows": "flows",
    "index": "index",
    "hold": "hold",
    "keep": "keep",
    "check-destination": "check_destination",
    "link-metrics": "link_metrics",
    "config-docs": "config_docs",
    "man": "man",
    "completion": "completion",
}


class _Commands(Mapping[str, Command]):
    """The subcommands, each module imported when it is first looked up: a
    command line imports its own command only (`rollcap keep` does not load
    numpy for `flows` or boto3 for `check-destination`; bench/cli_start.py)."""

    def __getitem__(self, name: str) -> Command:
        module: Command = importlib.import_module(f"rollcap.commands.{_MODULES[name]}")
        return module

    def __iter__(self) -> Iterator[str]:
        return iter(_MODULES)

    def __len__(self) -> int:
        return len(_MODULES)


COMMANDS: Mapping[str, Command] = _Commands()


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps the description as usual; keeps the examples' lines as they are."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:\n"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def examples_text(command: Command) -> str:
    """The epilog of a subcommand's --help: each example, its comment after '#'."""
    lines = ["examples:"]
    for line, note in command.EXAMPLES:
        lines.append(f"  {line}" + (f"    # {note}" if note else ""))
    return "\n".join(lines)


def build_parser(names: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of `rollcap`, with the subcommands ``names`` (default: all)."""
    parser = argparse.ArgumentParser(
        prog="rollcap",
        description="Rolling packet capture with verified offload to S3 or a local archive.",
    )
    parser.add_argument("--version", action="version", version=f"rollcap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS if names is None else names:
        command = COMMANDS[name]
        p = sub.add_parser(
            name,
            help=command.HELP,
            description=command.DESCRIPTION,
            epilog=examples_text(command),
            formatter_class=_HelpFormatter,
        )
        command.add_arguments(p)
    return parser


def _needed(argv: Sequence[str]) -> list[str] | None:
    """The subcommands a command line needs a parser for: its own, none for a bare
    --version, all (None) for anything else (--help, a mistake: argparse's
    message lists them)."""
    for i, word in enumerate(argv):
        if not word.startswith("-"):
            return [word] if word in _MODULES else None
        if word != "--version":
            return None
        if i == len(argv) - 1:
            return []
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_needed(argv)).parse_args(argv)
    try:
        code = COMMANDS[args.command].run(args)
        sys.stdout.flush()  # here, not at exit: a closed pipe is caught below
        return code
    except BrokenPipeError as e:
        if not _stdout_closed():  # another pipe (a child's): an error like any other
            print(f"rollcap: {e}", file=sys.stderr)
            return exitcodes.FAILURE
        return _reader_went_away(args)
    except ConfigError as e:
        for line in e.problems:
            print(f"rollcap: {_in_config_file(args, line)}", file=sys.stderr)
        return e.exit_code
    except RollcapError as e:
        print(f"rollcap: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return exitcodes.INTERRUPTED


_KEY_LINE = re.compile(r"[a-z_]+\.\S*: ")


def _in_config_file(args: argparse.Namespace, line: str) -> str:
    """A problem that names a key ('capture.user: ...', from checks past the schema:
    the user, tcpdump's verdict on a filter) names the file too, as the schema's do."""
    from rollcap.commands._config import config_path

    if not hasattr(args, "config") or not _KEY_LINE.match(line):
        return line
    return f"{config_path(args)}: {line}"


def _stdout_closed() -> bool:
    """stdout is a pipe or socket whose reader has gone (poll: POLLERR/POLLHUP)."""
    p = select.poll()
    try:
        p.register(sys.stdout.fileno(), select.POLLOUT)
    except (OSError, ValueError):  # no file descriptor behind sys.stdout
        return False
    return any(ev & (select.POLLERR | select.POLLHUP) for _fd, ev in p.poll(0))


def _reader_went_away(args: argparse.Namespace) -> int:
    """The one rule for a closed stdout (`rollcap status --json | head -3`, `fetch -o - |
    head -c 100`): the reader has seen enough. Nothing more is written, no traceback,
    exit 141 (128 + SIGPIPE) as a Unix tool killed by SIGPIPE; except `status`,
    whose exit code is the health a check reads (set before it prints)."""
    # stdout's buffer still holds what could not be written: point the fd at
    # /dev/null so the interpreter's final flush cannot raise again
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    health = getattr(args, "health", None)
    return health if isinstance(health, int) else exitcodes.by_signal(signal.SIGPIPE)
