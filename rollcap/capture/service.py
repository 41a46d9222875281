"""`rollcap capture`: supervise tcpdump and hand its finished files to the spool.

tcpdump writes ``work/gNNNNNN-%Y%m%dT%H%M%S-IFACE.pcap[N]`` itself (-G, -C,
-Z, TZ=UTC0); NNNNNN grows with every tcpdump start. A file is finished when
a newer file of its generation exists or its tcpdump has exited; it is then
repaired, stripped of overlap duplicates, chowned root:GROUP 0640 and renamed
atomically into ready/ (rollcap.capture.handoff).

Quiet link: tcpdump -G rotates only when a packet arrives. If the live file
is still the newest QUIET_GRACE seconds after its rotate deadline, a new
tcpdump is started first (make-before-break), both run for OVERLAP seconds
(tcpdump loses its last partially filled kernel block at SIGTERM, the new one
has those packets), then the old one is stopped and its file handed off;
packets captured by both are removed from the new file's head
(rollcap.capture.overlap). So a file is handed off about rotate_seconds + 3 s
after it was opened, and never later than rotate_seconds + 5 s. SIGHUP with
an unchanged interface uses the same switch; a new interface means stop, then
start.

One thread runs the loop below; tcpdump's stderr readers and the watchdog
observer only wake it through a pipe, signal handlers only set flags.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import selectors
import signal
import stat
import time
from pathlib import Path
from typing import Any

from watchdog.events import (
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from rollcap.capture import budget, layout
from rollcap.capture.command import (
    DeviceUnavailable,
    check_filter,
    combine_filter,
    exclusion_clauses,
    interface_exists,
    offload_endpoints,
    resolve,
    tcpdump_argv,
)
from rollcap.capture.counters import Counters, CounterTotals, drop_rate
from rollcap.capture.handoff import Handoff, HandoffResult, Persistent
from rollcap.capture.layout import CaptureDirs
from rollcap.capture.names import WorkName, list_work
from rollcap.capture.overlap import (
    append_sidecar,
    read_switch,
    remove,
    sidecar_name,
    switch_name,
    tail_since,
    write_switch,
)
from rollcap.capture.ratelimit import RepeatLimiter
from rollcap.capture.restart import BACKOFF_MIN, restart_delay
from rollcap.capture.tcpdump import Tcpdump
from rollcap.config import load_config
from rollcap.config.schema import RollcapConfig
from rollcap.errors import ConfigError
from rollcap.journal import fields, setup_logging
from rollcap.naming import local_hostname
from rollcap.notify import Notifier
from rollcap.pcapfile import GLOBAL_HEADER_LEN
from rollcap.quarantine import enforce_cap
from rollcap.spool import Spool
from rollcap.spoolfs import BadEntry, is_no_space
from rollcap.state import write_state

log = logging.getLogger("rollcap.capture")

TICK = 1.0
REAP_POLL_SECONDS = 2.0  # poll this long for a tcpdump whose stderr closed to be reapable
QUIET_GRACE = 1.5  # > tcpdump's 1 s block timeout: a late packet still rotates by itself
OVERLAP = 1.2  # both tcpdumps listening this long before the old one is stopped
DRAIN = 1.2  # wait before SIGTERM so the last kernel block reaches the file
LISTEN_TIMEOUT = 10.0
QUIET_RETRY = 10.0
STATS_EVERY = 30.0


class _WakeHandler(FileSystemEventHandler):
    def __init__(self, wake: Any) -> None:
        self._wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._wake()


class Supervisor:
    def __init__(self, config_path: str, cfg: RollcapConfig) -> None:
        self.config_path = config_path
        self.cfg = cfg
        self.spool = Spool.at(cfg.spool.directory)
        self.notifier = Notifier()
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            fl = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)
            os.set_inheritable(fd, False)
        self.stop_flag = False
        self.reload_flag = False
        self.proc: Tcpdump | None = None
        self.effective_filter = ""
        self.tcpdump_uid, self.switch_user = layout.tcpdump_identity(cfg.capture.user)
        self.gid = layout.resolve_group(cfg.spool.group)
        self.persistent: Persistent | None = None
        self._dirs: CaptureDirs | None = None
        self.skipped: set[str] = set()  # work/ entries that cannot be handed off nor moved
        self.handoff: Handoff | None = None
        self.totals = CounterTotals()
        self.logged_counters = Counters()
        self.rate_base = Counters()
        self.drop_rate = 0.0
        self.state_name = "starting"
        self.backoff = BACKOFF_MIN
        self.next_start = 0.0  # monotonic
        self.paused = False
        self.pause_reason = ""
        self.waiting_logged = False
        self.unfixable_logged = False
        self.last_error = ""
        self.next_stats = time.monotonic() + STATS_EVERY
        self.quiet_retry_at = 0.0
        self.last_state_write = 0.0
        self.listening_at: dict[int, float] = {}  # generation -> wall clock
        # (generation, -G period in the name, monotonic time we first saw it open)
        # of the live file: the quiet-link deadline must not move when the clock steps
        self.period: tuple[int, str, float] | None = None
        self.wrote_gens: set[int] = set()  # generations that handed off packets
        self.errors = RepeatLimiter(log)
        self.overlap_next: dict[int, int] = {}  # old generation -> the one replacing it
        self.n: dict[str, int] = dict.fromkeys(
            (
                "handed_off_files",
                "handed_off_bytes",
                "discarded_empty",
                "repaired_files",
                "duplicates_removed",
                "dropped_files",
                "dropped_bytes",
                "restarts",
                "quarantine_removed",
            ),
            0,
        )
        self.last_handoff: dict[str, Any] | None = None
        self.usage: budget.Usage | None = None

    # ------------------------------------------------------------------ plumbing
    @property
    def dirs(self) -> CaptureDirs:
        assert self._dirs is not None
        return self._dirs

    def _work_size(self, name: str) -> int:
        st = self.dirs.work.lstat(name)
        return st.st_size if st else 0

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"w")

    def _on_signal(self, signo: int, _frame: object) -> None:
        if signo == signal.SIGHUP:
            self.reload_flag = True
        else:
            self.stop_flag = True

    def _install_signals(self) -> None:
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, self._on_signal)

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass

    # ------------------------------------------------------------------ filter
    def compute_filter(self, cfg: RollcapConfig) -> str:
        clauses: list[str] = []
        if cfg.offload.is_s3 and cfg.capture.exclude_offload_traffic:
            pairs: list[tuple[str, int]] = []
            for ep in offload_endpoints(cfg.offload):
                ips = resolve(ep.host)
                if not ips:
                    log.warning(
                        "cannot resolve offload endpoint %s; its traffic is not excluded "
                        "(rollcap-capture.service: is the DNS server in its IPAddressAllow=?)",
                        ep.host,
                        extra=fields(host=ep.host),
                    )
                pairs += [(ip, ep.port) for ip in ips]
            clauses = exclusion_clauses(pairs)
            if clauses:
                log.info(
                    "excluding the offload service's own traffic: %s",
                    " and ".join(clauses),
                    extra=fields(exclusion=" and ".join(clauses)),
                )
        elif cfg.offload.is_s3:
            log.info("capture.exclude_offload_traffic is off: uploads may be captured too")
        return combine_filter(cfg.capture.filter, clauses)

    def validate(self, cfg: RollcapConfig, effective: str, timeout: float = 30) -> None:
        with contextlib.suppress(DeviceUnavailable):  # checked again when it appears
            check_filter(cfg.capture, effective, timeout)

    # ------------------------------------------------------------------ tcpdump
    def _track_pids(self, *extra: Tcpdump) -> None:
        """Persist the pids of every tcpdump we run (for orphan clean-up after a crash)."""
        assert self.persistent is not None
        procs = [p for p in (self.proc, *extra) if p is not None and p.alive()]
        self.persistent.tcpdump_pids = [p.pid for p in procs]
        self._save_persistent()

    def _save_persistent(self) -> None:
        """Save generation and pids; a full disk must not stop capture. The memory copy
        stays right, and at start the numbers are also recovered from the spool."""
        assert self.persistent is not None
        try:
            self.persistent.save()
        except OSError as e:
            self._counters_unsaved(e)
        else:
            self.errors.clear("counters:", "saving capture/capture-counters.json")

    def _counters_unsaved(self, e: OSError) -> None:
        self.last_error = f"cannot save capture/capture-counters.json: {e}"
        self.errors.error(f"counters:{e.strerror or e}", self.last_error)

    def _spawn(self, cfg: RollcapConfig) -> Tcpdump:
        assert self.persistent is not None
        try:
            gen = self.persistent.next_generation()
        except OSError as e:
            # counted in memory already; work/ names stay unique (see Persistent.load)
            gen = self.persistent.generation
            self._counters_unsaved(e)
        argv = tcpdump_argv(
            cfg.capture, self.effective_filter, self.spool.work, gen, self.switch_user
        )
        t = Tcpdump(argv, gen, cfg.capture.interface, self.wake)
        self._track_pids(t)
        log.info(
            "started tcpdump on %s (generation %d)",
            cfg.capture.interface,
            gen,
            extra=fields(tcpdump_pid=t.pid, generation=gen, argv=" ".join(argv)),
        )
        return t

    def start_capture(self) -> None:
        if self.proc is not None or self.paused or self.stop_flag:
            return
        if time.monotonic() < self.next_start:
            self.state_name = "restarting"
            return
        iface = self.cfg.capture.interface
        if not interface_exists(iface):
            self.state_name = "waiting-for-interface"
            if not self.waiting_logged:
                self.waiting_logged = True
                self.last_error = f"interface {iface} does not exist"
                log.warning(
                    "interface %s does not exist (yet); capture starts when it appears",
                    iface,
                    extra=fields(interface=iface),
                )
            return
        if self.waiting_logged:
            self.waiting_logged = False
            log.info("interface %s appeared", iface, extra=fields(interface=iface))
            try:
                check_filter(self.cfg.capture, self.effective_filter)  # for its link type
            except DeviceUnavailable as e:
                # e.g. not up yet: tcpdump's own start reports it and backs off
                log.info("interface %s: %s", iface, e, extra=fields(interface=iface))
            except ConfigError as e:
                # validated at start already (e.g. a DNS timeout now): tcpdump's own
                # start reports a real problem and backs off; never exit 78 here
                log.warning("interface %s: %s", iface, e, extra=fields(interface=iface))
        t = self._spawn(self.cfg)
        self.proc = t
        if t.wait_listening(LISTEN_TIMEOUT):
            self.listening_at[t.generation] = t.listening_at or time.time()
            self.state_name = "capturing"
        # if it died, check_exit() sees it on this tick

    def stop_capture(self, drain: bool = True) -> None:
        t = self.proc
        if t is None:
            return
        if drain and t.alive():
            time.sleep(DRAIN)
        rc = t.stop()
        log.info(
            "stopped tcpdump (generation %d, status %d)",
            t.generation,
            rc,
            extra=fields(tcpdump_pid=t.pid, generation=t.generation),
        )
        self.totals.retire(t.counters)
        self.proc = None
        self._track_pids()
        self.process_work()

    def check_exit(self) -> None:
        t = self.proc
        if t is None or t.alive():
            return
        t.stop()  # reap, collect its last stderr lines
        rc = t.proc.returncode
        msg = t.exit_message()
        self.totals.retire(t.counters)
        self.proc = None
        self._track_pids()
        self.n["restarts"] += 1
        self.last_error = f"tcpdump exited with status {rc}: {msg}"
        listened = None if t.listening_mono is None else time.monotonic() - t.listening_mono
        delay, self.backoff = restart_delay(self.backoff, listened, self._wrote(t.generation), rc)
        log.error(
            "tcpdump exited unexpectedly (status %d): %s; restarting in %.1f s",
            rc,
            msg,
            delay,
            extra=fields(tcpdump_pid=t.pid, generation=t.generation, exit_status=rc),
        )
        self.next_start = time.monotonic() + delay
        self.state_name = "restarting"
        self.process_work()

    def _wrote(self, generation: int) -> bool:
        """Whether a generation wrote at least one packet (handed off or still in work/)."""
        if generation in self.wrote_gens:
            return True
        return any(
            w.generation == generation and self._work_size(n) > GLOBAL_HEADER_LEN
            for w, n in list_work(self.dirs.work)
        )

    def switch(self, cfg: RollcapConfig, reason: str) -> bool:
        """Make-before-break: start the new tcpdump, overlap, stop the old one."""
        old = self.proc
        assert old is not None
        new = self._spawn(cfg)
        if not new.wait_listening(LISTEN_TIMEOUT):
            new.stop()
            self.last_error = f"new tcpdump did not start: {new.exit_message()}"
            log.error("%s: %s; keeping the running one", reason, self.last_error)
            self._track_pids()
            self.process_work()
            return False
        self.listening_at[new.generation] = new.listening_at or time.time()
        self.overlap_next[old.generation] = new.generation
        # on disk too: a supervisor that dies during the overlap still strips duplicates
        with contextlib.suppress(OSError):
            write_switch(
                self.dirs.work,
                switch_name(old.generation),
                new.generation,
                self.listening_at[new.generation],
            )
        time.sleep(OVERLAP)
        rc = old.stop()
        self.totals.retire(old.counters)
        self.proc = new
        self._track_pids()
        log.info(
            "%s: switched to tcpdump generation %d (old generation %d, status %d)",
            reason,
            new.generation,
            old.generation,
            rc,
            extra=fields(generation=new.generation, tcpdump_pid=new.pid),
        )
        self.process_work()
        return True

    def check_quiet(self) -> float | None:
        """Rotate a quiet link; return seconds until the live file's deadline."""
        t = self.proc
        if t is None or not t.alive() or not t.listening.is_set():
            return None
        files = [w for w, _n in list_work(self.dirs.work) if w.generation == t.generation]
        if not files:
            return None
        opened = self._opened_mono(t, files)
        deadline = opened + self.cfg.capture.rotate_seconds + QUIET_GRACE
        left = deadline - time.monotonic()
        if left > 0:
            return left
        if time.monotonic() < self.quiet_retry_at:
            return None
        if not self.switch(self.cfg, "quiet link"):
            self.quiet_retry_at = time.monotonic() + QUIET_RETRY  # not a spawn per tick
        return None

    def _opened_mono(self, t: Tcpdump, files: list[WorkName]) -> float:
        """Monotonic time the live -G period began: tcpdump's start for the first
        period of a generation, else when we first saw it (we look every tick and
        on each new file). -C continuations keep the period's name and deadline."""
        name = files[-1].opened.strftime("%Y%m%dT%H%M%S")
        p = self.period
        if p is not None and p[0] == t.generation and p[1] == name:
            return p[2]
        now = time.monotonic()
        first_of_gen = p is None or p[0] != t.generation
        if first_of_gen and t.listening_mono is not None:
            now = min(t.listening_mono, now)
        self.period = (t.generation, name, now)
        return now

    # ------------------------------------------------------------------ hand-off
    def process_work(self) -> None:
        """Hand off every finished file, oldest first, one generation at a time."""
        assert self.handoff is not None
        live = {self.proc.generation} if self.proc and self.proc.alive() else set()
        files = list_work(self.dirs.work)
        if len(files) > 1:
            self.enforce_budget()  # files in work/ count too: make room before the batch
        for i, (w, name) in enumerate(files):
            is_newest_of_gen = i + 1 == len(files) or files[i + 1][0].generation != w.generation
            if w.generation in live and is_newest_of_gen:
                break  # being written; newer generations wait for it
            if name in self.skipped:
                continue
            try:
                if w.generation in self.overlap_next:
                    self._remember_tail(w, name, last=is_newest_of_gen)
                r = self.handoff.hand_off(w, name)
            except FileNotFoundError:
                continue
            except OSError as e:
                self.last_error = f"hand-off of {name} failed: {e}"
                key = f"handoff:{e.strerror or e}"
                self.errors.error(key, self.last_error, extra=fields(file=name))
                if is_no_space(e):
                    break  # a full disk pauses the hand-off; retried every tick
                # about this entry alone (and it could not even be quarantined):
                # leave it, say so once, and go on with the others
                self.skipped.add(name)
                continue
            self.errors.clear("handoff:", "hand-off")
            self._count(w, name, r)
            if self.proc:
                self.proc.request_counters()
            self.enforce_budget()

    def _remember_tail(self, w: WorkName, name: str, last: bool) -> None:
        """Add this old file's tail to the new generation's fingerprints; after its
        last file the switch is done. OSError (full disk) leaves everything as it
        was, so the hand-off waits and this is retried."""
        new_gen = self.overlap_next[w.generation]
        since = self.listening_at.get(new_gen)
        if since is not None:
            try:
                fd = self.dirs.work.open(name, self.handoff_owners())
            except BadEntry:
                tail = []  # hand_off quarantines it
            else:
                try:
                    tail = tail_since(fd, since)
                except ValueError:  # not a pcap: hand_off quarantines it
                    tail = []
                finally:
                    os.close(fd)
            if tail:
                append_sidecar(self.dirs.work, sidecar_name(new_gen), tail)
        if last:
            del self.overlap_next[w.generation]
            remove(self.dirs.work, switch_name(w.generation))

    def handoff_owners(self) -> set[int]:
        assert self.handoff is not None
        return self.handoff.owners

    def load_switches(self) -> None:
        """Overlaps a crashed supervisor left unfinished (see switch())."""
        for w, _n in list_work(self.dirs.work):
            rec = read_switch(self.dirs.work, switch_name(w.generation))
            if rec is not None:
                new_gen, since = rec
                self.overlap_next[w.generation] = new_gen
                self.listening_at.setdefault(new_gen, since)

    def _count(self, w: WorkName, work_name: str, r: HandoffResult) -> None:
        if r.repaired_bytes:
            self.n["repaired_files"] += 1
            log.warning(
                "repaired %s: cut off %d bytes of an incomplete last record",
                work_name,
                r.repaired_bytes,
                extra=fields(file=work_name, removed_bytes=r.repaired_bytes),
            )
        self.n["duplicates_removed"] += r.stripped
        if r.packets:
            self.wrote_gens.add(w.generation)
        if r.quarantined:
            return  # hand_off logged it as an error
        if r.name is None:
            self.n["discarded_empty"] += 1
            log.info("discarded %s: no packets", work_name, extra=fields(file=work_name))
            return
        self.n["handed_off_files"] += 1
        self.n["handed_off_bytes"] += r.bytes
        self.last_handoff = {
            "name": r.name,
            "bytes": r.bytes,
            "packets": r.packets,
            "at": time.time(),
        }
        log.info(
            "handed off %s (%d packets, %d bytes)",
            r.name,
            r.packets,
            r.bytes,
            extra=fields(
                file=r.name,
                bytes=r.bytes,
                packets=r.packets,
                generation=w.generation,
                duplicates_removed=r.stripped or None,
            ),
        )

    # ------------------------------------------------------------------ budget
    def enforce_budget(self) -> None:
        sp = self.cfg.spool
        self._cap_quarantine()
        u = budget.measure(self.spool, sp.max_megabytes, sp.min_free_percent)
        reserve = 0
        if sp.on_full == "drop-oldest":
            # drop as if the live file were already full: checked after each hand-off
            # and every tick, the spool then stays within budget plus one file
            rotate_bytes = self.cfg.capture.rotate_megabytes * 1_000_000
            reserve = budget.live_reserve(rotate_bytes, self._live_size())
        d = budget.decide(u, sp.on_full, reserve, self.paused)
        if d.drop_bytes:
            u = self._drop_oldest(u, d.drop_bytes)
        self.usage = u
        if d.pause and not self.paused:
            self.paused = True
            self.pause_reason = d.reason
            self.state_name = "paused"
            self.last_error = (
                f"capture paused: {d.reason} ({u.used_bytes} of {u.max_bytes} bytes, "
                f"{u.free_percent:.1f}% free, minimum {sp.min_free_percent}%)"
            )
            log.warning(
                "spool %s (%d of %d bytes, %.1f%% free); pausing capture%s",
                d.reason,
                u.used_bytes,
                u.max_bytes,
                u.free_percent,
                "; nothing is deleted for it" if d.reason == "low free space" else "",
                extra=fields(reason=d.reason, **u.as_dict()),
            )
            # no drain wait: the budget matters more than the last second of packets
            self.stop_capture(drain=False)
        elif not d.pause and self.paused:
            self.paused = False
            self.pause_reason = ""
            self.next_start = 0.0
            log.info("spool has room again; resuming capture", extra=fields(**u.as_dict()))
        if not u.over_budget:
            self.unfixable_logged = False
        elif sp.on_full == "drop-oldest" and not self.unfixable_logged:
            self.unfixable_logged = True
            log.warning(
                "spool still over budget with nothing left in ready/ to drop",
                extra=fields(**u.as_dict()),
            )

    def _drop_oldest(self, u: budget.Usage, want: int) -> budget.Usage:
        """Delete the oldest ready/ files until want bytes (the spool's own overage)
        are gone: never more."""
        ready = self.dirs.ready
        dropped = 0
        for name in budget.oldest_ready(ready):
            if dropped >= want:
                break
            st = ready.lstat(name)
            if st is None:
                continue  # offload finished it meanwhile
            try:
                ready.unlink(name)
            except FileNotFoundError:
                continue
            dropped += st.st_size
            self.n["dropped_files"] += 1
            self.n["dropped_bytes"] += st.st_size
            log.warning(
                "spool over budget: dropped %s (%d bytes)",
                name,
                st.st_size,
                extra=fields(file=name, bytes=st.st_size),
            )
        used = max(0, u.used_bytes - dropped)
        return budget.Usage(
            used, u.max_bytes, budget.free_percent(self.spool.root), u.min_free_percent
        )

    def _cap_quarantine(self) -> None:
        for r in enforce_cap(self.dirs.quarantine, self.cfg.spool.quarantine_megabytes * 1_000_000):
            self.n["quarantine_removed"] += 1
            log.warning(
                "quarantine over its cap (spool.quarantine_megabytes): removed %s (%d bytes)",
                r.name,
                r.bytes,
                extra=fields(file=r.name, bytes=r.bytes),
            )

    def _live_size(self) -> int | None:
        """Current size of the file the running tcpdump writes, None if none runs."""
        t = self.proc
        if t is None or not t.alive():
            return None
        files = [n for w, n in list_work(self.dirs.work) if w.generation == t.generation]
        return self._work_size(files[-1]) if files else 0

    # ------------------------------------------------------------------ stats & state
    def live_counters(self) -> Counters:
        return self.totals.total(self.proc.counters if self.proc else None)

    def stats(self) -> None:
        now = time.monotonic()
        if now >= self.next_stats:
            self.next_stats = now + STATS_EVERY
            if self.proc:
                self.proc.request_counters()
            total = self.live_counters()
            self.drop_rate = drop_rate(self.rate_base, total)
            self.rate_base = total
            log.info(
                "counters: %d captured, %d kernel drops, %d interface drops",
                total.captured,
                total.kernel_drops,
                total.interface_drops,
                extra=fields(
                    packets_captured=total.captured,
                    packets_received=total.received,
                    kernel_drops=total.kernel_drops,
                    interface_drops=total.interface_drops,
                    drop_rate=round(self.drop_rate, 6),
                ),
            )
        total = self.live_counters()
        if total.drops > self.logged_counters.drops:
            log.warning(
                "packets dropped: %d by the kernel, %d by the interface (+%d)",
                total.kernel_drops,
                total.interface_drops,
                total.drops - self.logged_counters.drops,
                extra=fields(
                    kernel_drops=total.kernel_drops, interface_drops=total.interface_drops
                ),
            )
        self.logged_counters = total

    def state(self) -> dict[str, Any]:
        t = self.proc
        files = [w for w, _n in list_work(self.dirs.work) if t and w.generation == t.generation]
        total = self.live_counters()
        return {
            "state": self.state_name,
            "tcpdump_pid": t.pid if t and t.alive() else None,
            "generation": t.generation if t else None,
            "interface": self.cfg.capture.interface,
            "filter": self.effective_filter,
            "active_file": files[-1].format() if files else None,
            "active_since": files[-1].opened.timestamp() if files else None,
            **self.n,
            "last_handoff": self.last_handoff,
            "packets_captured": total.captured,
            "packets_received": total.received,
            "kernel_drops": total.kernel_drops,
            "interface_drops": total.interface_drops,
            "drop_rate": self.drop_rate,
            "paused": self.paused,
            "pause_reason": self.pause_reason,
            "last_error": self.last_error,
            "budget": self.usage.as_dict() if self.usage else None,
        }

    def status_line(self) -> str:
        total = self.live_counters()
        pct = f"{100 * self.usage.used_bytes / self.usage.max_bytes:.0f}%" if self.usage else "?"
        return (
            f"{self.state_name} on {self.cfg.capture.interface}: "
            f"{self.n['handed_off_files']} files handed off, {total.kernel_drops} kernel drops, "
            f"spool {pct} of budget"
            + (f"; error: {self.last_error}" if self.errors.active() else "")
        )

    def publish(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_state_write < 1.0:
            return
        self.last_state_write = now
        try:
            write_state(self.spool.state_file("capture"), self.state())
        except OSError as e:
            self.errors.error(f"state:{e.strerror or e}", f"cannot write the state file: {e}")
        else:
            self.errors.clear("state:", "writing the state file")
        self.notifier.status(self.status_line())

    # ------------------------------------------------------------------ reload
    def reload(self) -> None:
        self.notifier.reloading()
        try:
            new = load_config(self.config_path)
            if new.spool.directory != self.cfg.spool.directory:
                log.error(
                    "reload: spool.directory cannot change while running (restart the "
                    "service); keeping %s",
                    self.cfg.spool.directory,
                )
                new = new.model_copy(
                    update={
                        "spool": new.spool.model_copy(
                            update={"directory": self.cfg.spool.directory}
                        )
                    }
                )
            uid, switch_user = layout.tcpdump_identity(new.capture.user)
            if uid != self.tcpdump_uid:
                # before prepare() chowns work/ away from the running tcpdump's user
                layout.check_reachable(self.spool.root, uid)
            effective = self.compute_filter(new)
            # Shorter than at start: the main loop is blocked meanwhile, and the
            # whole reload must stay well inside WatchdogSec.
            self.validate(new, effective, timeout=10)
        except ConfigError as e:
            for line in e.problems:
                log.error("reload rejected, keeping the running configuration: %s", line)
            self.last_error = f"reload rejected: {e.problems[0]}"
            self.notifier.ready(self.status_line())
            return
        old = self.cfg
        changed = new.capture != old.capture or effective != self.effective_filter
        logging.getLogger().setLevel(new.log.level.upper())
        self.notifier.watchdog()  # validation made progress; the switch may take seconds
        if new.spool.group != old.spool.group or uid != self.tcpdump_uid:
            try:
                gid = layout.resolve_group(new.spool.group)
                layout.prepare(self.spool, uid, gid)
            except (OSError, ConfigError) as e:
                # e.g. no CAP_FOWNER under the unit's sandbox: never exit (78 would
                # stop capture for good); put the spool back and keep capturing.
                with contextlib.suppress(OSError, ConfigError):
                    layout.prepare(self.spool, self.tcpdump_uid, self.gid)
                log.error(
                    "reload rejected, keeping the running configuration: cannot prepare "
                    "the spool for capture.user/spool.group: %s",
                    e,
                )
                self.last_error = f"reload rejected: {e}"
                self.notifier.ready(self.status_line())
                return
            self.gid, self.tcpdump_uid = gid, uid
            assert self.handoff is not None
            self.handoff.owners.add(uid)  # the old user's files are handed off too
        self.switch_user = switch_user
        self.cfg = new
        assert self.handoff is not None
        self.handoff.gid = self.gid
        self.handoff.host = local_hostname(new.capture.hostname)
        if changed:
            self.effective_filter = effective
            if self.proc and self.proc.alive() and new.capture.interface == self.proc.iface:
                self.switch(new, "reload")
            else:
                self.stop_capture(drain=True)
                self.next_start = 0.0
                self.waiting_logged = False
                self.start_capture()
        log.info(
            "configuration reloaded%s",
            "" if changed else " (capture unchanged)",
            extra=fields(interface=new.capture.interface, filter=effective),
        )
        self.enforce_budget()
        self.notifier.ready(self.status_line())

    # ------------------------------------------------------------------ start/stop
    def stop_orphans(self) -> None:
        """Stop tcpdumps a crashed supervisor left running (PR_SET_PDEATHSIG does not
        survive tcpdump's setuid); they write into our work/, so they must end first."""
        assert self.persistent is not None
        for pid in self.persistent.tcpdump_pids:
            if not _is_our_tcpdump(pid, self.spool.work):
                continue
            log.warning(
                "stopping tcpdump %d left running by a previous rollcap capture",
                pid,
                extra=fields(tcpdump_pid=pid),
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _is_our_tcpdump(pid, self.spool.work) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _is_our_tcpdump(pid, self.spool.work):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                time.sleep(0.5)
        self.persistent.tcpdump_pids = []
        self._save_persistent()

    def remove_stale_temps(self) -> None:
        """Overlap sidecars and strip temp files of generations already handed off."""
        work = self.dirs.work
        for name in work.names():
            stale = name.startswith((".overlap-", ".switch-")) or (
                name.startswith(".") and name.endswith((".strip", ".tmp"))
            )
            st = work.lstat(name)
            if stale and st is not None and stat.S_ISREG(st.st_mode):
                log.info("removing stale %s", name, extra=fields(file=name))
                with contextlib.suppress(FileNotFoundError):
                    work.unlink(name)  # never follows: a link would go, not its target

    def open_spool(self) -> None:
        """Make the spool's directories right, open them, load the counters."""
        layout.prepare(self.spool, self.tcpdump_uid, self.gid)
        self._dirs = CaptureDirs.open(self.spool)
        self.persistent = Persistent.load(self.dirs)
        self.handoff = Handoff(
            self.dirs,
            self.persistent,
            local_hostname(self.cfg.capture.hostname),
            self.gid,
            self.tcpdump_uid,
        )

    def run(self) -> int:
        self.effective_filter = self.compute_filter(self.cfg)
        self.validate(self.cfg, self.effective_filter)
        self.open_spool()
        self._install_signals()
        observer = Observer()
        observer.schedule(
            _WakeHandler(self.wake),
            str(self.spool.work),
            event_filter=[FileCreatedEvent, FileMovedEvent],
        )
        observer.start()
        try:
            self.stop_orphans()
            self.load_switches()
            self.process_work()  # leftovers all belong to dead generations
            self.remove_stale_temps()
            self.enforce_budget()
            self.start_capture()
            self.notifier.ready(self.status_line())
            self.publish(force=True)
            self._loop()
            # no more wake-ups needed; stopping it first keeps its thread quiet
            observer.stop()
            observer.join(5)
            self.shutdown()
        finally:
            if observer.is_alive():
                observer.stop()
                observer.join(5)
            if self.proc and self.proc.alive():  # an exception escaped: never leave it behind
                self.proc.stop()
        return 0

    def _loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ)
        left: float | None = None
        while not self.stop_flag:
            sel.select(self._timeout(left))
            self._drain_wake()
            if self.stop_flag:
                break
            if self.reload_flag:
                self.reload_flag = False
                self.reload()
            self.check_exit()
            self.process_work()
            left = self.check_quiet()
            self.stats()
            self.enforce_budget()
            self.start_capture()
            p = self.proc
            if p and p.alive() and self.state_name != "capturing" and p.listening.is_set():
                self.state_name = "capturing"
                self.waiting_logged = False
            if self.paused:
                self.state_name = "paused"
            self.publish()
            self.notifier.watchdog()

    def _timeout(self, quiet_left: float | None) -> float:
        """How long the loop may sleep: a tick, or less when something is due.
        A restart is due at next_start; a tcpdump whose stderr closed is exiting
        and is reaped a moment later (the EOF wake-up can come before that)."""
        timeout = TICK if quiet_left is None else max(0.05, min(TICK, quiet_left))
        p, now = self.proc, time.monotonic()
        if p is None and self.next_start > now:
            timeout = min(timeout, self.next_start - now + 0.005)
        elif (
            p is not None
            and p.output_closed_at is not None
            # briefly: an exit stuck in the kernel (a hung NFS spool) gets ticks
            and now - p.output_closed_at < REAP_POLL_SECONDS
        ):
            timeout = min(timeout, 0.02)
        return timeout

    def shutdown(self) -> None:
        self.notifier.stopping()
        self.state_name = "stopping"
        self.publish(force=True)
        self.stop_capture(drain=True)
        self.process_work()
        self.enforce_budget()
        self.state_name = "stopped"
        self.publish(force=True)
        log.info(
            "stopped: %d files handed off",
            self.n["handed_off_files"],
            extra=fields(handed_off_files=self.n["handed_off_files"]),
        )


def _is_our_tcpdump(pid: int, work_dir: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False  # a zombie waiting for its reaper has closed its files
    return str(work_dir).encode() in cmdline and b"tcpdump" in cmdline


def run(config_path: str) -> int:
    cfg = load_config(config_path)
    setup_logging(cfg.log.level, "rollcap-capture")
    # as the unit's UMask=: files others read get their mode explicitly
    os.umask(0o077)
    return Supervisor(config_path, cfg).run()
