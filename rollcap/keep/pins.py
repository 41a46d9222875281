"""Pins: keep requests filed in the spool, and which finished files they hold.

Where pins live and who may do what (docs/capture.md, "Flight recorder"):

    <spool>/keep/   2770 root:rollcap (setgid: every pin gets group rollcap)
                    + ACL user:rollcap-capture:r-x, default user:rollcap-capture:r--

- root and members of group rollcap (the offload user `rollcap`, the listener
  running inside it, operators added to the group) may file pins (`rollcap
  keep`); the offload releases them (unlinks) once their files are verified in
  the destination.
- rollcap-capture (not in the group) only reads them, through the ACL: its
  budget never drops a pinned file. That is a cross-user read, so it goes
  through the directory's fd with O_NOFOLLOW (rollcap.spool.fs), checks each
  entry (a regular file, one link), and is bounded: at most MAX_PINS entries
  are looked at, each at most MAX_PIN_BYTES; anything else (a link, a FIFO, a
  huge file, garbage) gets one log line and is ignored.

A pin is one file ``<id>.json``: the KeepRequest's JSON. Released, it is renamed
``<id>.released`` and kept a while (RELEASED_KEEP_NS, at most MAX_RELEASED), so a
retried request (an alert's repeat, a fleet request re-read after a restart)
finds its id filed and is not shipped again; the reader skips those. It names a window,
not files: the files it holds are those of ready/ whose span overlaps it
(covered(), below), so a window reaching into the future holds the files
captured later too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from rollcap.keep.request import ID_PATTERN, KeepRequest
from rollcap.spool.fs import BadEntry, Dir
from rollcap.spool.readyname import ReadyName

log = logging.getLogger("rollcap.keep")

DIR_NAME = "keep"
DIR_MODE = 0o2770  # root:rollcap, setgid (plus the ACL for rollcap-capture)
PIN_MODE = 0o640
SUFFIX = ".json"
RELEASED = ".released"
MAX_PINS = 256  # pins looked at; a keep beyond it is refused
MAX_RELEASED = MAX_PINS  # released pins kept for idempotency, newest first
RELEASED_KEEP_NS = 7 * 86400 * 1_000_000_000  # a week: longer than any retry or request
MAX_PIN_BYTES = 4096  # a KeepRequest's JSON is well below 1 KiB
SECOND = 1_000_000_000
_ID_RE = re.compile(ID_PATTERN)


def pins_dir(spool_root: Path) -> Path:
    return spool_root / DIR_NAME


def pin_name(request_id: str) -> str:
    return request_id + SUFFIX


def released_name(request_id: str) -> str:
    return request_id + RELEASED


def encode(req: KeepRequest) -> bytes:
    return req.model_dump_json().encode() + b"\n"


def decode(data: bytes) -> KeepRequest:
    """ValueError for anything that is not one KeepRequest."""
    try:
        return KeepRequest.model_validate_json(data)
    except ValidationError as e:
        first = e.errors()[0] if e.errors() else {"msg": str(e), "loc": ()}
        where = ".".join(str(p) for p in first.get("loc", ())) or "the request"
        raise ValueError(f"not a keep request ({where}: {first['msg']})") from None


class PinReader:
    """Reads the pins directory, bounded; remembers what it parsed (by inode,
    size and mtime) so a tick re-reads only what changed, and logs each bad
    entry once."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple[int, int, int, int], KeepRequest | None]] = {}
        self._over_logged = False
        self.bad = 0  # bad entries seen at the last read
        self.truncated = False  # the last read stopped at its cap

    def read(self, d: Dir) -> list[KeepRequest]:
        """The pins in d, oldest first (by created_ns, then id)."""
        found: list[KeepRequest] = []
        cache: dict[str, tuple[tuple[int, int, int, int], KeepRequest | None]] = {}
        looked = 0
        self.bad = 0
        self.truncated = False
        with os.scandir(d.fd) as it:
            for e in it:
                looked += 1
                # pins, the temp files of pins being filed, released pins
                if looked > 2 * MAX_PINS + MAX_RELEASED:
                    self.truncated = True
                    if not self._over_logged:
                        self._over_logged = True
                        log.warning("%s: more than %d entries; the rest are not read "
                                    "(keep refuses new pins)", d.path,
                                    2 * MAX_PINS + MAX_RELEASED)  # fmt: skip
                    break
                if e.name.startswith(".") or e.name.endswith(RELEASED):
                    continue  # a pin being written (O_EXCL temp name), or released
                req = self._entry(d, e.name, cache)
                if req is not None:
                    found.append(req)
        if not self.truncated:
            self._over_logged = False
        self._cache = cache
        found.sort(key=lambda r: (r.created_ns, r.id))
        return found

    def _entry(
        self, d: Dir, name: str,
        cache: dict[str, tuple[tuple[int, int, int, int], KeepRequest | None]],
    ) -> KeepRequest | None:  # fmt: skip
        st = d.lstat(name)
        if st is None:
            return None
        key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)
        old = self._cache.get(name)
        if old is not None and old[0] == key:
            cache[name] = old
            if old[1] is None:
                self.bad += 1
            return old[1]
        req: KeepRequest | None = None
        try:
            req = self._parse(d, name, st)
        except (BadEntry, ValueError) as e:
            self.bad += 1
            log.warning("%s: ignored: %s", d.path / name, e)
        except OSError as e:
            self.bad += 1
            log.warning("%s: ignored: cannot read it: %s", d.path / name, e.strerror)
        cache[name] = (key, req)
        return req

    @staticmethod
    def _parse(d: Dir, name: str, st: os.stat_result) -> KeepRequest:
        if not name.endswith(SUFFIX) or not _ID_RE.fullmatch(name[: -len(SUFFIX)]):
            raise ValueError(f"not a pin's name (ID{SUFFIX})")
        if stat.S_ISREG(st.st_mode) and st.st_size > MAX_PIN_BYTES:
            raise BadEntry(f"larger than {MAX_PIN_BYTES} bytes")
        data = d.read_small(name, None, MAX_PIN_BYTES)
        if data is None:
            raise FileNotFoundError(name)
        req = decode(data)
        if pin_name(req.id) != name:
            raise ValueError(f"its id {req.id!r} is not its name")
        return req


