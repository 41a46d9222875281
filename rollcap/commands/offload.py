"""`rollcap offload`: the offload daemon (rollcap-offload.service's ExecStart)."""

from __future__ import annotations

import argparse

from rollcap.commands import _config

HELP = "run the offload daemon in the foreground"
DESCRIPTION = (
    "Run the offload daemon in the foreground: each file capture hands off to the spool's "
    "ready/ is compressed, uploaded to offload.destination (S3 or a file:// archive), "
    "verified and deleted. Reads the config at start only (restart to apply a change); an "
    "invalid config exits 78 before anything starts."
)
# `--help` ends with these (and rollcap(8)); tests/unit/test_cli.py parses each
EXAMPLES: tuple[tuple[str, str | None], ...] = (
    (
        "rollcap offload --config ./rollcap.toml",
        "in the foreground, as rollcap-offload.service runs it",
    ),
    (
        "ROLLCAP_CONFIG=./rollcap.toml rollcap offload",
        "the same, the config named by the environment",
    ),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    _config.add_config_argument(p)


def run(args: argparse.Namespace) -> int:
    path = _config.config_path(args)
    _config.load(args)  # first, so a bad config exits 78 before anything starts
    from rollcap.offload import service

    return service.run(path)
