"""Spool file operations through directory file descriptors: the one place for them.

Both daemons work in directories another user can write (work/ is tcpdump's,
whose packet parsers face hostile traffic; ready/ and quarantine/ are shared
with the offload user). So nothing here resolves a path twice or follows a
link: an entry is opened relative to an open directory fd with O_NOFOLLOW and
O_NONBLOCK (a FIFO or device never blocks or gets opened for real), and the
open fd is checked with fstat: a regular file, an expected owner, exactly one
link (a hard link to a file elsewhere must never be chmodded, truncated or
rewritten through the spool). chmod, chown and truncate go through that fd;
temp files are created with O_EXCL; renames and unlinks name both directory fds.

An entry that fails a check raises BadEntry (its message is the reason, for
one log line and the quarantine); the caller skips or quarantines it and goes
on with the others. Walks into directory trees (tree_bytes, remove_entry) are
iterative and capped in depth and entries: a planted tree beyond the caps is
logged once and left alone (Oversized, OVERSIZED).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

# the name it logged under as rollcap/spoolfs.py: journal filters (LOGGER=) keep working
log = logging.getLogger("rollcap.spoolfs")

OPEN_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
# Out of space: wait for room. Every other OSError is about one entry.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class BadEntry(Exception):
    """This entry must not be used (skip or quarantine it); the message says why."""


def is_no_space(e: OSError) -> bool:
    return e.errno in NO_SPACE


def kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def check_regular(st: os.stat_result, owners: set[int] | None) -> None:
    """BadEntry unless st is a regular file with one link and an expected owner."""
    if not stat.S_ISREG(st.st_mode):
        raise BadEntry(f"{kind(st.st_mode)}, not a regular file")
    if st.st_nlink != 1:
        raise BadEntry(f"a hard link ({st.st_nlink} links): never used through the spool")
    if owners is not None and st.st_uid not in owners:
        raise BadEntry(f"owned by uid {st.st_uid}, not by {_owners(owners)}")


def _owners(owners: set[int]) -> str:
    return "uid " + " or ".join(str(u) for u in sorted(owners))


class Dir:
    """An open spool directory; every operation on its entries goes through it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Dir:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def owner(self) -> int:
        return os.fstat(self.fd).st_uid

    # ------------------------------------------------------------------ listing
    def names(self) -> list[str]:
        return os.listdir(self.fd)

    def lstat(self, name: str) -> os.stat_result | None:
        """The entry itself (a link is not followed); None when it is gone."""
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def scandir(self) -> Iterator[os.DirEntry[str]]:
        with os.scandir(self.fd) as it:
            yield from it

    # ------------------------------------------------------------------ opening
    def open(self, name: str, owners: set[int] | None, write: bool = False) -> int:
        """An fd on the regular file name, checked (see check_regular).

        FileNotFoundError when it is gone; BadEntry for anything else about
        this entry (a link, FIFO, directory, hard link, wrong owner, unreadable);
        other OSError (EIO, ENOSPC) as they are."""
        flags = (os.O_RDWR if write else os.O_RDONLY) | OPEN_FLAGS
        try:
            fd = os.open(name, flags, dir_fd=self.fd)
        except FileNotFoundError:
            raise
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise BadEntry("a symbolic link (never followed)") from None
            if e.errno in (errno.EACCES, errno.EPERM):
                raise BadEntry("not readable (permission denied)") from None
            if e.errno == errno.EISDIR:
                raise BadEntry("a directory, not a regular file") from None
            if e.errno in (errno.ENXIO, errno.ENODEV, errno.ETXTBSY, errno.EWOULDBLOCK):
                st = self.lstat(name)
                raise BadEntry(
                    f"{kind(st.st_mode) if st else 'gone'}, not a regular file"
                ) from None
            raise
        try:
            check_regular(os.fstat(fd), owners)
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def read_small(self, name: str, owners: set[int] | None, limit: int) -> bytes | None:
        """Contents of a small state file, None when it is missing; BadEntry when it
        is not a plain file of ours or bigger than limit."""
        try:
            fd = self.open(name, owners)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise BadEntry(f"larger than {limit} bytes")
        return data

    # ------------------------------------------------------------------ writing
    def create_temp(self, prefix: str, suffix: str = ".tmp", mode: int = 0o640) -> tuple[int, str]:
        """(fd, name) of a new file that did not exist before (O_EXCL)."""
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | OPEN_FLAGS
        for _ in range(100):
            name = f"{prefix}{secrets.token_hex(6)}{suffix}"
            try:
                fd = os.open(name, flags, mode, dir_fd=self.fd)
            except FileExistsError:
                continue
            os.set_blocking(fd, True)
            return fd, name
        raise FileExistsError(errno.EEXIST, "no free temp name", str(self.path / prefix))

    def write_atomic(self, name: str, data: bytes, mode: int = 0o640) -> None:
        """Replace name with data: an O_EXCL temp file, then a rename; never half a file."""
        fd, tmp = self.create_temp("." + name + ".", ".tmp", mode)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                os.fchmod(f.fileno(), mode)  # whatever the umask took away
            self.rename(tmp, self, name)
        except BaseException:
            with contextlib.suppress(OSError):
                self.unlink(tmp)
            raise

    def rename(self, name: str, dst: Dir, dst_name: str) -> None:
        os.rename(name, dst_name, src_dir_fd=self.fd, dst_dir_fd=dst.fd)

    def unlink(self, name: str) -> None:
        os.unlink(name, dir_fd=self.fd)

    def unlink_if_same(self, name: str, st: os.stat_result) -> bool:
        """Unlink name only while it is still the inode st describes (not replaced
        meanwhile by another user); False when it is gone or was replaced."""
        now = self.lstat(name)
        if now is None or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return False
        try:
            self.unlink(name)
        except FileNotFoundError:
            return False
        return True

    def open_dir(self, name: str) -> Dir:
        """The subdirectory name, opened without following a link."""
        return _Adopted(os.open(name, DIR_FLAGS, dir_fd=self.fd), self.path / name)

    def remove_entry(self, name: str) -> None:
        """Remove whatever name is (a file, link, FIFO, or a directory tree), never
        following a link; for quarantine's cap. Oversized (logged once) for a tree
        beyond the walk's caps: it is left as it is."""
        st = self.lstat(name)
        if st is None:
            return
        if not stat.S_ISDIR(st.st_mode):
            self.unlink(name)
            return
        if OVERSIZED.known(st) is not None:
            raise Oversized("already found oversized")
        try:
            _subtree_bytes(self, name)  # within the caps? before removing anything
            _remove_tree(self, name)
        except Oversized as e:
            OVERSIZED.note(self.path / name, st, e)
            raise


