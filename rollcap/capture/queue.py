"""The hand-off queue: every finished file in work/, oldest first, one at a time.

A file is finished when a newer file of its generation exists or its tcpdump
has exited. One bad entry never stops the others: the hand-off quarantines it,
and an entry that cannot even be moved is skipped (said once). Only a full
disk (ENOSPC/EDQUOT) pauses the queue until the next tick.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from rollcap.capture.handoff import Handoff, HandoffResult
from rollcap.capture.ratelimit import RepeatLimiter
from rollcap.capture.switching import Overlaps
from rollcap.journal import fields
from rollcap.pcapfile import GLOBAL_HEADER_LEN
from rollcap.spool.fs import is_no_space
from rollcap.spool.workname import WorkName, list_work

log = logging.getLogger("rollcap.capture")

# counted per interface too (rollcap status, metrics); restarts by the supervisor
IFACE_COUNTS = ("handed_off_files", "handed_off_bytes", "restarts")


class HandoffQueue:
    def __init__(
        self,
        handoff: Handoff,
        overlaps: Overlaps,
        counts: dict[str, int],
        errors: RepeatLimiter,
        on_error: Callable[[str], None],
        on_ok: Callable[[], None] = lambda: None,
    ) -> None:
        self.handoff = handoff
        self.overlaps = overlaps
        self.counts = counts
        self.errors = errors
        self.on_error = on_error
        self.on_ok = on_ok  # a hand-off succeeded: an earlier hand-off error has cleared
        self.skipped: set[str] = set()  # entries that can be neither handed off nor moved
        self.wrote_gens: set[int] = set()  # generations that handed off packets
        self.last_handoff: dict[str, Any] | None = None
        self.by_iface: dict[str, dict[str, int]] = {}  # IFACE_COUNTS per interface

    def process(self, live_gens: set[int], before_batch: Callable[[], None],
                after_each: Callable[[], None]) -> None:  # fmt: skip
        """live_gens: the generations whose tcpdump runs (one per interface, two
        during a switch)."""
        work = self.handoff.dirs.work
        files = list_work(work)
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
                self.overlaps.remember_tail(w, name, self.handoff.owners, last=is_newest_of_gen)
                r = self.handoff.hand_off(w, name)
            except FileNotFoundError:
                continue
            except OSError as e:
                msg = f"hand-off of {name} failed: {e}"
                self.on_error(msg)
                self.errors.error(f"handoff:{e.strerror or e}", msg, extra=fields(file=name))
                if is_no_space(e):
                    break  # a full disk pauses the hand-off; retried every tick
                # about this entry alone (it could not even be quarantined): leave
                # it, say so once, and go on with the others
                self.skipped.add(name)
                self.counts["skipped_entries"] += 1
                continue
            self.errors.clear("handoff:", "hand-off")
            self.on_ok()
            self._count(w, name, r)
            after_each()

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
            n["repaired_files"] += 1
            log.warning(
                "repaired %s: cut off %d bytes of an incomplete last record",
                work_name,
                r.repaired_bytes,
                extra=fields(file=work_name, removed_bytes=r.repaired_bytes),
            )
        n["duplicates_removed"] += r.stripped
        if r.packets != 0:  # None: not counted, at least one
            self.wrote_gens.add(w.generation)
        if r.quarantined:
            n["quarantined_files"] += 1
            return  # hand_off logged it as an error
        if r.coverage:
            n["discarded_empty"] += 1  # no pcap goes out: the offload files its coverage
            log.info(
                "%s had no packets: handed off as the coverage marker %s", work_name, r.name,
                extra=fields(file=r.name, duplicates_removed=r.stripped or None),
            )  # fmt: skip
            return
        if r.name is None:
            n["discarded_empty"] += 1
            log.info(
                "discarded %s: no packets%s", work_name,
                f" after removing {r.stripped} duplicates of a switch's overlap" if r.stripped
                else "",
                extra=fields(file=work_name, duplicates_removed=r.stripped or None,
                             overlap_unpaired=r.unpaired or None),
            )  # fmt: skip
            return
        n["handed_off_files"] += 1
        n["handed_off_bytes"] += r.bytes
        per = self.by_iface.setdefault(w.iface, dict.fromkeys(IFACE_COUNTS, 0))
        per["handed_off_files"] += 1
        per["handed_off_bytes"] += r.bytes
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
