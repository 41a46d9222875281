"""Turning a finished tcpdump file in work/ into a file in ready/.

All through directory fds (rollcap.spool.fs): the file is opened once with
O_NOFOLLOW|O_NONBLOCK and must be a regular file of tcpdump's user with one
link; then repair (cut a cut-off last record, ftruncate; proved from the
file's tail where it can be, rollcap.pcapfile.tail_end, so a finished file is
not read again: its packets are then counted by the offload) -> strip the records a
make-before-break overlap captured twice -> a header-only file becomes a
coverage marker (below) -> fchmod 0640, group GROUP -> atomic rename into
ready/ under a ReadyName.
ready/ never holds a half-written file. An entry that is not such a file (a
directory, FIFO, symlink, hard link, unreadable) is moved to quarantine/ by
rename, never opened, and the others go on.

A file with no packets (an idle link: the quiet-link switch cuts one each
rotation) is handed off as it is, 24 bytes of pcap header, its mtime set to
the hand-off: a *coverage marker*. The offload stores no object for it, only
a manifest entry saying "captured from the name's time to the mtime, no
packet", so `rollcap list` does not call an idle link a gap. At most one per
interface and rotation period (``marker_every``); another is discarded.

The hand-off queue: every finished file in work/, oldest first, one at a time.

A file is finished when a newer file of its generation exists or its tcpdump
has exited. One bad entry never stops the others: the hand-off quarantines it,
and an entry that cannot even be moved is skipped (said once). Only a full
disk (ENOSPC/EDQUOT) pauses the queue until the next tick.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rollcap.capture.conditions import Condition, Conditions, RepeatLimiter
from rollcap.capture.counters import EventCounts, InterfaceCounts
from rollcap.capture.stripworker import StripCancelled, StripWorker, deadline
from rollcap.capture.switching import (
    MAX_GENERATION,
    Duplicates,
    Overlaps,
    drop_records,
    find_duplicates,
    read_sidecar,
    remove,
    sidecar_name,
    write_sidecar,
)
from rollcap.journal import fields
from rollcap.pcapfile import (
    GLOBAL_HEADER_LEN,
    NotPcapError,
    head_record,
    parse_header,
    repair_finished,
)
from rollcap.quarantine import quarantine
from rollcap.spool.fs import BadEntry, is_no_space
from rollcap.spool.layout import CaptureDirs
from rollcap.spool.readyname import ReadyName
from rollcap.spool.workname import WorkName, list_work
from rollcap.timestamps import NS

log = logging.getLogger("rollcap.capture")

COUNTERS = "capture-counters.json"
MAX_SEQ = 999_999_999_999  # a planted ready/ name must not push the sequence anywhere
# A stop waits this long for overlap strips, well inside the unit's
# TimeoutStopSec=30 (rollcap-capture.service); the rest waits for the next start.
STOP_STRIPS_SECONDS = 5.0
STOP_STRIPS_ENV = "ROLLCAP_STOP_STRIPS_SECONDS"  # 0..20; tests: 0 leaves every strip


def stop_strips_seconds() -> float:
    """STOP_STRIPS_SECONDS, or the environment's value (a bad one: the default, said)."""
    raw = os.environ.get(STOP_STRIPS_ENV)
    if raw is None:
        return STOP_STRIPS_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 20.0:
        log.warning("ignoring %s=%r: a number of seconds from 0 to 20 is allowed; using %.0f",
                    STOP_STRIPS_ENV, raw, STOP_STRIPS_SECONDS)  # fmt: skip
        return STOP_STRIPS_SECONDS
    return value


def _count(v: object, limit: int) -> int | None:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= limit:
        return None
    return v