class _Adopted(Dir):
    """A Dir around an fd that is already open."""

    def __init__(self, fd: int, path: Path) -> None:
        self.path = path
        self.fd = fd


def tree_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes of the entries under path (lstat: links are not followed; 0 when gone).
    A subdirectory tree beyond the walk's caps counts as far as the walk went, is
    logged once and not walked again (OVERSIZED)."""
    try:
        d = Dir(path)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return 0
    total = 0
    with d:
        try:
            entries = list(d.scandir())  # the spool directory itself: no cap (a backlog)
        except OSError:
            return 0
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # the other daemon finished it meanwhile
            if not stat.S_ISDIR(st.st_mode):
                total += st.st_size
                continue
            known = OVERSIZED.known(st)
            if known is not None:
                total += known
                continue
            try:
                total += _subtree_bytes(d, e.name)
            except Oversized as over:
                OVERSIZED.note(d.path / e.name, st, over)
                total += over.counted
    return total


# ---------------------------------------------------------------- bounded walks
# Nothing rollcap makes in the spool has subdirectories: a directory there was
# planted (or quarantined as planted), and another user may make it as deep or
# wide as they like. Walks below a spool directory are iterative and stop at
# these caps, so they end, hold at most MAX_DEPTH fds, and cost a bounded time.
MAX_DEPTH = 16  # directory levels below the spool directory's entry
MAX_DIR_ENTRIES = 4096  # entries read from one subdirectory
MAX_TREE_ENTRIES = 65536  # entries read below one spool entry, in all
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Oversized(BadEntry):
    """A planted directory tree beyond the caps of the walks; counted: its bytes
    up to where the walk stopped."""

    def __init__(self, reason: str, counted: int = 0) -> None:
        super().__init__(reason)
        self.counted = counted


class _Caps:
    """One walk's entry count against MAX_TREE_ENTRIES."""

    def __init__(self) -> None:
        self.entries = 0

    def listing(self, d: Dir) -> list[tuple[str, os.stat_result]]:
        """d's entries (lstat), at most MAX_DIR_ENTRIES; Oversized beyond a cap."""
        out: list[tuple[str, os.stat_result]] = []
        with os.scandir(d.fd) as it:
            for e in it:
                self.entries += 1
                if self.entries > MAX_TREE_ENTRIES:
                    raise Oversized(f"of more than {MAX_TREE_ENTRIES} entries in all")
                if len(out) >= MAX_DIR_ENTRIES:
                    raise Oversized(f"with a directory of more than {MAX_DIR_ENTRIES} entries")
                try:
                    out.append((e.name, e.stat(follow_symlinks=False)))
                except FileNotFoundError:
                    continue
        # directories first: pop() takes the files first, so a walk stopped by
        # the depth cap has counted every level above it
        out.sort(key=lambda e: not stat.S_ISDIR(e[1].st_mode))
        return out


