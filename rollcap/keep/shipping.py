"""Keeps as the offload sees them: which files to ship, for which keep, and
when a keep is done.

offload.mode = "on-demand": only the finished files a pin holds are uploaded
(wanted()); every other file stays in ready/, a ring that capture's budget
turns. In both modes a file a pin holds is uploaded with the keep's id and
reason in its metadata and its manifest entry (keep_of()).

A pin is released (its file unlinked; the offload user is in group rollcap),
after a record of the keep is in the bucket (write_record, below), once its
window is done: its end has passed, capture has cut the file it ended
in on every configured interface (capture's state says the oldest file of each
interface still in work/ opened at or after the end: everything before it has
reached ready/), and no file of ready/ overlaps the window any more: each was
stored and verified before the offload deleted it (or was dropped, quarantined,
never held). Capture's state is read before ready/ is listed, so a file handed
off in between is in the listing.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import stat
import time
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path

from rollcap.journal import fields
from rollcap.keep import pins
from rollcap.keep.request import KeepRequest
from rollcap.spool.fs import BadEntry, Dir
from rollcap.storage import manifest
from rollcap.storage.base import Storage

log = logging.getLogger("rollcap.offload")

REFRESH_SECONDS = 1.0  # how often the offload looks at the pins (a listing when unchanged)
STATE_MAX = 1 << 20  # capture.json is a few KiB


class Shipping:
    def __init__(self, spool_root: Path, on_demand: bool, interfaces: Collection[str]) -> None:
        self.root = spool_root
        self.on_demand = on_demand
        self.interfaces = tuple(interfaces)  # capture's: each must prove its cut
        self.reader = pins.PinReader()
        self.keeps: list[KeepRequest] = []
        self._held: dict[str, KeepRequest] = {}  # ready/ name -> its (oldest) keep
        self._cut = 0  # everything captured before it has left work/ (epoch ns; 0: unknown)
        self._shipped: dict[str, list[str]] = {}  # keep id -> keys stored for it
        self._denied_logged = False

    def refresh(self) -> bool:
        """Read the pins and ready/ again; True when what they hold changed (the
        offload then rescans ready/ for the files it now wants)."""
        before = set(self._held)
        cut = self._work_since()  # before ready/ is listed (see the module's doc)
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
        self._cut = cut
        return set(self._held) != before

    def _read(self, d: Dir) -> list[KeepRequest]:
        with d:
            found = self.reader.read(d)
        if self.reader.truncated:  # a pin not read: releasing by this list could lose its files
            raise OSError(f"{d.path}: more than {2 * pins.MAX_PINS + pins.MAX_RELEASED} "
                          "entries, not all read")  # fmt: skip
        return found

    def wanted(self, name: str) -> bool:
        """Whether the offload uploads this file of ready/ now."""
        return not self.on_demand or name in self._held

    def keep_of(self, name: str) -> KeepRequest | None:
        return self._held.get(name)

    def stored(self, keep_id: str, key: str) -> None:
        if keep_id and key:
            self._shipped.setdefault(keep_id, []).append(key)

    def shipped(self, keep_id: str) -> list[str]:
        return list(self._shipped.get(keep_id, ()))

    def _work_since(self) -> int:
        """When the oldest file capture still has in work/ was opened, the earliest
        over the configured interfaces (epoch ns, whole seconds; 0: no evidence,
        e.g. an interface missing or a value out of range): everything captured
        before it is in ready/ or gone. Read from capture's state, which another
        user writes: by fd, O_NOFOLLOW, bounded."""
        try:
            with Dir(self.root / "capture") as d:
                data = d.read_small("capture.json", None, STATE_MAX)
            st = json.loads(data or b"{}")
            per = st.get("interfaces") if isinstance(st, dict) else None
            if not isinstance(per, dict) or not self.interfaces:
                return 0
            times = []
            for name in self.interfaces:
                v = per.get(name)
                t = v.get("work_since") if isinstance(v, dict) else None
                if not isinstance(t, int | float) or isinstance(t, bool):
                    return 0
                t = float(t)
                if not (math.isfinite(t) and 0 <= t < 2**63 / 1e9):
                    return 0
                times.append(int(t))
            return min(times) * 1_000_000_000
        except (OSError, BadEntry, ValueError, OverflowError, RecursionError):
            return 0

    def done(self, in_flight: Collection[str], now_ns: int | None = None) -> list[KeepRequest]:
        """The keeps whose window is done (see the module's doc): every interface's
        oldest file in work/ opened at or after its end (as capture's state said
        before the last refresh listed ready/), and nothing of it is left."""
        now = time.time_ns() if now_ns is None else now_ns
        cut = self._cut
        held_ids = {k.id for k in self._held.values()}
        busy = {self._held[n].id for n in in_flight if n in self._held}
        return [
            k for k in self.keeps
            if k.until_ns <= now and cut >= k.until_ns
            and k.id not in held_ids and k.id not in busy
        ]  # fmt: skip

    def release(self, k: KeepRequest, destination: str, record: str = "") -> bool:
        """Release k's pin: renamed <id>.released (only the file that is k's pin now,
        under the lock `rollcap keep` files under), so a retry of the same id is known;
        False when it was gone."""
        try:
            with Dir(pins.pins_dir(self.root)) as d:
                fcntl.flock(d.fd, fcntl.LOCK_EX)  # released with the close
                name = pins.pin_name(k.id)
                st = d.lstat(name)
                if st is None or not stat.S_ISREG(st.st_mode):
                    return False
                d.rename(name, d, pins.released_name(k.id))
                os.utime(pins.released_name(k.id), dir_fd=d.fd, follow_symlinks=False)
                pins.prune_released(d, time.time_ns())
        except FileNotFoundError:
            return False
        except OSError as e:
            log.warning("keep %s: cannot release its pin: %s", k.id, e,
                        extra=fields(keep_id=k.id))  # fmt: skip
            return False
        files = len(self._shipped.pop(k.id, ()))
        log.info(
            "keep %s released: its window is stored and verified at %s (%d files shipped by "
            "this run)%s", k.id, destination, files, f"; its record: {record}" if record else "",
            extra=fields(keep_id=k.id, reason=k.reason, files=files, destination=destination,
                         key=record or None),
        )  # fmt: skip
        return True


# ---------------------------------------------------------------- keep records
# Stored objects are write-once: a keep marks what it covers in the bucket with
# a record object beside the index, never by rewriting an object. Its name
# starts with the host, so the host policy's index scope
# ({prefix}/_index/*/${aws:username}~*) lets a host write its own records
# only; hosts get no legal-hold right (`rollcap hold` stays the requester's).
RECORD_DIR = manifest.KEEPS_DIR


def record_key(prefix: str, host: str, keep_id: str) -> str:
    p = prefix.strip("/")
    return f"{p}/{RECORD_DIR}/{host}~{keep_id}.json" if p else f"{RECORD_DIR}/{host}~{keep_id}.json"


def stored_keys(storage: Storage, prefix: str, host: str, k: KeepRequest) -> list[str]:
    """The objects of host whose manifest entries overlap k's window (StorageError
    as the destination raises it). Bounded: manifest.MAX_SLOTS listings."""
    since = datetime.fromtimestamp(k.since_ns / 1e9, UTC)
    until = datetime.fromtimestamp(k.until_ns / 1e9, UTC)
    keys: set[str] = set()
    for slot in manifest.window_slots(since, until):
        for info in storage.list(manifest.host_prefix(prefix, slot, host)):
            e = manifest.parse_key(info.key, prefix)
            if e is None or not e.key or e.host != host:
                continue
            lo, hi = e.span
            if lo * 1e9 < k.until_ns and hi * 1e9 >= k.since_ns:
                keys.add(e.key)
    return sorted(keys)


def record_body(k: KeepRequest, host: str, keys: Collection[str], now_ns: int) -> bytes:
    rec = {
        "version": 1, "host": host, "keep": k.model_dump(), "released_ns": now_ns,
        "objects": sorted(keys),
    }  # fmt: skip
    return json.dumps(rec, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def write_record(storage: Storage, prefix: str, host: str, k: KeepRequest,
                 shipped: Collection[str]) -> str:  # fmt: skip
    """The keep's record: every object of host in its window (already stored, or
    shipped for it); its key. Written once (a key holds what it names)."""
    keys = set(stored_keys(storage, prefix, host, k)) | set(shipped)
    key = record_key(prefix, host, k.id)
    storage.put_bytes(key, record_body(k, host, keys, time.time_ns()), "application/json")
    return key
