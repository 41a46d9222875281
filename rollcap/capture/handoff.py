"""Turning a finished tcpdump file in work/ into a file in ready/.

repair (cut a cut-off last record) -> strip the records a make-before-break
overlap captured twice -> discard a header-only file -> owner root:GROUP,
mode 0640 -> atomic rename into ready/ under a ReadyName. ready/ never holds
a half-written file.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rollcap.capture.names import WorkName, list_work
from rollcap.capture.overlap import (
    cut_head,
    find_duplicate_head,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from rollcap.journal import fields
from rollcap.naming import ReadyName
from rollcap.pcapfile import GLOBAL_HEADER_LEN, NotPcapError, repair
from rollcap.spool import Spool
from rollcap.state import read_state, write_state

log = logging.getLogger("rollcap.capture")


@dataclass
class Persistent:
    """Counters that must survive restarts: spool/capture/capture-counters.json."""

    path: Path
    generation: int = 0
    seq: int = 0
    # tcpdumps that may be running (two during a make-before-break overlap),
    # so a restarted supervisor can stop what a crashed one left behind
    tcpdump_pids: list[int] = field(default_factory=list)

    @classmethod
    def load(cls, spool: Spool) -> Persistent:
        path = spool.capture_state / "capture-counters.json"
        st = read_state(path) or {}
        p = cls(path)
        for k in ("generation", "seq"):
            v = st.get(k)
            if isinstance(v, int):
                setattr(p, k, v)
        pids = st.get("tcpdump_pids")
        if isinstance(pids, list):
            p.tcpdump_pids = [x for x in pids if isinstance(x, int) and x > 0]
        # never reuse a number even if the counters file was lost: look at the spool
        for w, _path in list_work(spool.work):
            p.generation = max(p.generation, w.generation)
        with contextlib.suppress(FileNotFoundError):
            for entry in spool.ready.iterdir():
                r = ReadyName.parse(entry.name)
                if r:
                    p.seq = max(p.seq, r.seq)
        return p

    def save(self) -> None:
        write_state(
            self.path,
            {
                "generation": self.generation,
                "seq": self.seq,
                "tcpdump_pids": self.tcpdump_pids,
            },
        )

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
    packets: int
    repaired_bytes: int
    stripped: int
    first_ts: float | None
    quarantined: bool = False  # not a pcap: kept in quarantine/, not deleted


class Handoff:
    def __init__(self, spool: Spool, persistent: Persistent, host: str, gid: int) -> None:
        self.spool = spool
        self.persistent = persistent
        self.host = host
        self.gid = gid
        self._chown_warned = False

    def _start_time(self, w: WorkName, first_ts: float | None) -> datetime:
        # A -C continuation file was opened when it got its first packet, after
        # the -G period start in its name.
        start = w.opened
        if w.counter and first_ts is not None:
            start = max(start, datetime.fromtimestamp(math.floor(first_ts), UTC))
        return start

    def hand_off(self, w: WorkName, path: Path) -> HandoffResult:
        side = sidecar_path(self.spool.work, w.generation)
        size = path.stat().st_size
        if size < GLOBAL_HEADER_LEN:  # killed before even the header was flushed
            os.unlink(path)
            return HandoffResult(None, size, 0, 0, 0, None)
        try:
            summary, removed = repair(path)
        except NotPcapError as e:
            return self._not_pcap(path, str(e))
        stripped = 0
        tail = read_sidecar(side) if summary.packets else None
        dup = find_duplicate_head(path, tail) if tail else None
        if dup is not None and dup.records:
            # The sidecar first: a failure between here and the rename can then
            # only leave duplicates, never strip this file a second time.
            if dup.rest:  # this file is all duplicates: the generation's next one goes on
                write_sidecar(side, dup.rest)
            else:
                with contextlib.suppress(FileNotFoundError):
                    side.unlink()
            cut_head(path, dup.cut)
            stripped = dup.records
            summary, _ = repair(path)
        size = summary.file_bytes
        if summary.packets == 0 or size <= GLOBAL_HEADER_LEN:
            os.unlink(path)  # header only: the overlap (if any) goes on in the next file
            return HandoffResult(None, size, 0, removed, stripped, None)
        self._protect(path)
        ready = ReadyName(
            start=self._start_time(w, summary.first_ts),
            seq=self.persistent.next_seq(),
            host=self.host,
            iface=w.iface,
        ).format()
        os.rename(path, self.spool.ready / ready)
        with contextlib.suppress(FileNotFoundError):
            side.unlink()  # this file has packets after the overlap: it ended here
        return HandoffResult(ready, size, summary.packets, removed, stripped, summary.first_ts)

    def _protect(self, path: Path) -> None:
        try:
            os.chown(path, os.geteuid(), self.gid)
        except PermissionError:
            if not self._chown_warned:
                self._chown_warned = True
                log.warning("cannot chown finished files (not root?); group left as is")
        os.chmod(path, 0o640)

    def _not_pcap(self, path: Path, why: str) -> HandoffResult:
        """Not a pcap at all (should not happen): keep it aside, never lose it silently."""
        dest = self.spool.quarantine / f"{int(time.time())}-{path.name}"
        self._protect(path)
        os.rename(path, dest)
        log.error(
            "tcpdump output %s is not a pcap file (%s); moved to quarantine",
            path.name,
            why,
            extra=fields(file=path.name, reason=why),
        )
        return HandoffResult(None, dest.stat().st_size, 0, 0, 0, None, quarantined=True)
