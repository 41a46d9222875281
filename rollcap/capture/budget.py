"""The spool budget: what the spool itself uses, the filesystem's free space, and
a pure policy turning them into a decision (drop how much, pause or not).

The spool's own overage is the only thing drop-oldest ever deletes: bytes over
spool.max_megabytes. Free space below spool.min_free_percent is not the spool's
to fix by deleting captures (something else may have filled the disk): capture
pauses and says so, and resumes once there is room again.

Fences (pause-capture): the file names a running tcpdump must not open,
placed after the last file the budget has room for (rollcap.capture.fences).

BudgetKeeper keeps the spool within its budget: measure, decide (decide(),
pure), then drop the oldest ready/ files and trim quarantine/. Whether capture
pauses or resumes is its answer; reserve() is what the live files may still
grow by, the decision's other input.

BudgetControl applies the budget to the running tcpdumps, for the supervisor:
it carries the keeper's answer out (a pause stops every tcpdump at once, a
resume lets them start), keeps each tcpdump's fence where the budget has room,
and keeps the budget during a switch's overlap.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rollcap.capture.conditions import Condition, Conditions
from rollcap.capture.counters import EventCounts
from rollcap.capture.fences import Fences, fence_files
from rollcap.capture.interface import InterfaceCapture, Interfaces
from rollcap.config.schema import RollcapConfig, SpoolConfig
from rollcap.journal import fields
from rollcap.keep import pins
from rollcap.keep.ring import PinGuard, RingState, duration, ring_state
from rollcap.keep.store import cap_of
from rollcap.quarantine import enforce_cap
from rollcap.spool import Spool
from rollcap.spool.fs import Dir, tree_bytes
from rollcap.spool.layout import CaptureDirs
from rollcap.spool.readyname import ReadyName
from rollcap.spool.workname import WorkName, list_work

if TYPE_CHECKING:  # the hand-off runs under the budget's checks during a switch
    from rollcap.capture.handoff import HandoffQueue

log = logging.getLogger("rollcap.capture")

# Resume after a low-free-space pause only with this much more than the minimum:
# no start/stop flapping around the threshold.
FREE_MARGIN_PERCENT = 1.0


@dataclass(frozen=True)
class Usage:
    used_bytes: int
    max_bytes: int
    free_percent: float
    min_free_percent: float

    @property
    def over_budget(self) -> bool:
        return self.used_bytes > self.max_bytes

    @property
    def low_free(self) -> bool:
        return self.free_percent < self.min_free_percent

    @property
    def over(self) -> bool:
        return self.over_budget or self.low_free

    def comfortable(self, reserve: int = 0, fraction: float = 0.9) -> bool:
        """Room to resume a paused capture: below 90% of the budget with reserve
        (the file about to be written) counted, and enough free space."""
        return (
            self.used_bytes + reserve < fraction * self.max_bytes
            and self.free_percent >= self.min_free_percent + FREE_MARGIN_PERCENT
        )

    def as_dict(self) -> dict[str, float | int]:
        return {
            "used_bytes": self.used_bytes,
            "max_bytes": self.max_bytes,
            "free_percent": round(self.free_percent, 2),
            "min_free_percent": self.min_free_percent,
            "percent_of_budget": round(100 * self.used_bytes / self.max_bytes, 1),
        }


@dataclass(frozen=True)
class Decision:
    drop_bytes: int  # delete the oldest ready/ files until at least this much is gone
    pause: bool  # capture must be (or stay) stopped
    reason: str  # why it pauses: "", "over budget", "low free space"


def decide(u: Usage, on_full: str, reserve: int, paused: bool) -> Decision:
    """The policy, pure: usage in, decision out.

    reserve: what the live file may still grow by (see live_reserve). drop-oldest
    makes room for it, so the spool stays within budget plus what tcpdump writes
    between a rotation and the next check. pause-capture pauses as soon as the
    live file, once full, would take the spool over budget; what tcpdump writes
    before it is stopped is bounded by its fence (fence_files), not by timing."""
    own_overage = u.used_bytes + reserve - u.max_bytes
    drop = max(0, own_overage) if on_full == "drop-oldest" else 0
    if u.low_free:
        return Decision(drop, True, "low free space")
    if on_full == "pause-capture" and own_overage > 0:
        return Decision(0, True, "over budget")
    if paused and not u.comfortable(reserve if on_full == "pause-capture" else 0):
        return Decision(drop, True, "low free space" if u.free_percent < u.min_free_percent
                        + FREE_MARGIN_PERCENT else "over budget")  # fmt: skip
    return Decision(drop, False, "")


def spool_bytes(spool: Spool) -> int:
    """Bytes in the spool's data directories (never following a link). Not tmp/:
    the offload's compressed copies exist only while it is emptying ready/ (at
    most offload.concurrency files), capture cannot read it when it runs as its
    own user, and dropping a capture to make room for them would be absurd."""
    return sum(tree_bytes(d) for d in (spool.work, spool.ready, spool.quarantine))


def free_percent(path: Path) -> float:
    st = os.statvfs(path)
    return 100.0 * st.f_bavail / st.f_blocks if st.f_blocks else 100.0


def measure(spool: Spool, max_megabytes: int, min_free_percent: float) -> Usage:
    return Usage(
        spool_bytes(spool), max_megabytes * 1_000_000, free_percent(spool.root), min_free_percent
    )


def fs_capacity_bytes(path: Path, min_free_percent: float, used_by_spool: int) -> int:
    """What the spool could hold on its filesystem above min_free_percent."""
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize
    return max(0, int(free + used_by_spool - total * min_free_percent / 100))


def live_reserve(rotate_bytes: int, live_size: int | None) -> int:
    """Bytes the live file may still grow by before tcpdump -C starts the next one.

    Reserving them when deciding what to drop keeps the spool within budget plus
    one file however late the next hand-off is processed.
    """
    if live_size is None:
        return 0
    return max(0, rotate_bytes - live_size)


def oldest_ready(ready: Dir) -> list[str]:
    """Finished files in ready/, in hand-off order (by seq: after the wall clock
    stepped back, a newer file has an earlier start time in its name)."""
    found = [(r.seq, n) for n in ready.names() if (r := ReadyName.parse(n))]
    return [n for _seq, n in sorted(found)]


Transition = Literal["pause", "resume"] | None


def reserve(captures: Iterable[InterfaceCapture], work: Dir, rotate_bytes: int, on_full: str,
            switching: Collection[int] = ()) -> int:  # fmt: skip
    """What the live files may still grow by, each counted at its full size:
    checked after each hand-off and every tick, the spool then stays within
    budget plus one file as long as no check comes later than one file
    (drop-oldest; pause-capture's fences do not depend on it). switching: the
    generations of a switch's overlap, where an old and a new tcpdump both
    write (the new one's head repeats the old one's tail until the hand-off
    strips it)."""

    def size(name: str) -> int:
        st = work.lstat(name)
        return st.st_size if st else 0

    total = 0
    live_gens = set(switching)
    for ic in captures:
        live = ic.live_size(lambda w: size(w.format()))
        if live is None and on_full == "pause-capture":
            live = 0  # paused: resuming starts a whole new file
        total += live_reserve(rotate_bytes, live)
        if ic.proc is not None:
            live_gens.discard(ic.proc.generation)
    for gen in live_gens:  # the new tcpdumps of a switch in progress
        files = [w for w, _n in list_work(work) if w.generation == gen]
        total += live_reserve(rotate_bytes, size(files[-1].format()) if files else 0)
    return total


class BudgetKeeper:
    def __init__(self, spool: Spool, dirs: CaptureDirs, counts: EventCounts) -> None:
        self.spool = spool
        self.dirs = dirs
        self.counts = counts
        self.paused = False
        self.pause_reason = ""
        self.usage: Usage | None = None
        self._unfixable_logged = False
        # the flight recorder (offload.mode = "on-demand"): drops are the ring turning
        self.on_demand = False
        self.guard = PinGuard(spool.root)  # pinned files are never dropped
        self.ring: RingState | None = None
        self.pinned_cap = 0  # keep.pinned_percent of the budget, bytes (0: not known)
        self._held_logged = False
        self._over_cap_logged = False

    def enforce(self, sp: SpoolConfig, reserve: int) -> Transition:
        """reserve: what the live file may still grow by (live_reserve)."""
        self._cap_quarantine(sp.quarantine_megabytes * 1_000_000)
        u = measure(self.spool, sp.max_megabytes, sp.min_free_percent)
        d = decide(u, sp.on_full, reserve, self.paused)
        with self.guard.settled() as settled:
            keeps = self.guard.read()
            files = pins.held_files(self.dirs.ready)
            held = pins.covered(files, keeps or [])
            if d.drop_bytes and settled:
                u = self._drop_oldest(u, d.drop_bytes, files, None if keeps is None else held)
            elif d.drop_bytes:
                log.debug("a keep is being filed: the budget drops at the next tick")
        self.usage = u
        now = time.time_ns()
        self.ring = ring_state(
            pins.held_files(self.dirs.ready) if d.drop_bytes else files, held,
            len(self.guard.current), u.max_bytes, now, self.on_demand, self.pinned_cap,
        )  # fmt: skip
        self._say_over_cap(self.ring)
        if not u.over_budget:
            self._unfixable_logged = False
        elif sp.on_full == "drop-oldest" and not self._unfixable_logged:
            self._unfixable_logged = True
            log.warning(
                "spool still over budget with nothing left in ready/ to drop",
                extra=fields(**u.as_dict()),
            )
        if d.pause and not self.paused:
            self.paused, self.pause_reason = True, d.reason
            log.warning(
                "spool %s (%d of %d bytes, %.1f%% free); pausing capture%s",
                d.reason,
                u.used_bytes,
                u.max_bytes,
                u.free_percent,
                "; nothing is deleted for it" if d.reason == "low free space" else "",
                extra=fields(reason=d.reason, **u.as_dict()),
            )
            return "pause"
        if not d.pause and self.paused:
            self.paused, self.pause_reason = False, ""
            log.info("spool has room again; resuming capture", extra=fields(**u.as_dict()))
            return "resume"
        return None

    def _say_over_cap(self, ring: RingState) -> None:
        """Keeps filed under the cap pin more than it once the rate grew: said once
        (the ring status's pinned_over_cap and rollcap_ring_pinned_over_cap stay)."""
        if not ring.over_cap:
            self._over_cap_logged = False
            return
        if not self._over_cap_logged:
            self._over_cap_logged = True
            log.warning(
                "keeps pin %d bytes, more than the pinned cap of %d (keep.pinned_percent): "
                "the capture rate grew after they were filed; the ring holds less lookback "
                "until they are released", ring.pinned_bytes, ring.pinned_cap_bytes,
                extra=fields(pinned_bytes=ring.pinned_bytes, cap_bytes=ring.pinned_cap_bytes),
            )  # fmt: skip

    def pause_message(self) -> str:
        u = self.usage
        if u is None:
            return f"capture paused: {self.pause_reason}"
        return (
            f"capture paused: {self.pause_reason} ({u.used_bytes} of {u.max_bytes} bytes, "
            f"{u.free_percent:.1f}% free, minimum {u.min_free_percent}%)"
        )

    def _drop_oldest(self, u: Usage, want: int, files: list[pins.HeldFile],
                     held: Mapping[str, object] | None) -> Usage:  # fmt: skip
        """Delete the oldest ready/ files until want bytes (the spool's own overage)
        are gone: never more. Never a file a keep pins (held), nor one that came
        after the pins were matched (files); held None: the pins cannot be read,
        nothing is dropped."""
        ready = self.dirs.ready
        dropped = 0
        if held is None:
            if not self._held_logged:
                self._held_logged = True
                log.warning("spool over budget, but the pins cannot be read: no file dropped")
            return u
        self._held_logged = False
        known = {f.name for f in files}
        gone: set[str] = set()
        for name in oldest_ready(ready):
            if dropped >= want:
                break
            if name in held or name not in known:
                continue
            st = ready.lstat(name)
            if st is None:
                continue  # offload finished it meanwhile
            try:
                ready.unlink(name)
            except FileNotFoundError:
                continue
            dropped += st.st_size
            self.counts.dropped_files += 1
            self.counts.dropped_bytes += st.st_size
            gone.add(name)
            self._log_drop(name, st.st_size, [f for f in files if f.name not in gone])
        used = max(0, u.used_bytes - dropped)
        free = free_percent(self.spool.root)
        return Usage(used, u.max_bytes, free, u.min_free_percent)

    def _log_drop(self, name: str, size: int, files: list[pins.HeldFile]) -> None:
        if not self.on_demand:
            log.warning("spool over budget: dropped %s (%d bytes)", name, size,
                        extra=fields(file=name, bytes=size))  # fmt: skip
            return
        # on demand, a drop is the ring turning: the lookback is what the journal needs
        back = (time.time_ns() - files[0].start_ns) / 1e9 if files else 0.0
        log.info("ring turned: dropped %s (%d bytes); the ring now reaches back %s",
                 name, size, duration(back),
                 extra=fields(file=name, bytes=size, lookback_seconds=round(back, 1)))  # fmt: skip

    def _cap_quarantine(self, max_bytes: int) -> None:
        for r in enforce_cap(self.dirs.quarantine, max_bytes):
            self.counts.quarantine_removed += 1
            log.warning(
                "quarantine over its cap (spool.quarantine_megabytes): removed %s (%d bytes)",
                r.name,
                r.bytes,
                extra=fields(file=r.name, bytes=r.bytes),
            )


class BudgetControl:
    """The keeper's answers carried out on the interfaces' tcpdumps; the config
    is the running one, passed in (a reload replaces it)."""

    def __init__(self, spool: Spool, work: Dir, keeper: BudgetKeeper, fences: Fences,
                 queue: HandoffQueue, interfaces: Interfaces,
                 conditions: Conditions) -> None:  # fmt: skip
        self.spool = spool
        self.work = work
        self.keeper = keeper
        self.fences = fences
        self.queue = queue
        self.interfaces = interfaces
        self.conditions = conditions  # the supervisor's: PAUSED

    def reserve(self, cfg: RollcapConfig, switching: Collection[int] = ()) -> int:
        """What the live files may still grow by (reserve(), above)."""
        return reserve(self.interfaces.captures.values(), self.work,
                       cfg.capture.rotate_megabytes * 1_000_000, cfg.spool.on_full,
                       switching)  # fmt: skip

    def enforce(self, cfg: RollcapConfig) -> None:
        """The budget now: drop, pause or resume, and move the fences."""
        self.keeper.on_demand = cfg.offload.mode == "on-demand"
        self.keeper.pinned_cap = cap_of(cfg.spool.max_megabytes, cfg.keep.pinned_percent)[0]
        r = self.reserve(cfg)
        change = self.keeper.enforce(cfg.spool, r)
        if change == "pause":
            self._pause_now()
        elif change == "resume":
            self.conditions.clear(Condition.PAUSED)
            for ic in self.interfaces.captures.values():
                ic.next_start = 0.0
        self._move_fences(cfg, self.interfaces.live_generations(), r)

    def during_switch(self, cfg: RollcapConfig, live: set[int]) -> bool:
        """While a switch's overlap runs (up to MAX_UNTIL s at an aligned boundary):
        hand off what is finished and keep the budget (drop-oldest drops); True when
        capture must pause, which after_switch() then does."""
        # live: the switch's generations; the other interfaces' tcpdumps write
        # too, and a live file taken for a finished one would be handed off
        # (or, header not flushed yet, deleted) under its running tcpdump
        live = live | self.interfaces.live_generations()

        def check() -> None:
            r = self.reserve(cfg, live)
            self.keeper.enforce(cfg.spool, r)  # pausing is after_switch()'s
            self._move_fences(cfg, live, r)

        # before the batch and after each file, as outside a switch: drop-oldest
        # drops for a finished file before it reaches ready/
        self.queue.process(live, check, check)
        check()
        return self.keeper.paused

    def after_switch(self) -> None:
        if self.keeper.paused and any(ic.running() for ic in self.interfaces.captures.values()):
            self._pause_now()

    def _pause_now(self) -> None:
        self.interfaces.set_states("paused")
        self.conditions.set(Condition.PAUSED, self.keeper.pause_message())
        # no drain wait: the budget matters more than the last second of packets
        self.interfaces.stop(drain=False)

    def fence_new(self, cfg: RollcapConfig, gen: int, argv: list[str]) -> None:
        """Before a tcpdump starts (pause-capture): fence it from its first file on.
        With rotate_align its first name is ours; tcpdump -G names it itself, so that
        one is fenced once its first file is seen."""
        if cfg.spool.on_full != "pause-capture":
            return
        first = WorkName.parse(os.path.basename(argv[argv.index("-w") + 1]))
        if first is None:
            return
        self.fences.expect(gen, first)
        live = self.interfaces.live_generations() | {gen}
        sp = cfg.spool
        r = self.reserve(cfg, live)
        u = measure(self.spool, sp.max_megabytes, sp.min_free_percent)
        files = fence_files(u.used_bytes, r, len(live), u.max_bytes,
                            cfg.capture.rotate_megabytes * 1_000_000)  # fmt: skip
        self.fences.place(gen, None, files)

    def _move_fences(self, cfg: RollcapConfig, live: set[int], reserve: int) -> None:
        """pause-capture: each running tcpdump's fence right after the last file
        the budget has room for; the others' removed (all of them under
        drop-oldest, e.g. after a reload changed on_full)."""
        fences, u = self.fences, self.keeper.usage
        if u is None:  # not measured yet
            return
        if cfg.spool.on_full != "pause-capture":
            fences.keep_only(set())
            return
        files = fence_files(u.used_bytes, reserve, len(live), u.max_bytes,
                            cfg.capture.rotate_megabytes * 1_000_000)  # fmt: skip
        fences.follow(live, files)