@dataclass
class Persistent:
    """Counters that must survive restarts: spool/capture/capture-counters.json."""

    dirs: CaptureDirs
    generation: int = 0
    seq: int = 0
    # tcpdumps that may be running (two during a make-before-break overlap),
    # so a restarted supervisor can stop what a crashed one left behind
    tcpdump_pids: list[int] = field(default_factory=list)

    @classmethod
    def load(cls, dirs: CaptureDirs) -> Persistent:
        p = cls(dirs)
        try:
            raw = dirs.state.read_small(COUNTERS, {os.geteuid()}, 64 * 1024)
            st = json.loads(raw) if raw else {}
        except (BadEntry, ValueError) as e:
            log.warning("ignoring %s: %s", dirs.state.path / COUNTERS, e)
            st = {}
        if not isinstance(st, dict):
            st = {}
        p.generation = _count(st.get("generation"), MAX_GENERATION) or 0
        p.seq = _count(st.get("seq"), MAX_SEQ) or 0
        pids = st.get("tcpdump_pids")
        if isinstance(pids, list):
            p.tcpdump_pids = [x for x in pids[:64] if _count(x, 2**22) and x > 1]
        # never reuse a number even if the counters file was lost: look at the spool
        for w, _name in list_work(dirs.work):
            p.generation = max(p.generation, w.generation)
        for name in dirs.ready.names():
            r = ReadyName.parse(name)
            if r and r.seq <= MAX_SEQ:
                p.seq = max(p.seq, r.seq)
        return p

    def save(self) -> None:
        data = {"generation": self.generation, "seq": self.seq, "tcpdump_pids": self.tcpdump_pids}
        self.dirs.state.write_atomic(COUNTERS, json.dumps(data).encode())

    def next_generation(self) -> int:
        self.generation += 1
        self.save()
        return self.generation

    def next_seq(self) -> int:
        self.seq += 1
        self.save()
        return self.seq


@dataclass
class HandoffResult:
    name: str | None  # ready/ name, None when discarded
    bytes: int
    packets: int | None  # None: not counted here (the offload counts them)
    repaired_bytes: int
    stripped: int
    first_ts: float | None
    quarantined: bool = False  # not a pcap (or not a plain file): kept in quarantine/
    unpaired: int = 0  # records of a switch's overlap that only the new tcpdump got
    coverage: bool = False  # name is a coverage marker (no packets; see the module doc)


@dataclass
class Prepared:
    """A file read, repaired and stripped, open on cur (fd: as opened; cur: the
    rewritten copy when the strip removed records, else fd), for finish()."""

    fd: int
    cur: int
    packets: int | None  # None: not counted (the offload counts them)
    first_ns: int | None
    size: int
    removed: int  # bytes of a cut-off last record
    stripped: int = 0
    dup: Duplicates | None = None
    goes_on: bool = False  # the overlap goes on in the generation's next file

    def close(self) -> None:
        if self.cur != self.fd:
            os.close(self.cur)
        os.close(self.fd)


