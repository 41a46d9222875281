"""Exceptions that map to process exit codes an operator (and systemd) can act on."""

from rollcap import exitcodes

EX_CONFIG = exitcodes.CONFIG  # kept for importers; the codes live in rollcap.exitcodes


class RollcapError(Exception):
    """An error with a one-line, operator-facing message."""

    exit_code = exitcodes.FAILURE


class UsageError(RollcapError):
    """The command line is wrong (like argparse, exit 2)."""

    exit_code = exitcodes.USAGE


class ConfigError(RollcapError):
    """The configuration (file, TOML, schema or a value tcpdump rejects) is unusable.

    ``problems`` holds one line per problem; ``str()`` joins them.
    """

    exit_code = exitcodes.CONFIG

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))
