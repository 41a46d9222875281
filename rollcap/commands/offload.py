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


def add_arguments(p: argparse.ArgumentParser) -> None:
    _config.add_config_argument(p)


def run(args: argparse.Namespace) -> int:
    path = _config.config_path(args)
    _config.load(args)  # first, so a bad config exits 78 before anything starts
    from rollcap.offload import service

    return service.run(path)
