"""`rollcap check-config`: what the capture daemon checks beyond the schema, at
start and at reload, so "OK" means the daemon will take the file.

Errors (exit 78): capture.user does not exist, tcpdump rejects the filter, the
user cannot reach the spool, a rollcap user may write into node_exporter's
directory (or a tmpfiles.d line lets it). Warnings (exit 0): the interface does not exist
(yet: capture waits for it), spool.group does not exist (files get group root), the
system clock is not synchronised (windows across hosts need NTP: docs/fleet.md).
"""

from __future__ import annotations

import argparse
import grp
import sys
from pathlib import Path

from rollcap import clock
from rollcap.commands import _config
from rollcap.config.schema import CaptureConfig, RollcapConfig
from rollcap.errors import ConfigError

HELP = "validate the config; --show prints it in full"
DESCRIPTION = (
    "Validate the config as the capture daemon does at start and at reload: the schema, "
    "capture.user, the spool's reach, each interface's filter (compiled by tcpdump) and "
    "node_exporter's directory. Prints 'PATH: OK' (or the effective config with --show) "
    "and exits 0, warnings on stderr; exits 78 with one line per error."
)
# `--help` ends with these (and rollcap(8)); tests/unit/test_cli.py parses each
EXAMPLES: tuple[tuple[str, str | None], ...] = (
    ("rollcap check-config", "/etc/rollcap.toml, or $ROLLCAP_CONFIG"),
    ("rollcap check-config --show ./new.toml", "a new file, every key as the daemons read it"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", nargs="?", help="config file to check (default: as --config)")
    _config.add_config_argument(p)
    p.add_argument("--show", action="store_true", help="print the effective config as TOML")


def run(args: argparse.Namespace) -> int:
    path = _config.config_path(args)
    cfg = _config.load(args)
    warnings, notes = check(cfg)  # ConfigError (78) on an error
    unsynced = clock.warning(clock.synchronised())
    warnings += [unsynced] if unsynced else []
    if args.show:
        from rollcap.config.show import dump_toml

        sys.stdout.write(dump_toml(cfg))
    else:
        print(f"{path}: OK")  # warnings (stderr) do not stop the daemon
    for line in warnings:
        print(f"rollcap: warning: {line}", file=sys.stderr)
    for line in notes:
        print(f"rollcap: note: {line}", file=sys.stderr)
    return 0


def interface_warnings(cap: CaptureConfig) -> list[str]:
    """One wording, with or without a filter."""
    from rollcap.capture.command import interface_exists

    return [
        f"capture.interface: no interface {name!r} on this machine (yet); "
        "capture waits until it appears"
        for name in cap.interfaces
        if not interface_exists(name)
    ]


def group_warning(name: str) -> str | None:
    try:
        grp.getgrnam(name)
    except KeyError:
        return (
            f"spool.group: no group {name!r} on this machine; finished files would get "
            "group root (the offload service could not read them unless it runs as root)"
        )
    return None


def check(cfg: RollcapConfig) -> tuple[list[str], list[str]]:
    """(warnings, notes); ConfigError with every error."""
    from rollcap.capture.command import check_config_filter
    from rollcap.capture.exclusion import filter_key, keyed
    from rollcap.metrics import nodeexporter
    from rollcap.spool import layout

    errors: list[str] = []
    uid: int | None = None
    try:
        uid = layout.resolve_user(cfg.capture.user)
    except ConfigError as e:
        errors += e.problems
    spool = Path(cfg.spool.directory)
    if uid is not None and spool.is_dir():
        try:
            layout.check_reachable(spool, uid)
        except (ConfigError, OSError) as e:
            errors += e.problems if isinstance(e, ConfigError) else [f"spool.directory: {e}"]
    notes: list[str] = []
    for name in cfg.capture.interfaces:  # each interface's own filter
        key = filter_key(cfg, name)
        try:
            note = check_config_filter(cfg.capture.for_interface(name))
        except ConfigError as e:
            errors += keyed(e, key).problems
            continue
        if note:
            notes.append(note.replace("capture.filter", key, 1))
    try:
        nodeexporter.check_no_grants(cfg)
    except ConfigError as e:
        errors += e.problems
    if errors:
        raise ConfigError(errors)
    group = group_warning(cfg.spool.group)
    return interface_warnings(cfg.capture) + ([group] if group else []), notes
