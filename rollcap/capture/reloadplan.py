"""What a reload (SIGHUP) must do, decided from the old and new config alone.

Pure: no process, no file. The supervisor carries the plan out, per interface.
"""

from __future__ import annotations

from dataclasses import dataclass

from rollcap.config.schema import RollcapConfig


@dataclass(frozen=True)
class ReloadPlan:
    # rotate: capture unchanged on every interface: cut every current file now (a
    #         reload is also the documented "hand off now"), same settings
    rotate: bool
    start: tuple[str, ...]  # interfaces new in the list: start them
    stop: tuple[str, ...]  # interfaces no longer in the list: stop them
    # running, settings (or effective filter) changed: make-before-break, no packet lost
    switch: tuple[str, ...]
    # settings changed, nothing running (waiting, restarting): start anew at once
    restart: tuple[str, ...]
    keep: tuple[str, ...]  # unchanged: not touched at all
    prepare_spool: bool  # capture.user or spool.group changed: owners of work/ change
    keep_spool_directory: bool  # spool.directory changed: refused until a restart

    @property
    def action(self) -> str:
        """One word for a single-interface reload (the log line, older callers)."""
        if self.rotate:
            return "rotate"
        if self.switch and not (self.start or self.stop or self.restart):
            return "switch"
        return "restart" if self.start or self.stop or self.restart else "switch"


def plan(
    old: RollcapConfig,
    new: RollcapConfig,
    old_filters: dict[str, str],
    new_filters: dict[str, str],
    running: set[str],
    old_uid: int,
    new_uid: int,
) -> ReloadPlan:
    """running: the interfaces whose tcpdump is alive now."""
    old_names, new_names = old.capture.interfaces, new.capture.interfaces
    start, switch, restart, keep = [], [], [], []
    for name in new_names:
        if name not in old_names:
            start.append(name)
            continue
        same = old.capture.for_interface(name) == new.capture.for_interface(
            name
        ) and old_filters.get(name) == new_filters.get(name)
        if same:
            keep.append(name)
        elif name in running:
            switch.append(name)
        else:
            restart.append(name)
    stop = [n for n in old_names if n not in new_names]
    changed = bool(start or stop or switch or restart)
    return ReloadPlan(
        rotate=not changed,
        start=tuple(start),
        stop=tuple(stop),
        switch=tuple(switch),
        restart=tuple(restart),
        keep=tuple(keep),
        prepare_spool=new.spool.group != old.spool.group or new_uid != old_uid,
        keep_spool_directory=new.spool.directory != old.spool.directory,
    )
