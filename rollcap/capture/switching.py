"""Make-before-break: replacing a running tcpdump without losing a packet.

The new tcpdump is started first; once it listens, a record of the switch is
written (so a supervisor that dies during the overlap still strips the
duplicates after its restart), both run for OVERLAP seconds, then the old one
is stopped. As each old file is handed off, its tail's fingerprints go into the
new generation's sidecar (rollcap.capture.overlap), from which the hand-off
strips the new files' duplicate head: only records both tcpdumps hold with the
same kernel timestamp, which holds while software timestamps are on
(shared_timestamps).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rollcap.capture.overlap import (
    append_sidecar,
    read_switch,
    remove,
    sidecar_name,
    switch_name,
    tail_since,
    write_switch,
)
from rollcap.capture.tcpdump import Tcpdump
from rollcap.spool.fs import BadEntry, Dir
from rollcap.spool.workname import WorkName, list_work

log = logging.getLogger("rollcap.capture")

OVERLAP = 1.2  # both tcpdumps listening this long before the old one is stopped
LISTEN_TIMEOUT = 10.0


SO_TIMESTAMPNS = 35  # Linux's SOL_SOCKET option (the socket module does not name it)


class _Stamps:
    sock: socket.socket | None = None
    tried = False


def shared_timestamps() -> socket.socket | None:
    """A socket that asks for software receive timestamps, opened once and held
    for the process's life (and passed to every tcpdump, so it stays open while
    one runs even if the supervisor dies during an overlap): while one exists
    the kernel stamps each packet once, in its skb, before handing it to every
    packet socket (the netstamp_needed static key), so an old and a new tcpdump
    record the same timestamp for a packet both got, and the overlap pairs
    exactly. Without it a µs tcpdump's socket reads the clock itself (21 % of
    stamps differed by 1-50 µs between two tcpdumps here): nothing pairs,
    duplicates stay, nothing is lost."""
    if _Stamps.tried:
        return _Stamps.sock
    _Stamps.tried = True
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    except OSError as e:
        log.warning("cannot hold a timestamping socket (%s): a switch may keep duplicates", e)
        return None
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError as e:
        s.close()
        log.warning("cannot turn on software timestamps (%s): a switch may keep duplicates", e)
        return None
    _Stamps.sock = s
    return s


def stamp_fds() -> tuple[int, ...]:
    """The fds a tcpdump inherits to keep the shared timestamps on (see above)."""
    s = shared_timestamps()
    return (s.fileno(),) if s is not None else ()


@dataclass
class Overlaps:
    """Switches whose old generation is not fully handed off yet."""

    work: Dir
    next_of: dict[int, int] = field(default_factory=dict)  # old generation -> new one
    since: dict[int, float] = field(default_factory=dict)  # generation -> spawned (wall clock)
    stamps: socket.socket | None = field(default_factory=shared_timestamps, repr=False)

    def begin(self, old_gen: int, new_gen: int, since: float) -> None:
        self.since[new_gen] = since
        self.next_of[old_gen] = new_gen
        # on disk too: a supervisor that dies during the overlap still strips duplicates
        with contextlib.suppress(OSError):
            write_switch(self.work, switch_name(old_gen), new_gen, since)

    def load(self) -> None:
        """Overlaps a crashed supervisor left unfinished."""
        for w, _n in list_work(self.work):
            rec = read_switch(self.work, switch_name(w.generation))
            if rec is not None:
                new_gen, since = rec
                self.next_of[w.generation] = new_gen
                self.since.setdefault(new_gen, since)

    def remember_tail(self, w: WorkName, name: str, owners: set[int], last: bool) -> None:
        """Add this old file's tail to the new generation's fingerprints; after its
        last file the switch is done. OSError (full disk) leaves everything as it
        was, so the hand-off waits and this is retried."""
        if w.generation not in self.next_of:
            return
        new_gen = self.next_of[w.generation]
        since = self.since.get(new_gen)
        if since is not None:
            tail = []
            try:
                fd = self.work.open(name, owners)
            except BadEntry:
                pass  # the hand-off quarantines it
            else:
                try:
                    tail = tail_since(fd, since)
                except ValueError:  # not a pcap: the hand-off quarantines it
                    tail = []
                finally:
                    os.close(fd)
            if tail:
                append_sidecar(self.work, sidecar_name(new_gen), tail)
        if last:
            del self.next_of[w.generation]
            self.since.pop(new_gen, None)  # one entry per switch would pile up
            remove(self.work, switch_name(w.generation))


@dataclass(frozen=True)
class Switched:
    new: Tcpdump | None  # None: the new one did not start; the old one runs on
    old_status: int | None
    error: str


MAX_UNTIL = 3.0  # an aligned switch never waits longer than this for its boundary
TICK_DURING = 0.1  # hand-off and budget checks during the overlap


def make_before_break(
    old: Tcpdump, spawn: Callable[[], Tcpdump], overlaps: Overlaps, until: float | None = None
) -> Switched:
    """until: wall-clock time (a rotate_align boundary) before which the old one is
    not stopped; the overlap is OVERLAP seconds at least either way."""
    return make_before_break_many([(old, spawn)], overlaps, until)[0]


def make_before_break_many(
    pairs: list[tuple[Tcpdump, Callable[[], Tcpdump]]],
    overlaps: Overlaps,
    until: float | None = None,
    tick: Callable[[set[int]], bool] | None = None,
) -> list[Switched]:
    """Several switches with one overlap (interfaces due at the same boundary):
    every new tcpdump starts and listens, all run for the overlap, then every old
    one whose successor listens is stopped.

    tick(live generations) runs every TICK_DURING seconds of the overlap (the
    hand-off and the spool budget must not wait for an aligned boundary on a
    busy link); True ends the wait at once (the budget pauses capture: the
    caller stops everything)."""
    news = [spawn() for _old, spawn in pairs]
    out: list[Switched | None] = []
    for (old, _spawn), new in zip(pairs, news, strict=True):
        if not new.wait_listening(LISTEN_TIMEOUT):
            new.stop()
            out.append(Switched(None, None, f"new tcpdump did not start: {new.exit_message()}"))
            continue
        overlaps.begin(old.generation, new.generation, new.spawned_at)
        out.append(None)
    if any(r is None for r in out):
        wait = OVERLAP
        if until is not None:
            wait = min(max(OVERLAP, until - time.time()), MAX_UNTIL)
        end = time.monotonic() + wait
        live = {old.generation for old, _spawn in pairs} | {new.generation for new in news}
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(TICK_DURING, left))
            if tick is not None and tick(live):
                break
    return [
        r if r is not None else Switched(new, old.stop(), "")
        for (old, _spawn), new, r in zip(pairs, news, out, strict=True)
    ]
