"""What a reload (SIGHUP) must do, decided from the old and new config alone.

Pure: no process, no file. The supervisor carries the plan out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rollcap.config.schema import RollcapConfig

Action = Literal["rotate", "switch", "restart"]


@dataclass(frozen=True)
class ReloadPlan:
    # rotate: capture unchanged; cut the current file now (a reload is also the
    #         documented "hand off now"), same tcpdump settings
    # switch: same interface, new settings: make-before-break, no packet lost
    # restart: another interface (or nothing running): stop, then start
    action: Action
    prepare_spool: bool  # capture.user or spool.group changed: owners of work/ change
    keep_spool_directory: bool  # spool.directory changed: refused until a restart


def plan(
    old: RollcapConfig,
    new: RollcapConfig,
    old_filter: str,
    new_filter: str,
    running_iface: str | None,
    old_uid: int,
    new_uid: int,
) -> ReloadPlan:
    changed = new.capture != old.capture or new_filter != old_filter
    if not changed:
        action: Action = "rotate"
    elif running_iface is not None and running_iface == new.capture.interface:
        action = "switch"
    else:
        action = "restart"
    return ReloadPlan(
        action=action,
        prepare_spool=new.spool.group != old.spool.group or new_uid != old_uid,
        keep_spool_directory=new.spool.directory != old.spool.directory,
    )
