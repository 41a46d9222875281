"""What `rollcap check-config` checks beyond the schema: the same as the capture
daemon does at start and at reload, so "OK" means the daemon will take it.

Errors (exit 78): capture.user does not exist, tcpdump rejects the filter, the
user cannot reach the spool. Warnings (exit 0): the interface does not exist
(yet: capture waits for it), spool.group does not exist (files get group root).
"""

from __future__ import annotations

import grp
from pathlib import Path

from rollcap.capture import layout
from rollcap.capture.command import check_config_filter, interface_exists
from rollcap.config.schema import CaptureConfig, RollcapConfig
from rollcap.errors import ConfigError


def interface_warning(cap: CaptureConfig) -> str | None:
    """One wording, with or without a filter."""
    if interface_exists(cap.interface):
        return None
    return (
        f"capture.interface: no interface {cap.interface!r} on this machine (yet); "
        "capture waits until it appears"
    )


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
    try:
        note = check_config_filter(cfg.capture)
    except ConfigError as e:
        errors += e.problems
        note = None
    if errors:
        raise ConfigError(errors)
    warnings = [w for w in (interface_warning(cfg.capture), group_warning(cfg.spool.group)) if w]
    return warnings, [note] if note else []


def check_reload_interface(running: str, new: CaptureConfig) -> None:
    """A reload onto an interface that does not exist would stop a working
    capture to wait for it: rejected (a restart waits for it on purpose)."""
    if new.interface != running and not interface_exists(new.interface):
        raise ConfigError(
            f"capture.interface: no interface {new.interface!r} on this machine; capture "
            f"on {running} goes on (restart the service to wait for {new.interface})"
        )
