"""A reload (SIGHUP): planned, checked, carried out, and its verdict recorded.

plan_reload decides what a reload must do from the old and new config alone.
Pure: no process, no file. The supervisor carries the plan out, per interface.

check_reload_interface is a reload's check of the interfaces (`rollcap check-config` is
rollcap.commands.check_config).

The verdict: a reload accepted or rejected, so `systemctl reload` can fail.

SIGHUP carries no reply, so the capture daemon writes its verdict after each
reload into ``capture/capture-reload.json``, beside capture.json (atomically:
seq, ok, message, pid, updated). `rollcap reload` (the unit's ExecReload;
rollcap.commands.reload) reads the seq, sends SIGHUP, waits for a newer verdict
from that pid and exits 0 or 1 with the daemon's message: a rejected config
makes `systemctl reload` fail instead of printing nothing and keeping the old
config in silence.

A reload (SIGHUP) carried out: read and check the new config, plan it
interface by interface (plan_reload), hand the spool to a new
capture.user or spool.group, stop, switch, restart and start the interfaces,
then record the verdict (record).

A rejected reload keeps the running configuration and never stops capture.
The supervisor (rollcap.capture.service) owns what a reload changes: these
functions are its own, called with it.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollcap.capture import exclusion
from rollcap.capture.command import interface_exists
from rollcap.capture.conditions import Condition
from rollcap.capture.interface import InterfaceCapture, SwitchRequest, switch_all
from rollcap.capture.status import overall_error
from rollcap.config import load_config
from rollcap.config.schema import CaptureConfig, RollcapConfig
from rollcap.errors import ConfigError
from rollcap.journal import fields
from rollcap.spool import layout
from rollcap.spool.readyname import local_hostname
from rollcap.spool.state import read_state, write_state

if TYPE_CHECKING:  # the supervisor calls a reload with itself
    from rollcap.capture.service import Supervisor

log = logging.getLogger("rollcap.capture")


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


def plan_reload(
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


def check_reload_interface(running: list[str], new: CaptureConfig) -> None:
    """A reload onto an interface that does not exist would stop or grow a working
    capture to wait for it: rejected (a restart waits for it on purpose)."""
    for name in new.interfaces:
        if name not in running and not interface_exists(name):
            raise ConfigError(
                f"capture.interface: no interface {name!r} on this machine; capture "
                f"on {', '.join(running)} goes on (restart the service to wait for {name})"
            )


NAME = "capture-reload.json"


def path_in(state_dir: Path) -> Path:
    return state_dir / NAME


def seq(v: dict[str, Any] | None) -> int:
    """The verdict's number (0: none yet); `rollcap reload` waits for a newer one."""
    n = v.get("seq") if v else None
    return n if isinstance(n, int) else 0


def record(state_dir: Path, ok: bool, message: str) -> None:
    """Daemon side: the verdict of the reload just done. A full disk costs only
    the answer (the client then times out), never the reload itself."""
    p = path_in(state_dir)
    try:
        write_state(p, {"seq": seq(read_state(p)) + 1, "ok": ok, "message": message})
    except OSError as e:
        log.warning("cannot write the reload verdict %s: %s", p, e.strerror or e)


@dataclass(frozen=True)
class Candidate:
    """A new config that passed every check, with what it resolves to."""

    cfg: RollcapConfig
    effective: dict[str, str]  # each interface's effective filter
    uid: int  # tcpdump's files' owner (layout.tcpdump_identity)
    switch_user: str | None


def check(config_path: str, running: RollcapConfig, running_uid: int, root: Path) -> Candidate:
    """Read and check the new config; ConfigError if the reload must be rejected."""
    new = load_config(config_path)
    if new.spool.directory != running.spool.directory:  # see ReloadPlan
        log.error(
            "reload: spool.directory cannot change while running (restart the service); keeping %s",
            running.spool.directory,
        )
        new = new.model_copy(
            update={"spool": new.spool.model_copy(update={"directory": running.spool.directory})}
        )
    uid, switch_user = layout.tcpdump_identity(new.capture.user)
    if uid != running_uid:
        # before prepare() chowns work/ away from the running tcpdump's user
        layout.check_reachable(root, uid)
    check_reload_interface(running.capture.interfaces, new.capture)
    effective = exclusion.effective_filters(new)
    # Shorter than at start: the main loop is blocked meanwhile, and the
    # whole reload must stay well inside WatchdogSec.
    exclusion.validate(new, effective, timeout=10)
    return Candidate(new, effective, uid, switch_user)