def open_pins(spool_root: Path) -> Dir | None:
    """The pins directory, None when there is none; PermissionError when it
    exists but this user may not read it."""
    try:
        return Dir(pins_dir(spool_root))
    except FileNotFoundError:
        return None


# ---------------------------------------------------------------- coverage
@dataclass(frozen=True)
class HeldFile:
    """A finished file in ready/ and the time it spans: from its start (the
    name's whole second, cut down) to its last write (mtime, rounded up): tcpdump
    writes a packet after capturing it, and the hand-off's rewrites come later
    still, so every packet of the file lies within. Neither end depends on the
    files around it, which the ring drops and the offload ships."""

    name: str
    seq: int
    iface: str
    start_ns: int
    end_ns: int
    size: int
    host: str = ""  # the host its name carries

    def overlaps(self, since_ns: int, until_ns: int) -> bool:
        return self.start_ns < until_ns and self.end_ns > since_ns


def held_files(ready: Dir) -> list[HeldFile]:
    """ready/'s capture files (lstat, nothing opened), oldest first."""
    out: list[HeldFile] = []
    for e in ready.scandir():
        n = ReadyName.parse(e.name)
        if n is None:
            continue
        with contextlib.suppress(FileNotFoundError):
            st = e.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode):
                start = int(n.start.timestamp()) * SECOND
                end = max(start + SECOND, -(-st.st_mtime_ns // SECOND) * SECOND)
                out.append(HeldFile(e.name, n.seq, n.iface, start, end, st.st_size, n.host))
    out.sort(key=lambda f: f.seq)
    return out


def covered(files: Iterable[HeldFile], pins: Sequence[KeepRequest]) -> dict[str, KeepRequest]:
    """Each file a pin holds -> the oldest pin holding it."""
    out: dict[str, KeepRequest] = {}
    for f in files:
        for p in pins:
            if f.overlaps(p.since_ns, p.until_ns):
                out[f.name] = p
                break
    return out


def prune_released(d: Dir, now_ns: int) -> None:
    """Forget released pins older than RELEASED_KEEP_NS, and all but the newest
    MAX_RELEASED: the bound that keeps the directory readable."""
    found: list[tuple[int, str]] = []
    for e in d.scandir():
        if e.name.endswith(RELEASED):
            st = d.lstat(e.name)
            if st is not None and stat.S_ISREG(st.st_mode):
                found.append((st.st_mtime_ns, e.name))
    found.sort(reverse=True)
    for i, (mtime, name) in enumerate(found):
        if i >= MAX_RELEASED or now_ns - mtime > RELEASED_KEEP_NS:
            with contextlib.suppress(FileNotFoundError):
                d.unlink(name)
