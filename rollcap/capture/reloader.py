"""A reload (SIGHUP) carried out: read and check the new config, plan it
interface by interface (rollcap.capture.reloadplan), hand the spool to a new
capture.user or spool.group, stop, switch, restart and start the interfaces,
then record the verdict (rollcap.capture.reload_verdict).

A rejected reload keeps the running configuration and never stops capture.
The supervisor (rollcap.capture.service) owns what a reload changes; Reloadable
names exactly that.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from rollcap.capture import exclusion, reload_verdict, reloadplan
from rollcap.capture.counters import Counters
from rollcap.capture.handoff import Handoff
from rollcap.capture.interface import InterfaceCapture, Shared, SwitchRequest, switch_all
from rollcap.capture.preflight import check_reload_interface
from rollcap.config import load_config
from rollcap.config.schema import RollcapConfig
from rollcap.errors import ConfigError
from rollcap.journal import fields
from rollcap.notify import Notifier
from rollcap.spool import Spool, layout
from rollcap.spool.readyname import local_hostname

log = logging.getLogger("rollcap.capture")


class Reloadable(Shared, Protocol):
    """What a reload reads and changes in the supervisor (and, as Shared, hands
    to the interfaces it starts)."""

    cfg: RollcapConfig
    spool: Spool
    notifier: Notifier
    handoff: Handoff | None
    captures: dict[str, InterfaceCapture]  # capture.interface, in order
    retired: Counters  # counters of interfaces removed by a reload
    identity: layout.Identity
    last_error: str

    def clear_error(self, *prefixes: str) -> None: ...
    def start_capture(self) -> None: ...
    def rotate(self, reason: str) -> None: ...
    def enforce_budget(self) -> None: ...
    def status_line(self) -> str: ...


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


def reload(config_path: str, sup: Reloadable) -> None:
    sup.notifier.reloading()
    try:
        c = check(config_path, sup.cfg, sup.identity.uid, sup.spool.root)
    except ConfigError as e:
        for line in e.problems:
            log.error("reload rejected, keeping the running configuration: %s", line)
        sup.last_error = f"reload rejected: {e.problems[0]}"
        reload_verdict.record(sup.spool.capture_state, False, "; ".join(e.problems))
        sup.notifier.ready(sup.status_line())
        return
    new, effective, uid = c.cfg, c.effective, c.uid
    running = {n for n, ic in sup.captures.items() if ic.running()}
    old_filters = {n: ic.effective_filter for n, ic in sup.captures.items()}
    plan = reloadplan.plan(sup.cfg, new, old_filters, effective, running, sup.identity.uid, uid)
    logging.getLogger().setLevel(new.log.level.upper())
    sup.notifier.watchdog()  # validation made progress; the switch may take seconds
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
            sup.last_error = f"reload rejected: {e}"
            reload_verdict.record(sup.spool.capture_state, False, sup.last_error)
            sup.notifier.ready(sup.status_line())
            return
        sup.identity = replace(sup.identity, uid=uid, gid=gid)
        assert sup.handoff is not None
        sup.handoff.owners.add(uid)  # the old user's files are handed off too
    sup.identity = replace(sup.identity, switch_user=c.switch_user)
    sup.cfg = new
    assert sup.handoff is not None
    sup.handoff.gid = sup.identity.gid
    sup.handoff.host = local_hostname(new.capture.hostname)
    sup.clear_error("reload rejected")
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
        sup.rotate("reload")
    # a switch that failed keeps the old tcpdump (and filter) running
    reload_verdict.record(sup.spool.capture_state, switched, "configuration reloaded"
                          if switched else f"not applied: {sup.last_error}")  # fmt: skip
    sup.enforce_budget()
    sup.notifier.ready(sup.status_line())


def apply(sup: Reloadable, plan: reloadplan.ReloadPlan, new: RollcapConfig,
          effective: dict[str, str]) -> bool:  # fmt: skip
    """Carry a reload plan out, interface by interface; False if a switch failed
    (the old tcpdump, and its settings, run on)."""
    for name in plan.stop:
        ic = sup.captures.pop(name)
        ic.stop(drain=True)
        sup.retired = sup.retired.plus(ic.live_counters())
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
        sup.captures[name] = InterfaceCapture(new.capture.for_interface(name), effective[name], sup)
    # the configured order (status, journal)
    sup.captures = {n: sup.captures[n] for n in new.capture.interfaces}
    sup.start_capture()
    return ok