def reload(config_path: str, sup: Supervisor) -> None:
    sup.status.notifier.reloading()
    try:
        c = check(config_path, sup.cfg, sup.identity.uid, sup.spool.root)
    except ConfigError as e:
        for line in e.problems:
            log.error("reload rejected, keeping the running configuration: %s", line)
        sup.conditions.set(Condition.RELOAD_REJECTED, f"reload rejected: {e.problems[0]}")
        record(sup.spool.capture_state, False, "; ".join(e.problems))
        sup.status.notifier.ready(sup.status_line())
        return
    new, effective, uid = c.cfg, c.effective, c.uid
    running = {n for n, ic in sup.captures.items() if ic.running()}
    old_filters = {n: ic.effective_filter for n, ic in sup.captures.items()}
    plan = plan_reload(sup.cfg, new, old_filters, effective, running, sup.identity.uid, uid)
    logging.getLogger().setLevel(new.log.level.upper())
    sup.status.notifier.watchdog()  # validation made progress; the switch may take seconds
    if plan.prepare_spool:
        try:
            gid = layout.resolve_group(new.spool.group)
            layout.prepare(sup.spool, uid, gid)
        except (OSError, ConfigError) as e:
            # e.g. no CAP_FOWNER under the unit's sandbox: never exit (78 would
            # stop capture for good); put the spool back and keep capturing.
            with contextlib.suppress(OSError, ConfigError):
                layout.prepare(sup.spool, sup.identity.uid, sup.identity.gid)
            log.error(
                "reload rejected, keeping the running configuration: cannot prepare "
                "the spool for capture.user/spool.group: %s",
                e,
            )
            msg = f"reload rejected: {e}"
            sup.conditions.set(Condition.RELOAD_REJECTED, msg)
            record(sup.spool.capture_state, False, msg)
            sup.status.notifier.ready(sup.status_line())
            return
        sup.identity = replace(sup.identity, uid=uid, gid=gid)
        sup.session.handoff.owners.add(uid)  # the old user's files are handed off too
    sup.identity = replace(sup.identity, switch_user=c.switch_user)
    sup.cfg = new
    sup.session.handoff.gid = sup.identity.gid
    sup.session.handoff.host = local_hostname(new.capture.hostname)
    sup.conditions.clear(Condition.RELOAD_REJECTED)
    switched = apply(sup, plan, new, effective)
    log.info(
        "configuration reloaded%s",
        " (capture unchanged: cutting the current file now)" if plan.rotate else "",
        extra=fields(
            interface=", ".join(new.capture.interfaces),
            filter="; ".join(effective.values()),
            started=", ".join(plan.start) or None,
            stopped=", ".join(plan.stop) or None,
            switched=", ".join(plan.switch) or None,
            unchanged=", ".join(plan.keep) or None,
        ),
    )
    if plan.rotate:
        sup.cuts.rotate("reload")
    # a switch that failed keeps the old tcpdump (and filter) running
    why = overall_error(sup.conditions.latest(), sup.captures)
    record(sup.spool.capture_state, switched,
           "configuration reloaded" if switched else f"not applied: {why}")  # fmt: skip
    sup.enforce_budget()
    sup.status.notifier.ready(sup.status_line())


def apply(sup: Supervisor, plan: ReloadPlan, new: RollcapConfig,
          effective: dict[str, str]) -> bool:  # fmt: skip
    """Carry a reload plan out, interface by interface; False if a switch failed
    (the old tcpdump, and its settings, run on)."""
    interfaces = sup.interfaces
    for name in plan.stop:
        ic = interfaces.captures.pop(name)
        ic.stop(drain=True)
        interfaces.retire(ic)
        log.info("reload: stopped capture on %s", name, extra=fields(interface=name))
    reqs = [
        SwitchRequest(sup.captures[n], "reload", new.capture.for_interface(n), effective[n])
        for n in plan.switch
    ]
    ok = all(switch_all(reqs))  # one overlap for all of them
    for name in plan.restart:
        ic = sup.captures[name]
        ic.stop(drain=True)
        ic.cap, ic.effective_filter = new.capture.for_interface(name), effective[name]
        ic.next_start, ic.waiting_logged = 0.0, False
    for name in plan.start:
        ic = InterfaceCapture(new.capture.for_interface(name), effective[name], sup)
        interfaces.captures[name] = ic
    # the configured order (status, journal)
    interfaces.captures = {n: interfaces.captures[n] for n in new.capture.interfaces}
    sup.start_capture()
    return ok
