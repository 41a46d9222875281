"""A reload's check of the interfaces (`rollcap check-config` is
rollcap.commands.check_config)."""

from __future__ import annotations

from rollcap.capture.command import interface_exists
from rollcap.config.schema import CaptureConfig
from rollcap.errors import ConfigError


def check_reload_interface(running: list[str], new: CaptureConfig) -> None:
    """A reload onto an interface that does not exist would stop or grow a working
    capture to wait for it: rejected (a restart waits for it on purpose)."""
    for name in new.interfaces:
        if name not in running and not interface_exists(name):
            raise ConfigError(
                f"capture.interface: no interface {name!r} on this machine; capture "
                f"on {', '.join(running)} goes on (restart the service to wait for {name})"
            )
