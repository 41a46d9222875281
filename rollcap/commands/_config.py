"""How a command finds its config, and how strictly it reads it."""

from __future__ import annotations

import argparse
import sys

from rollcap.config import config_path_from_env, load_config
from rollcap.config.schema import RollcapConfig


def add_config_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $ROLLCAP_CONFIG or /etc/rollcap.toml)",
    )


def config_path(args: argparse.Namespace) -> str:
    """--config (check-config: its PATH first), $ROLLCAP_CONFIG, or the default."""
    return config_path_from_env(getattr(args, "path", None) or args.config)


def load(args: argparse.Namespace) -> RollcapConfig:
    """The config, valid or ConfigError (exit 78): first, before anything starts."""
    return load_config(config_path(args))


def load_for_reading(args: argparse.Namespace, warn: bool = True) -> RollcapConfig:
    """For commands that only read (status, list) or ask a daemon (reload): they must
    answer while the daemons run on an earlier config, so an error in the file is a
    warning (config.salvage), printed unless the command reports it another way."""
    from rollcap.config import salvage

    cfg, warnings = salvage.load_for_reading(config_path(args))
    if warn:
        for line in warnings:
            print(f"rollcap: warning: {line}", file=sys.stderr)
    return cfg
