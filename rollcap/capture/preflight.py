"""What `rollcap check-config` checks beyond the schema: the same as the capture
daemon does at start and at reload, so "OK" means the daemon will take it.

Errors (exit 78): capture.user does not exist, tcpdump rejects the filter, the
user cannot reach the spool, a rollcap user may write into node_exporter's
directory (or a tmpfiles.d line lets it). Warnings (exit 0): the interface does not exist
(yet: capture waits for it), spool.group does not exist (files get group root).
"""

from __future__ import annotations

import grp
from pathlib import Path

from rollcap.capture.command import check_config_filter, interface_exists
from rollcap.capture.exclusion import filter_key, keyed
from rollcap.config.schema import CaptureConfig, RollcapConfig
from rollcap.errors import ConfigError
from rollcap.metrics import nodeexporter
from rollcap.spool import layout


def interface_warnings(cap: CaptureConfig) -> list[str]:
    """One wording, with or without a filter."""
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


def check_reload_interface(running: list[str], new: CaptureConfig) -> None:
    """A reload onto an interface that does not exist would stop or grow a working
    capture to wait for it: rejected (a restart waits for it on purpose)."""
    for name in new.interfaces:
        if name not in running and not interface_exists(name):
            raise ConfigError(
                f"capture.interface: no interface {name!r} on this machine; capture "
                f"on {', '.join(running)} goes on (restart the service to wait for {name})"
            )
