"""Filing a keep on this host: the local Submit (rollcap.keep.request).

local_submitter() returns the one call every keep source on a host uses (the
CLI, the listener, the fleet poller). It files the request as a pin in
<spool>/keep/ (rollcap.keep.pins) and returns only once the pin is durable:
the file and the directory are fsynced. Filing is serialised by an flock on
the pins directory, so two sources filing the same id at once make one pin:
the second gets KeepOutcome(repeated=True).

Pinned bytes have their own cap (keep.pinned_percent of spool.max_megabytes):
the finished files every pin holds, plus what the part of the new window still
in the future will take at the ring's current rate. A keep over it is refused
(KeepRefused, one line naming the cap and what is pinned), and nothing is filed.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rollcap.config.schema import RollcapConfig
from rollcap.errors import RollcapError
from rollcap.journal import fields
from rollcap.keep import pins
from rollcap.keep.request import KeepOutcome, KeepRefused, KeepRequest, Submit, window_problem
from rollcap.spool.fs import BadEntry, Dir

log = logging.getLogger("rollcap.keep")

MB = 1_000_000


def ring_rate(files: Sequence[pins.HeldFile]) -> float:
    """Bytes per second the ring fills at: the finished files' bytes over the
    time they span (0.0 when it is not known yet)."""
    spans = [(f.end_ns - f.start_ns, f.size) for f in files]
    seconds = sum(s for s, _b in spans) / 1e9
    return sum(b for _s, b in spans) / seconds if seconds > 0 else 0.0


def future_bytes(keeps: Sequence[KeepRequest], now_ns: int, rate: float) -> int:
    """What the parts of keeps' windows still to come will take at rate (bytes/s):
    their union after now, so overlapping windows count once."""
    spans = sorted((max(now_ns, k.since_ns), k.until_ns) for k in keeps if k.until_ns > now_ns)
    total = 0
    end = 0
    for a, b in spans:
        a = max(a, end)
        if b > a:
            total += b - a
            end = b
    return int(total / 1e9 * rate)


def unheld(req: KeepRequest, files: Sequence[pins.HeldFile], now_ns: int) -> list[tuple[int, int]]:
    """The parts of the window the ring no longer holds: before its oldest file
    (or, with nothing finished, everything up to now)."""
    oldest = files[0].start_ns if files else min(now_ns, req.until_ns)
    if req.since_ns < oldest:
        return [(req.since_ns, min(req.until_ns, oldest))]
    return []


def _mb(n: float) -> str:
    return f"{n / MB:.1f} MB"


def ensure_dir(spool_root: Path, group: str) -> None:
    """Make <spool>/keep (root only: owner root, group rollcap, setgid). Others
    find it made by systemd-tmpfiles or by the capture daemon's start."""
    path = pins.pins_dir(spool_root)
    if path.is_dir() or os.geteuid() != 0:
        return
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except FileNotFoundError:
        raise RollcapError(f"keep: no spool at {spool_root} (spool.directory): capture has "
                           "never run with this config") from None  # fmt: skip
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        gid = 0
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchown(fd, 0, gid)
        os.fchmod(fd, pins.DIR_MODE)
    finally:
        os.close(fd)


