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
on with the others.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

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

    def remove_entry(self, name: str) -> None:
        """Remove whatever name is (a file, link, FIFO, or a directory tree), never
        following a link; for quarantine's cap."""
        st = self.lstat(name)
        if st is None:
            return
        if not stat.S_ISDIR(st.st_mode):
            self.unlink(name)
            return
        fd = os.open(
            name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd
        )
        sub = _Adopted(fd, self.path / name)
        try:
            for child in sub.names():
                sub.remove_entry(child)
        finally:
            sub.close()
        os.rmdir(name, dir_fd=self.fd)


class _Adopted(Dir):
    """A Dir around an fd that is already open."""

    def __init__(self, fd: int, path: Path) -> None:
        self.path = path
        self.fd = fd


def tree_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes of the entries under path (lstat: links are not followed; 0 when gone)."""
    total = 0
    try:
        d = Dir(path)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return 0
    with d:
        total += _tree(d)
    return total


def _tree(d: Dir) -> int:
    total = 0
    try:
        entries = list(d.scandir())
    except OSError:
        return 0
    for e in entries:
        try:
            st = e.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # the other daemon finished it meanwhile
        if stat.S_ISDIR(st.st_mode):
            try:
                fd = os.open(
                    e.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=d.fd
                )
            except OSError:
                continue
            sub = _Adopted(fd, d.path / e.name)
            with sub:
                total += _tree(sub)
        else:
            total += st.st_size
    return total
