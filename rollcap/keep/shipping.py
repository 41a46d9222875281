"""Keeps as the offload sees them: which files to ship, for which keep, and
when a keep is done.

offload.mode = "on-demand": only the finished files a pin holds are uploaded
(wanted()); every other file stays in ready/, a ring that capture's budget
turns. In both modes a file a pin holds is uploaded with the keep's id and
reason in its metadata and its manifest entry (keep_of()).

A pin is released (its file unlinked; the offload user is in group rollcap)
once its window is done: its end has passed, capture has cut the file it ended
in (a file starting at or after the end has been seen in ready/), and no file
of ready/ overlaps the window any more: each was stored and verified before
the offload deleted it (or was dropped, quarantined, never held).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from pathlib import Path

from rollcap.journal import fields
from rollcap.keep import pins
from rollcap.keep.request import KeepRequest
from rollcap.spool.fs import Dir

log = logging.getLogger("rollcap.offload")

REFRESH_SECONDS = 1.0  # how often the offload looks at the pins (a listing when unchanged)


class Shipping:
    def __init__(self, spool_root: Path, on_demand: bool) -> None:
        self.root = spool_root
        self.on_demand = on_demand
        self.reader = pins.PinReader()
        self.keeps: list[KeepRequest] = []
        self._held: dict[str, KeepRequest] = {}  # ready/ name -> its (oldest) keep
        self._newest_start = 0  # the latest start of a file seen in ready/ (epoch ns)
        self._shipped: dict[str, int] = {}  # keep id -> files stored for it
        self._denied_logged = False

    def refresh(self) -> bool:
        """Read the pins and ready/ again; True when what they hold changed (the
        offload then rescans ready/ for the files it now wants)."""
        before = set(self._held)
        try:
            d = pins.open_pins(self.root)
            keeps = [] if d is None else self._read(d)
            with Dir(self.root / "ready") as ready:
                files = pins.held_files(ready)
        except OSError as e:
            if not self._denied_logged:
                self._denied_logged = True
                log.error("cannot read the pins or ready/ (%s): keeps wait", e)
            return False
        self._denied_logged = False
        self.keeps = keeps
        self._held = pins.covered(files, keeps)
        if files:
            self._newest_start = max(self._newest_start, max(f.start_ns for f in files))
        return set(self._held) != before

    def _read(self, d: Dir) -> list[KeepRequest]:
        with d:
            return self.reader.read(d)

    def wanted(self, name: str) -> bool:
        """Whether the offload uploads this file of ready/ now."""
        return not self.on_demand or name in self._held

    def keep_of(self, name: str) -> KeepRequest | None:
        return self._held.get(name)

    def stored(self, keep_id: str) -> None:
        if keep_id:
            self._shipped[keep_id] = self._shipped.get(keep_id, 0) + 1

    def release_done(self, in_flight: Collection[str], destination: str,
                     now_ns: int | None = None) -> list[str]:  # fmt: skip
        """Unlink the pins whose window is done (see the module's doc); their ids."""
        now = time.time_ns() if now_ns is None else now_ns
        held_ids = {k.id for k in self._held.values()}
        busy = {self._held[n].id for n in in_flight if n in self._held}
        done = [
            k for k in self.keeps
            if k.until_ns <= now and self._newest_start >= k.until_ns
            and k.id not in held_ids and k.id not in busy
        ]  # fmt: skip
        released = []
        for k in done:
            try:
                with Dir(pins.pins_dir(self.root)) as d:
                    st = d.lstat(pins.pin_name(k.id))
                    if st is None or not d.unlink_if_same(pins.pin_name(k.id), st):
                        continue
            except OSError as e:
                log.warning("keep %s: cannot release its pin: %s", k.id, e,
                            extra=fields(keep_id=k.id))  # fmt: skip
                continue
            files = self._shipped.pop(k.id, 0)
            log.info(
                "keep %s released: its window is stored and verified at %s (%d files "
                "shipped by this run)", k.id, destination, files,
                extra=fields(keep_id=k.id, reason=k.reason, files=files, destination=destination),
            )  # fmt: skip
            released.append(k.id)
        if released:
            self.keeps = [k for k in self.keeps if k.id not in released]
        return released
