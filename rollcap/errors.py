"""Exceptions that map to process exit codes an operator (and systemd) can act on."""

EX_CONFIG = 78  # sysexits.h; units use RestartPreventExitStatus=78


class RollcapError(Exception):
    """An error with a one-line, operator-facing message."""

    exit_code = 1


class ConfigError(RollcapError):
    """The configuration (file, TOML, schema or a value tcpdump rejects) is unusable.

    ``problems`` holds one line per problem; ``str()`` joins them.
    """

    exit_code = EX_CONFIG

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))
