"""Fences (pause-capture): the file names a running tcpdump must not open.

tcpdump -C names its files in a known order (``NAME.pcap``, ``NAME.pcap1``,
``NAME.pcap2`` ...) and exits when it cannot open the next one. A fence is an
empty directory of ours at one of those names: opening a directory for
writing fails with EISDIR whatever the permissions, so tcpdump cannot write
past it, however late the supervisor looks. The budget places each running
tcpdump's fence after the last file the budget has room for
(fence_files, below), so the spool stays within the budget
by construction, not by how fast the supervisor reacts.

A fence is told from a planted entry by being an empty directory of ours with
mode FENCE_MODE: the hand-off never lists one (rollcap.spool.workname), and
fences a crashed supervisor left are removed at start.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

from rollcap.journal import fields
from rollcap.spool.fs import Dir
from rollcap.spool.workname import FENCE_MODE, WorkName, is_fence, list_work

log = logging.getLogger("rollcap.capture")


def fence_files(used: int, reserve: int, live: int, max_bytes: int, rotate_bytes: int) -> int:
    """Whole -C files each of `live` running tcpdumps may start after its live file
    (pause-capture: its fence stops it there).

    used counts every file in the spool, reserve what the live files may still grow
    by: used + reserve + live * files * rotate_bytes <= max_bytes, so what tcpdump
    can write at all keeps the spool within the budget (plus one packet per file:
    -C is checked before each write), whenever the supervisor looks again."""
    spare = max_bytes - used - reserve
    if live <= 0 or spare <= 0:
        return 0
    return spare // (live * rotate_bytes)


HISTORY = 64  # generations whose fences are remembered (one or two run at a time)


def fence_after(newest: WorkName, files: int) -> WorkName:
    """The name that stops tcpdump after newest and `files` more -C files."""
    return replace(newest, counter=newest.counter + 1 + files)


class Fences:
    """One fence per running tcpdump (by generation), moved as the budget allows."""

    def __init__(self, work: Dir) -> None:
        self.work = work
        self.placed: dict[int, str] = {}  # generation -> fence name
        self.first: dict[int, WorkName] = {}  # generation -> the file it opens first
        # every fence each recent generation had: its exit is told by the name, and
        # the fence may have been moved or removed before the exit is seen
        self.history: dict[int, set[str]] = {}
        self._failed_logged = False

    def expect(self, generation: int, first: WorkName) -> None:
        """A tcpdump about to start writes first (rotate_align: the name is ours)."""
        self.first[generation] = first

    def place(self, generation: int, newest: WorkName | None, files: int) -> None:
        """Fence generation after newest (its live file; None: nothing written
        yet, its expected first file) and `files` more. The old fence goes only
        once the new one stands: tcpdump is never without one."""
        base = newest or self.first.get(generation)
        if base is None:
            return  # tcpdump -G names its first file itself: fenced once it is seen
        name = fence_after(base, files).format()
        old = self.placed.get(generation)
        if name == old:
            return
        try:
            os.mkdir(name, FENCE_MODE, dir_fd=self.work.fd)
        except FileExistsError:
            return  # tcpdump opened that file already: the old fence still holds
        except OSError as e:
            if not self._failed_logged:
                self._failed_logged = True
                log.warning("cannot place the budget's fence %s: %s", name, e,
                            extra=fields(file=name))  # fmt: skip
            return
        self._failed_logged = False
        self.placed[generation] = name
        self.history.setdefault(generation, set()).add(name)
        while len(self.history) > HISTORY:
            del self.history[min(self.history)]
        if old is not None:
            self._remove(old)

    def follow(self, live: set[int], files: int) -> None:
        """Fence each running tcpdump (live: their generations) `files` files
        after its live file; the fences of the others go."""
        newest: dict[int, WorkName] = {}
        for w, _n in list_work(self.work):
            if w.generation in live:
                newest[w.generation] = w  # sorted: the last one wins
        for gen in live:
            self.place(gen, newest.get(gen), files)
        self.keep_only(live)

    def keep_only(self, generations: set[int]) -> None:
        """Remove the fences of tcpdumps that no longer run."""
        for gen in [g for g in self.placed if g not in generations]:
            self._remove(self.placed.pop(gen))
        for gen in [g for g in self.first if g not in generations]:
            del self.first[gen]

    def reached(self, generation: int, message: str) -> bool:
        """Whether a tcpdump's exit message says it stopped at its fence."""
        return any(name in message for name in self.history.get(generation, ()))

    def _remove(self, name: str) -> None:
        try:
            os.rmdir(name, dir_fd=self.work.fd)
        except FileNotFoundError:
            pass
        except OSError as e:  # not empty: not ours any more; it stays, never listed
            log.warning("cannot remove the budget's fence %s: %s", name, e,
                        extra=fields(file=name))  # fmt: skip


def remove_stale_fences(work: Dir) -> None:
    """Fences a crashed supervisor left (only ever called holding the spool's lock)."""
    for name in work.names():
        st = work.lstat(name)
        if st is not None and WorkName.parse(name) and is_fence(st):
            log.info("removing stale fence %s", name, extra=fields(file=name))
            try:
                os.rmdir(name, dir_fd=work.fd)
            except OSError as e:
                log.warning("cannot remove stale fence %s: %s", name, e)
