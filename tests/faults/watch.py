"""Watch spool/ready with inotify and keep every file that appears readable.

When a file appears in ready/ the watcher opens it at once and keeps the file
descriptor, so its content can be read after the offload deleted it. When a
file disappears, a callback (a bucket listing) runs immediately: whatever the
offload verified before deleting must already be listed then.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import select
import stat
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.faults.pcaprec import Parsed, parse

IN_CREATE = 0x100
IN_DELETE = 0x200
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CLOSE_WRITE = 0x8
IN_Q_OVERFLOW = 0x4000
IN_ISDIR = 0x40000000
_EVENT = struct.Struct("iIII")

_libc = ctypes.CDLL(None, use_errno=True)


@dataclass
class Seen:
    name: str
    fd: int | None
    appeared: float
    order: int
    gone: float | None = None
    gone_how: str = ""  # "deleted" | "quarantined" | "moved"
    listing_at_gone: frozenset[str] = frozenset()
    _content: bytes | None = None

    @property
    def missed(self) -> bool:
        """Gone before the watcher could open it: content unknown."""
        return self.fd is None and self._content is None

    def content(self) -> bytes:
        if self._content is None:
            if self.fd is None:
                self._content = b""
            else:
                size = os.fstat(self.fd).st_size
                self._content = os.pread(self.fd, size, 0)
        return self._content

    def sha256(self) -> str:
        return hashlib.sha256(self.content()).hexdigest()

    def parsed(self) -> Parsed:
        return parse(self.content())


@dataclass
class ReadyWatcher:
    ready: Path
    quarantine: Path | None = None
    on_gone: Callable[[], frozenset[str]] | None = None
    keep_fds: bool = True
    files: dict[str, Seen] = field(default_factory=dict)
    history: list[Seen] = field(default_factory=list)
    overflowed: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _fd: int = -1
    _wds: dict[int, Path] = field(default_factory=dict)
    _moved_from: dict[int, Seen] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _gone_queue: list[Seen] = field(default_factory=list)
    _gone_cv: threading.Condition = field(default_factory=threading.Condition)
    _lister: threading.Thread | None = None
    _unlisted: int = 0  # disappearances whose listing has not been taken yet

    def start(self) -> ReadyWatcher:
        self.ready.mkdir(parents=True, exist_ok=True)
        self._fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self._add(self.ready, IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM)
        if self.quarantine is not None:
            self.quarantine.mkdir(parents=True, exist_ok=True)
            self._add(self.quarantine, IN_MOVED_TO | IN_CREATE)
        for p in sorted(self.ready.iterdir()):
            self._appeared(p.name)
        self._thread = threading.Thread(target=self._loop, name="ready-watcher", daemon=True)
        self._thread.start()
        self._lister = threading.Thread(target=self._list_loop, name="ready-lister", daemon=True)
        self._lister.start()
        return self

    def _list_loop(self) -> None:
        """List the bucket for every batch of disappearances, off the event loop.

        Listing takes tens of ms; doing it in the event loop would delay opening
        the next new file until the offload may already have deleted it.
        """
        while True:
            with self._gone_cv:
                while not self._gone_queue and not self._stop.is_set():
                    self._gone_cv.wait(0.2)
                batch, self._gone_queue = self._gone_queue, []
            if not batch:
                if self._stop.is_set():
                    return
                continue
            listing = self.on_gone() if self.on_gone is not None else frozenset()
            with self._gone_cv:
                for s in batch:
                    s.listing_at_gone = listing
                self._unlisted -= len(batch)
                self._gone_cv.notify_all()

    def _add(self, path: Path, mask: int) -> None:
        wd = _libc.inotify_add_watch(self._fd, os.fsencode(path), mask)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {path}")
        self._wds[wd] = path

    def _appeared(self, name: str) -> None:
        with self._lock:
            if name in self.files and self.files[name].gone is None:
                return
            fd: int | None = None
            if self.keep_fds:
                with contextlib.suppress(OSError):
                    fd = os.open(
                        self.ready / name,
                        os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                    )
                    if not stat.S_ISREG(os.fstat(fd).st_mode):
                        os.close(fd)
                        fd = None
            s = Seen(name, fd, time.monotonic(), len(self.history))
            self.files[name] = s
            self.history.append(s)

    def _disappeared(self, name: str, cookie: int, moved: bool) -> None:
        with self._lock:
            s = self.files.get(name)
            if s is None or s.gone is not None:
                return
            s.gone = time.monotonic()
            s.gone_how = "moved" if moved else "deleted"
            if moved:
                self._moved_from[cookie] = s
        with self._gone_cv:
            self._gone_queue.append(s)
            self._unlisted += 1
            self._gone_cv.notify_all()

    def settle(self, timeout: float = 15) -> None:
        """Wait until every disappearance seen so far has its bucket listing."""
        deadline = time.monotonic() + timeout
        with self._gone_cv:
            while self._unlisted and time.monotonic() < deadline:
                self._gone_cv.wait(0.1)

    def _loop(self) -> None:
        buf = b""
        while not self._stop.is_set():
            r, _, _ = select.select([self._fd], [], [], 0.1)
            if not r:
                continue
            try:
                buf += os.read(self._fd, 65536)
            except OSError as e:
                if e.errno == errno.EAGAIN:
                    continue
                raise
            while len(buf) >= _EVENT.size:
                wd, mask, cookie, length = _EVENT.unpack_from(buf)
                if len(buf) < _EVENT.size + length:
                    break
                name = (
                    buf[_EVENT.size : _EVENT.size + length].rstrip(b"\0").decode(errors="replace")
                )
                buf = buf[_EVENT.size + length :]
                if mask & IN_Q_OVERFLOW:
                    self.overflowed = True
                    continue
                if mask & IN_ISDIR:
                    continue
                where = self._wds.get(wd)
                if where == self.ready:
                    if mask & (IN_CREATE | IN_MOVED_TO):
                        self._appeared(name)
                    elif mask & (IN_DELETE | IN_MOVED_FROM):
                        self._disappeared(name, cookie, moved=bool(mask & IN_MOVED_FROM))
                elif where == self.quarantine and mask & IN_MOVED_TO:
                    with self._lock:
                        s = self._moved_from.pop(cookie, None)
                        if s is not None:
                            s.gone_how = "quarantined"

    def stop(self) -> None:
        self._stop.set()
        for t in (self._thread, self._lister):
            if t is not None:
                t.join(10)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def close(self) -> None:
        self.stop()
        for s in self.history:
            if s.fd is not None:
                with contextlib.suppress(OSError):
                    os.close(s.fd)
                s.fd = None

    def order_of_appearance(self) -> list[str]:
        return [s.name for s in self.history]