class Handoff:
    def __init__(
        self, dirs: CaptureDirs, persistent: Persistent, host: str, gid: int, owner: int,
        marker_every: float = 0.0,
    ) -> None:  # fmt: skip
        self.dirs = dirs
        # seconds between the open times of coverage markers of one interface
        self.marker_every = marker_every
        self._last_marker: dict[str, float] = {}  # iface -> open time of its last marker
        self._last_opened: dict[str, float] = {}  # iface -> latest open time handed off
        self.persistent = persistent
        self.host = host
        self.gid = gid
        self.owners = {owner}  # tcpdump's uid: its files, and nobody else's
        self._chown_warned = False

    def _start_time(self, w: WorkName, first_ns: int | None) -> datetime:
        # A -C continuation file was opened when it got its first packet, after
        # the -G period start in its name. Whole seconds from the exact ns: a
        # float of X.999999999 s would round up to the next second.
        start = w.opened
        if w.counter and first_ns is not None:
            start = max(start, datetime.fromtimestamp(first_ns // NS, UTC))
        return start

    def hand_off(self, w: WorkName, name: str) -> HandoffResult:
        """FileNotFoundError when name is gone; OSError (ENOSPC, EIO) leaves it in
        work/ for the next try. Anything wrong with the entry itself quarantines it."""
        p = self.prepare(w, name)
        return p if isinstance(p, HandoffResult) else self.finish(w, name, p)

    def prepare(self, w: WorkName, name: str) -> Prepared | HandoffResult:
        """The part of a hand-off that reads and rewrites the file (repair, the
        overlap strip): safe on the strip worker while the loop goes on, as it
        touches only this file and its generation's sidecar; finish() does the
        rest. A HandoffResult: done already (discarded, quarantined)."""
        work = self.dirs.work
        try:
            fd = work.open(name, self.owners, write=True)
        except BadEntry as e:
            return self._quarantine(name, str(e))
        try:
            p = self._prepare(w, name, fd)
        except BaseException:
            os.close(fd)
            raise
        if isinstance(p, HandoffResult):
            os.close(fd)
        return p

    def _prepare(self, w: WorkName, name: str, fd: int) -> Prepared | HandoffResult:
        work = self.dirs.work
        side = sidecar_name(w.generation)
        st = os.fstat(fd)
        if st.st_size < GLOBAL_HEADER_LEN:  # killed before even the header was flushed
            work.unlink_if_same(name, st)
            return HandoffResult(None, st.st_size, 0, 0, 0, None)
        try:
            # from the tail: tcpdump has finished the file, only its end can be cut
            fixed = repair_finished(fd)
        except NotPcapError as e:
            return self._quarantine(name, f"not a pcap file ({e})")
        p = Prepared(fd, fd, fixed.packets, fixed.first_ns, fixed.file_bytes, fixed.removed)
        tail = read_sidecar(work, side) if not fixed.empty else None
        dup = find_duplicates(fd, tail) if tail else None
        p.dup = dup
        p.goes_on = dup is not None and bool(dup.rest)  # in the generation's next file
        if p.goes_on:
            # The sidecar first: a failure between here and the rename can then
            # only leave duplicates, never strip this file a second time.
            assert dup is not None
            write_sidecar(work, side, dup.rest)
        elif dup:
            # The overlap ended in this file: the sidecar goes before the strip
            # for the same reason. Kept, a crash before the rename into ready/
            # would strip the stripped copy again against the whole tail, and
            # where the new socket holds more copies of a record (same stamp,
            # same bytes) than the old one, remove a copy only it captured.
            remove(work, side)
        if dup:
            p.cur = drop_records(work, name, fd, dup.records)
            p.stripped = len(dup)
            # counted from what was: no second walk of the rewritten file
            if p.packets is not None:
                p.packets -= p.stripped
            p.size = os.fstat(p.cur).st_size
            header = parse_header(os.pread(p.cur, GLOBAL_HEADER_LEN, 0))
            p.first_ns = head_record(p.cur, header) if p.size > GLOBAL_HEADER_LEN else None
            if p.first_ns is None:
                p.packets = 0
        return p

    def finish(self, w: WorkName, name: str, p: Prepared) -> HandoffResult:
        """The rest of a hand-off, on the loop: marker, mode, name, rename into ready/."""
        try:
            return self._finish(w, name, p)
        finally:
            p.close()

    def _finish(self, w: WorkName, name: str, p: Prepared) -> HandoffResult:
        work = self.dirs.work
        side = sidecar_name(w.generation)
        dup, goes_on, cur = p.dup, p.goes_on, p.cur
        packets, first_ns, size, removed, stripped = (
            p.packets, p.first_ns, p.size, p.removed, p.stripped,
        )  # fmt: skip
        first_ts = None if first_ns is None else first_ns / NS
        unpaired = dup.unpaired if dup else 0
        marker = False
        if packets == 0 or size <= GLOBAL_HEADER_LEN:
            # header only: the overlap (if any) goes on in the next file
            if dup is not None and not goes_on:
                remove(work, side)  # every record of the tail is paired
            marker = self._marker_due(w)
            if not marker:
                work.unlink_if_same(name, os.fstat(cur))
                return HandoffResult(None, size, 0, removed, stripped, None, unpaired=unpaired)
            os.utime(cur)  # the mtime ends the time it covered (tcpdump's may be its open)
        self._protect(cur)
        ready = ReadyName(
            start=self._start_time(w, first_ns),
            seq=self.persistent.next_seq(),
            host=self.host,
            iface=w.iface,
        ).format()
        self._move(name, os.fstat(cur), ready)
        t = w.opened.timestamp()
        self._last_opened[w.iface] = max(t, self._last_opened.get(w.iface, t))
        if marker:
            self._last_marker[w.iface] = t
            return HandoffResult(ready, size, 0, removed, stripped, None, coverage=True,
                                 unpaired=unpaired)  # fmt: skip
        if not goes_on:
            remove(work, side)  # this file has packets after the overlap: it ended here
        return HandoffResult(ready, size, packets, removed, stripped, first_ts,
                             unpaired=unpaired)  # fmt: skip

    def _marker_due(self, w: WorkName) -> bool:
        """A coverage marker for this file? Not for two files of an interface
        opened within a rotation period (a restart loop must not fill ready/
        with them); by open time, so the last file at a stop is one. 0.9: the
        quiet-link deadline of consecutive periods may come a little early.
        Not after a clock stepped back (opened before a file already handed
        off), nor until it passes the last marker's period again:
        a marker named by the stepped-back clock would sort before files already
        handed off and claim a time that was covered already (list may call
        that stretch a gap; the journal has the step)."""
        last = self._last_marker.get(w.iface)
        t = w.opened.timestamp()
        if t < self._last_opened.get(w.iface, t):
            return False  # opened before a file already handed off: a clock stepped back
        return last is None or t - last >= 0.9 * self.marker_every

    def _move(self, name: str, st: os.stat_result, ready: str) -> None:
        """Rename into ready/; the name must still be the file checked (work/ is
        tcpdump's user's: it could swap the entry between our open and the rename)."""
        work = self.dirs.work
        now = work.lstat(name)
        if now is None or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise FileNotFoundError(f"{name} was replaced while being handed off")
        work.rename(name, self.dirs.ready, ready)

    def _protect(self, fd: int) -> None:
        """0640, group GROUP: readable by offload, writable by nobody but its owner."""
        st = os.fstat(fd)
        uid = 0 if os.geteuid() == 0 else -1  # as root, take it from tcpdump's -Z user
        if st.st_gid != self.gid or (uid == 0 and st.st_uid != 0):
            try:
                os.fchown(fd, uid, self.gid)
            except PermissionError:
                if not self._chown_warned:
                    self._chown_warned = True
                    log.warning(
                        "cannot give finished files group %d (work/ should be setgid, "
                        "see tmpfiles.d/rollcap.conf); group left as is",
                        self.gid,
                    )
        os.fchmod(fd, 0o640)

    def _quarantine(self, name: str, why: str) -> HandoffResult:
        """Not a pcap, or not a plain file of tcpdump's at all: keep it aside, never
        lose it silently, never open or follow it."""
        try:
            dest = quarantine(self.dirs.work, name, self.dirs.quarantine, why)
        except FileNotFoundError:
            raise
        log.error(
            "work/%s is %s; moved to quarantine",
            name,
            why,
            extra=fields(file=name, reason=why),
        )
        st = self.dirs.quarantine.lstat(dest)
        return HandoffResult(None, st.st_size if st else 0, 0, 0, 0, None, quarantined=True)



class HandoffQueue:
    def __init__(
        self,
        handoff: Handoff,
        overlaps: Overlaps,
        counts: EventCounts,
        errors: RepeatLimiter,
        conditions: Conditions,
        worker: StripWorker | None = None,
    ) -> None:
        self.handoff = handoff
        self.overlaps = overlaps
        self.counts = counts
        self.errors = errors
        self.conditions = conditions
        # None: every step on the caller's thread (tools, tests); else a file
        # of a switch's overlap is prepared there while the loop goes on
        self.worker = worker
        self.jobs: dict[str, tuple[WorkName, Future[Prepared | HandoffResult]]] = {}
        self.skipped: set[str] = set()  # entries that can be neither handed off nor moved
        self.left: dict[str, str] = {}  # at a stop: iface -> first file left in work/
        self.wrote_gens: set[int] = set()  # generations that handed off packets
        self.last_handoff: dict[str, Any] | None = None
        self.by_iface: dict[str, InterfaceCounts] = {}

    @property
    def busy(self) -> bool:
        """A strip is running or waits to be finished."""
        return bool(self.jobs)

    def _strips(self, w: WorkName) -> bool:
        """Whether this file's hand-off has an overlap to fingerprint or strip."""
        if w.generation in self.overlaps.next_of:
            return True
        return self.handoff.dirs.work.lstat(sidecar_name(w.generation)) is not None

    def _prepare(self, w: WorkName, name: str) -> Prepared | HandoffResult:
        self.overlaps.fingerprint(w, name, self.handoff.owners)
        return self.handoff.prepare(w, name)

    def process(self, live_gens: set[int], before_batch: Callable[[], None],
                after_each: Callable[[], None], block: bool = False,
                until: float | None = None) -> None:  # fmt: skip
        """live_gens: the generations whose tcpdump runs (one per interface, two
        during a switch). block: wait for the strip worker (tests).
        until (time.monotonic(): a stop): the worker is stopped (its strip ends
        at its next checkpoint) and the strips are done here, at the loop's
        priority, until then; one not done by then is left, with its
        interface's later files, in work/ for the next start, which strips it
        as after a crash (rollcap.capture.stripworker)."""
        if until is not None and self.worker is not None:
            self.worker.stop()
        work = self.handoff.dirs.work
        files = list_work(work)
        self._collect_gone({n for _w, n in files})
        if len(files) > 1:
            before_batch()  # files in work/ count too: make room before the batch
        waiting: set[str] = set()  # interfaces whose live file holds the rest back
        for i, (w, name) in enumerate(files):
            is_newest_of_gen = i + 1 == len(files) or files[i + 1][0].generation != w.generation
            if w.iface in waiting:
                continue
            if w.generation in live_gens and is_newest_of_gen:
                # being written; this interface's newer generations wait for it (the
                # overlap's duplicates are stripped in order), the others go on
                waiting.add(w.iface)
                continue
            if name in self.skipped:
                continue
            try:
                p: Prepared | HandoffResult | None = None
                job = self.jobs.get(name)
                worker = self.worker
                if job is None and worker is not None and not worker.stopping and self._strips(w):
                    job = self.jobs[name] = (w, worker.submit(self._prepare, w, name))
                if job is not None:
                    if not (block or until is not None or job[1].done()):
                        waiting.add(w.iface)  # its later files wait: stripped in order
                        continue
                    p = self._result(name, job[1])  # None: stopped, done below
                if p is None:
                    try:
                        with deadline(until):
                            p = self._prepare(w, name)
                    except StripCancelled:
                        self._leave(w, name)
                        waiting.add(w.iface)
                        continue
                self.overlaps.ended(w, last=is_newest_of_gen)
                r = p if isinstance(p, HandoffResult) else self.handoff.finish(w, name, p)
            except FileNotFoundError:
                self.overlaps.ended(w, last=is_newest_of_gen)  # gone: nothing left to pair
                continue
            except OSError as e:
                msg = f"hand-off of {name} failed: {e}"
                self.conditions.set(Condition.HANDOFF_FAILED, msg)
                self.errors.error(f"handoff:{e.strerror or e}", msg, extra=fields(file=name))
                if is_no_space(e):
                    break  # a full disk pauses the hand-off; retried every tick
                # about this entry alone (it could not even be quarantined): leave
                # it, say so once, and go on with the others
                self.skipped.add(name)
                self.counts.skipped_entries += 1
                continue
            self.errors.clear("handoff:", "hand-off")
            self.conditions.clear(Condition.HANDOFF_FAILED)  # one succeeded
            self._count(w, name, r)
            after_each()

    def _result(self, name: str, job: Future[Prepared | HandoffResult]
                ) -> Prepared | HandoffResult | None:  # fmt: skip
        """The job's result (waited for); None: the worker was stopped before it
        finished (the file is as it was before the strip)."""
        try:
            return job.result()
        except (StripCancelled, CancelledError):
            return None
        finally:
            del self.jobs[name]

    def _leave(self, w: WorkName, name: str) -> None:
        """At a stop: this file (and its interface's later ones) stays in work/."""
        if w.iface in self.left:
            return
        self.left[w.iface] = name
        log.warning(
            "stopping: the overlap strip of %s was not done in time; it and the later "
            "files of %s stay in work/ for the next start",
            name, w.iface, extra=fields(file=name, interface=w.iface),
        )  # fmt: skip

    def _collect_gone(self, names: set[str]) -> None:
        """Jobs whose file left work/ in the worker (an empty file discarded, an
        entry quarantined): count them; a prepared file that vanished is let go."""
        for name, (w, job) in list(self.jobs.items()):
            if name in names or not job.done():
                continue
            del self.jobs[name]
            try:
                p = job.result()
            except (OSError, StripCancelled, CancelledError):
                continue  # gone: nothing to retry
            if isinstance(p, HandoffResult):
                self._count(w, name, p)
            else:
                p.close()

    def left_in_work(self) -> tuple[int, int]:
        """Files (and their bytes) still in work/: after a stop, what the next start
        hands off."""
        work = self.handoff.dirs.work
        sizes = [st.st_size for _w, n in list_work(work) if (st := work.lstat(n)) is not None]
        return len(sizes), sum(sizes)

    def wrote(self, generation: int) -> bool:
        """Whether a generation wrote at least one packet (handed off or still in work/)."""
        if generation in self.wrote_gens:
            return True
        work = self.handoff.dirs.work
        for w, n in list_work(work):
            st = work.lstat(n) if w.generation == generation else None
            if st is not None and st.st_size > GLOBAL_HEADER_LEN:
                return True
        return False

    def _count(self, w: WorkName, work_name: str, r: HandoffResult) -> None:
        n = self.counts
        if r.repaired_bytes:
            n.repaired_files += 1
            log.warning(
                "repaired %s: cut off %d bytes of an incomplete last record",
                work_name,
                r.repaired_bytes,
                extra=fields(file=work_name, removed_bytes=r.repaired_bytes),
            )
        n.duplicates_removed += r.stripped
        if r.stripped or r.unpaired:
            # a switch's overlap: both tcpdumps saw these packets; details, not news
            log.debug(
                "%s: removed %d packets seen by both tcpdumps of a switch's overlap%s",
                work_name, r.stripped,
                f"; kept {r.unpaired} only the new one saw" if r.unpaired else "",
                extra=fields(file=work_name, duplicates_removed=r.stripped or None,
                             overlap_unpaired=r.unpaired or None),
            )  # fmt: skip
        if r.packets != 0:  # None: not counted, at least one
            self.wrote_gens.add(w.generation)
        if r.quarantined:
            n.quarantined_files += 1
            return  # hand_off logged it as an error
        if r.coverage:
            n.discarded_empty += 1  # no pcap goes out: the offload files its coverage
            log.info(
                "%s had no packets: handed off as the coverage marker %s", work_name, r.name,
                extra=fields(file=r.name, duplicates_removed=r.stripped or None),
            )  # fmt: skip
            return
        if r.name is None:
            n.discarded_empty += 1
            log.info(
                "discarded %s: no packets%s", work_name,
                " but the overlap of a switch" if r.stripped else "",
                extra=fields(file=work_name, duplicates_removed=r.stripped or None,
                             overlap_unpaired=r.unpaired or None),
            )  # fmt: skip
            return
        n.handed_off_files += 1
        n.handed_off_bytes += r.bytes
        per = self.by_iface.setdefault(w.iface, InterfaceCounts())
        per.handed_off_files += 1
        per.handed_off_bytes += r.bytes
        self.last_handoff = {"name": r.name, "bytes": r.bytes, "packets": r.packets,
                             "at": time.time()}  # fmt: skip
        log.info(
            "handed off %s (%s%d bytes)",
            r.name,
            "" if r.packets is None else f"{r.packets} packets, ",
            r.bytes,
            extra=fields(
                file=r.name,
                bytes=r.bytes,
                packets=r.packets,
                generation=w.generation,
                duplicates_removed=r.stripped or None,
                # kept: a drop on the old socket, or a packet after it had stopped
                overlap_unpaired=r.unpaired or None,
            ),
        )