class LocalStore:
    """The pins of one spool, filed by this process."""

    def __init__(self, spool_root: Path, cap_bytes: int, cap_text: str = "",
                 now: Callable[[], int] = time.time_ns) -> None:  # fmt: skip
        self.root = spool_root
        self.cap_bytes = cap_bytes
        self.cap_text = cap_text or _mb(cap_bytes)
        self.now = now
        self.reader = pins.PinReader()

    def submit(self, req: KeepRequest) -> KeepOutcome:
        try:
            d = Dir(pins.pins_dir(self.root))
        except FileNotFoundError:
            raise KeepRefused(
                f"keep refused: no pins directory {pins.pins_dir(self.root)} (start rollcap "
                "capture once, or run systemd-tmpfiles --create rollcap.conf)"
            ) from None
        except PermissionError:
            raise KeepRefused(
                f"keep refused: cannot open {pins.pins_dir(self.root)}: permission denied "
                "(root and group rollcap may keep)"
            ) from None
        with d:
            fcntl.flock(d.fd, fcntl.LOCK_EX)  # released with the close
            return self._file(d, req)

    def _file(self, d: Dir, req: KeepRequest) -> KeepOutcome:
        name = pins.pin_name(req.id)
        files = self._held()
        now = self.now()
        seen = name
        st = d.lstat(seen)
        if st is None:  # filed before, shipped and released: the same keep again
            seen = pins.released_name(req.id)
            st = d.lstat(seen)
        if st is not None:
            try:
                filed = pins.decode(d.read_small(seen, None, pins.MAX_PIN_BYTES) or b"")
            except (BadEntry, ValueError, OSError) as e:
                raise KeepRefused(f"keep refused: {d.path / seen} is there but not a pin ({e})"
                                  ) from None  # fmt: skip
            return self._outcome(filed, files, now, repeated=True)
        why = window_problem(req, now)
        if why:
            raise KeepRefused(f"keep refused: {why}")
        current = self.reader.read(d)
        if len(current) >= pins.MAX_PINS or self.reader.truncated:
            raise KeepRefused(f"keep refused: {pins.MAX_PINS} keeps are pinned already "
                              f"(the most {d.path} holds)")  # fmt: skip
        held_by = pins.covered(files, current)
        rate = ring_rate(files)
        # what pins filed already hold, and will hold of their windows still to come
        ahead = future_bytes(current, now, rate)
        pinned = sum(f.size for f in files if f.name in held_by) + ahead
        new = [f for f in files if f.name not in held_by and f.overlaps(req.since_ns, req.until_ns)]
        future = future_bytes([*current, req], now, rate) - ahead
        want = sum(f.size for f in new) + future
        if pinned + want > self.cap_bytes:
            more = f" + {_mb(future)} still to capture" if future else ""
            raise KeepRefused(
                f"keep refused: the pinned cap is {self.cap_text}; {len(current)} keep(s) "
                f"pin {_mb(pinned)} already (counting their windows still to come) and this "
                f"window needs {_mb(want - future)}{more}"
            )
        t0 = time.monotonic()
        _write_durably(d, name, pins.encode(req))
        out = self._outcome(req, files, now)
        log.info(
            "keep %s pinned (%s): %d files, %d bytes%s", req.id, req.reason, out.files,
            out.bytes, "; part of the window is no longer held" if out.unheld else "",
            extra=fields(keep_id=req.id, reason=req.reason, files=out.files, bytes=out.bytes,
                         source=req.source, seconds=round(time.monotonic() - t0, 4)),
        )  # fmt: skip
        return out

    def _held(self) -> list[pins.HeldFile]:
        try:
            with Dir(self.root / "ready") as ready:
                return pins.held_files(ready)
        except FileNotFoundError:
            return []
        except PermissionError:
            raise KeepRefused(
                f"keep refused: cannot list {self.root / 'ready'}: permission denied "
                "(root and group rollcap may keep)"
            ) from None

    def _outcome(self, req: KeepRequest, files: Sequence[pins.HeldFile], now: int,
                 repeated: bool = False) -> KeepOutcome:  # fmt: skip
        mine = [f for f in files if f.overlaps(req.since_ns, req.until_ns)]
        return KeepOutcome(
            request_id=req.id, files=len(mine), bytes=sum(f.size for f in mine),
            unheld=tuple(unheld(req, files, now)), repeated=repeated,
        )  # fmt: skip


def _write_durably(d: Dir, name: str, data: bytes) -> None:
    """name appears whole or not at all, and survives a power cut once this returns:
    an O_EXCL temp file, fsynced, renamed in, then the directory fsynced."""
    fd, tmp = d.create_temp("." + name + ".", ".tmp", pins.PIN_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), pins.PIN_MODE)  # whatever the umask took away
            os.fsync(f.fileno())
        d.rename(tmp, d, name)
    except BaseException:
        with contextlib.suppress(OSError):
            d.unlink(tmp)
        raise
    os.fsync(d.fd)


def local_submitter(spool_root: Path, cap_bytes: int, cap_text: str = "") -> Submit:
    """The Submit of this host's spool: pins durably, idempotent by id, refuses
    over cap_bytes of pinned files (cap_text names the setting in the error)."""
    return LocalStore(spool_root, cap_bytes, cap_text).submit


def cap_of(max_megabytes: int, pinned_percent: float) -> tuple[int, str]:
    """(bytes, text) of the pinned cap: pinned_percent of the spool's budget."""
    cap = int(max_megabytes * MB * pinned_percent / 100)
    text = (f"{_mb(cap)} (keep.pinned_percent = {pinned_percent:g} of "
            f"spool.max_megabytes = {max_megabytes})")  # fmt: skip
    return cap, text


def submitter_for(cfg: RollcapConfig) -> Submit:
    """The local Submit with the configured spool and pinned cap."""
    cap, text = cap_of(cfg.spool.max_megabytes, cfg.keep.pinned_percent)
    return local_submitter(Path(cfg.spool.directory), cap, text)