_TOO_DEEP = f"deeper than {MAX_DEPTH} directory levels"


def _subtree_bytes(parent: Dir, name: str) -> int:
    """Bytes below parent/name, a directory: depth first, one open fd per level.
    A directory that cannot be opened or read (gone, not ours) counts as empty."""
    caps = _Caps()
    total = 0
    stack: list[tuple[Dir, list[tuple[str, os.stat_result]]]] = []

    def push(d: Dir, child: str) -> None:
        try:
            sub = d.open_dir(child)
        except OSError:
            return
        stack.append((sub, []))  # first, so that finally closes it if listing raises
        with contextlib.suppress(OSError):  # unreadable: counts as empty
            stack[-1] = (sub, caps.listing(sub))

    try:
        push(parent, name)
        while stack:
            d, pending = stack[-1]
            if not pending:
                stack.pop()[0].close()
                continue
            child, st = pending.pop()
            if not stat.S_ISDIR(st.st_mode):
                total += st.st_size
            elif len(stack) >= MAX_DEPTH:
                raise Oversized(_TOO_DEEP)
            else:
                push(d, child)
    except Oversized as e:
        e.counted = total
        raise
    finally:
        for d, _pending in stack:
            d.close()
    return total


def _remove_tree(parent: Dir, name: str) -> None:
    """Remove the directory parent/name and all below it, depth first, one open
    fd per level, never following a link; Oversized beyond the caps (what was
    removed until then stays removed)."""
    caps = _Caps()
    # (the directory, its name in the one before, entries left to remove)
    stack: list[tuple[Dir, str, list[tuple[str, os.stat_result]]]] = []
    try:
        top = parent.open_dir(name)
        stack.append((top, name, []))  # first, so that finally closes it if listing raises
        stack[-1] = (top, name, caps.listing(top))
        while stack:
            d, dname, pending = stack[-1]
            if not pending:
                stack.pop()
                d.close()
                os.rmdir(dname, dir_fd=(stack[-1][0] if stack else parent).fd)
                continue
            child, st = pending.pop()
            if not stat.S_ISDIR(st.st_mode):
                with contextlib.suppress(FileNotFoundError):
                    d.unlink(child)
                continue
            if len(stack) >= MAX_DEPTH:
                raise Oversized(_TOO_DEEP)
            sub = d.open_dir(child)
            stack.append((sub, child, []))  # as above
            stack[-1] = (sub, child, caps.listing(sub))
    finally:
        for d, _name, _pending in stack:
            d.close()


class _OversizedTrees:
    """Spool entries whose trees went beyond the caps: logged once, never walked
    again (by (device, inode, ctime): a rename, e.g. into quarantine/, is a new
    look). Shared by the budget, the quarantine cap and the metrics of a process."""

    LIMIT = 1024  # remembered entries; the oldest are forgotten (and logged again)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[int, int, int], int] = {}

    @staticmethod
    def _key(st: os.stat_result) -> tuple[int, int, int]:
        return st.st_dev, st.st_ino, st.st_ctime_ns

    def known(self, st: os.stat_result) -> int | None:
        """The bytes counted when this tree was found oversized; None: not known."""
        with self._lock:
            return self._seen.get(self._key(st))

    def note(self, path: Path, st: os.stat_result, e: Oversized) -> None:
        with self._lock:
            key = self._key(st)
            if key in self._seen:
                return
            while len(self._seen) >= self.LIMIT:
                del self._seen[next(iter(self._seen))]
            self._seen[key] = e.counted
        log.warning(
            "%s: a directory tree %s: not walked beyond (%d bytes counted), never "
            "removed by rollcap; remove it by hand",
            path, e, e.counted,
        )  # fmt: skip

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


OVERSIZED = _OversizedTrees()
