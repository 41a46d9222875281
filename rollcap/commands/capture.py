"""`rollcap capture`: the capture daemon (rollcap-capture.service's ExecStart)."""

from __future__ import annotations

import argparse

from rollcap.commands import _config

HELP = "run the capture daemon in the foreground"
DESCRIPTION = (
    "Run the capture daemon in the foreground: tcpdump on capture.interface, rotated into "
    "the spool, each finished file handed off to ready/ for the offload daemon. Stops on "
    "SIGTERM; SIGHUP re-reads the config (rollcap reload), SIGUSR2 cuts the current file "
    "(rollcap rotate). An invalid config exits 78 before anything starts."
)
# `--help` ends with these (and rollcap(8)); tests/unit/test_cli.py parses each
EXAMPLES: tuple[tuple[str, str | None], ...] = (
    (
        "rollcap capture --config ./rollcap.toml",
        "in the foreground, as rollcap-capture.service runs it",
    ),
    (
        "ROLLCAP_CONFIG=./rollcap.toml rollcap capture",
        "the same, the config named by the environment",
    ),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    _config.add_config_argument(p)


def run(args: argparse.Namespace) -> int:
    path = _config.config_path(args)
    _config.load(args)  # first, so a bad config exits 78 before anything starts
    from rollcap.capture import service

    return service.run(path)
