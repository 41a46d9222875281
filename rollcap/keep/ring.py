"""The ring as capture sees it: which finished files pins hold, and how far
back the ring reaches (its lookback) and would reach at the current rate.

Capture runs as rollcap-capture, which is not in group rollcap and did not
write the pins: reading them is a cross-user path (rollcap.keep.pins: by fd,
O_NOFOLLOW, bounded). A pins directory capture cannot read holds every file:
the budget drops nothing then (and says so once), so a keep is never lost to a
missing ACL.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rollcap.keep import pins
from rollcap.keep.request import KeepRequest
from rollcap.keep.store import ring_rate
from rollcap.timestamps import NS

log = logging.getLogger("rollcap.keep")


@dataclass(frozen=True)
class RingState:
    """What `rollcap status` and the metrics show about the ring."""

    lookback_seconds: float | None  # now - the oldest finished file's start
    projected_seconds: float | None  # the unpinned budget at the ring's current rate
    rate_bytes_per_second: float
    keeps: int
    pinned_files: int
    pinned_bytes: int
    on_demand: bool = False  # offload.mode: drops are the ring turning, not a loss
    # keep.pinned_percent of the budget (0: not known); pinned_bytes can pass it when
    # the capture rate grows after the keeps were filed (their windows' future)
    pinned_cap_bytes: int = 0

    def as_dict(self) -> dict[str, float | int | bool | None]:
        return {
            "lookback_seconds": _round(self.lookback_seconds),
            "projected_seconds": _round(self.projected_seconds),
            "rate_bytes_per_second": round(self.rate_bytes_per_second, 1),
            "keeps": self.keeps,
            "pinned_files": self.pinned_files,
            "pinned_bytes": self.pinned_bytes,
            "on_demand": self.on_demand,
            "pinned_cap_bytes": self.pinned_cap_bytes,
            "pinned_over_cap": self.over_cap,
        }

    @property
    def over_cap(self) -> bool:
        return 0 < self.pinned_cap_bytes < self.pinned_bytes


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def ring_state(files: Sequence[pins.HeldFile], held: dict[str, KeepRequest], keeps: int,
               max_bytes: int, now_ns: int, on_demand: bool = False,
               pinned_cap_bytes: int = 0) -> RingState:  # fmt: skip
    rate = ring_rate(files)
    pinned = sum(f.size for f in files if f.name in held)
    lookback = (now_ns - files[0].start_ns) / 1e9 if files else None
    projected = max(0, max_bytes - pinned) / rate if rate > 0 else None
    return RingState(lookback, projected, rate, keeps, len(held), pinned, on_demand,
                     pinned_cap_bytes)  # fmt: skip


def duration(seconds: float) -> str:
    """e.g. 2h13m, 4m05s, 12s."""
    s = int(seconds)
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600:02d}h"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class PinGuard:
    """The pins, read again at each look (only changed entries are parsed)."""

    def __init__(self, spool_root: Path) -> None:
        self.root = spool_root
        self.reader = pins.PinReader()
        self.current: list[KeepRequest] = []
        self.readable = True
        self._denied_logged = False

    @contextlib.contextmanager
    def settled(self) -> Iterator[bool]:
        """A shared flock on the pins directory for the budget's read of the pins
        and its drops: `rollcap keep` files a pin under LOCK_EX after matching
        ready/, so no file can be dropped between its match and its pin. False: a
        keep is being filed now (drop nothing this tick). Capture has r-x on the
        directory (its ACL); flock needs no more than an fd."""
        try:
            d = pins.open_pins(self.root)
        except OSError:
            d = None  # read() says why, and holds everything
        if d is None:
            yield True
            return
        with d:  # the lock goes with the close
            try:
                fcntl.flock(d.fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True

    def read(self) -> list[KeepRequest] | None:
        """The pins now; None when they cannot be read (hold everything)."""
        try:
            d = pins.open_pins(self.root)
            if d is None:
                self.current, self.readable = [], True
                return self.current
            with d:
                found = self.reader.read(d)
            if self.reader.truncated:  # a pin not read may hold any file: hold them all
                self.readable = False
                return None
            self.current = found
        except OSError as e:
            self.readable = False
            if not self._denied_logged:
                self._denied_logged = True
                log.error(
                    "cannot read the pins in %s (%s): the budget drops no finished file "
                    "until it can (docs/capture.md, Flight recorder: the ACL for "
                    "rollcap-capture)", pins.pins_dir(self.root), e.strerror or e,
                )  # fmt: skip
            return None
        if self._denied_logged:
            log.info("the pins in %s are readable again", pins.pins_dir(self.root))
        self._denied_logged, self.readable = False, True
        return self.current


def due_cuts(keeps: Sequence[KeepRequest], live_opened_s: Sequence[int],
             now_ns: int | None = None) -> list[KeepRequest]:  # fmt: skip
    """Keeps whose window has ended inside a file still being written (opened at
    whole seconds live_opened_s): that file must be cut so the window's end is
    finished and can be shipped. A file opened within the window's last second
    is not cut (its name cannot tell): it goes at its normal rotation.
    The cut waits for the window's end rounded up to a whole second: the next file's
    name (whole seconds) then starts at or after the end, so the offload can tell it
    is outside the window and release the keep without waiting for its rotation."""
    now = time.time_ns() if now_ns is None else now_ns
    return [
        k for k in keeps
        if -(-k.until_ns // NS) * NS <= now
        and any((s + 1) * NS <= k.until_ns for s in live_opened_s)
    ]  # fmt: skip
