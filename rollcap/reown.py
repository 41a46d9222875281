"""Give a tree that an unprivileged user can write to another owner, as root, by
directory fds: what the package's postinst and postrm do to /var/lib/rollcap.

`find DIR -exec chown -h` resolves each path again when it acts, so the user who
owns a directory in it can swap an intermediate directory for a link meanwhile
and have root chown or chmod a file elsewhere. Here every entry is opened
relative to its parent's open fd with O_NOFOLLOW, checked with fstat (a
directory on the same filesystem, or a regular file with one link) and changed
through that fd: a swapped entry is refused or changed where it really is.
Links, FIFOs, devices, hard-linked files and other filesystems are left alone.

    python3 -m rollcap.reown DIR USER:GROUP (--from-root | --all) MODE

MODE is "archive" (g+rX,o-rwx: readable by the group, as offload writes it) or
"private" (go-rwx: root's alone, after a purge).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import sys
from collections.abc import Callable

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
# The archive is host/YYYY/MM/DD/... deep; deeper is not rollcap's (and one fd a level)
MAX_DEPTH = 64


def archive_mode(mode: int) -> int:
    """chmod g+rX,o-rwx."""
    m = stat.S_IMODE(mode)
    m |= stat.S_IRGRP
    if stat.S_ISDIR(mode) or m & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH):
        m |= stat.S_IXGRP
    return m & ~stat.S_IRWXO


def private_mode(mode: int) -> int:
    """chmod go-rwx."""
    return stat.S_IMODE(mode) & ~(stat.S_IRWXG | stat.S_IRWXO)


MODES: dict[str, Callable[[int], int]] = {"archive": archive_mode, "private": private_mode}


def _change(fd: int, st: os.stat_result, uid: int, gid: int, mode: Callable[[int], int],
            only_uid: int | None) -> bool:  # fmt: skip
    if only_uid is not None and st.st_uid != only_uid:
        return False
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.fchown(fd, uid, gid)
    new = mode(st.st_mode)
    if new != stat.S_IMODE(os.fstat(fd).st_mode):  # fchown may have cleared setgid
        os.fchmod(fd, new)
    return True


def reown(top: str, uid: int, gid: int, mode: Callable[[int], int],
          only_uid: int | None = None) -> tuple[int, list[str]]:  # fmt: skip
    """Change the owner and mode of top and everything below it (only of entries
    owned by only_uid, when given); (entries changed, one line per problem)."""
    problems: list[str] = []
    changed = 0
    root_fd = os.open(top, DIR_FLAGS)
    dev = os.fstat(root_fd).st_dev
    stack: list[tuple[int, str, list[str]]] = []
    try:
        changed += _change(root_fd, os.fstat(root_fd), uid, gid, mode, only_uid)
        stack.append((root_fd, top, os.listdir(root_fd)))
        while stack:
            fd, path, names = stack[-1]
            if not names:
                os.close(stack.pop()[0])
                continue
            name = names.pop()
            where = f"{path}/{name}"
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if st.st_dev != dev or not (
                stat.S_ISDIR(st.st_mode) or (stat.S_ISREG(st.st_mode) and st.st_nlink == 1)
            ):
                continue  # a link, FIFO, device, hard link or mount: never touched
            is_dir = stat.S_ISDIR(st.st_mode)
            try:
                child = os.open(name, DIR_FLAGS if is_dir else FILE_FLAGS, dir_fd=fd)
            except OSError as e:
                problems.append(f"{where}: {e.strerror}")
                continue
            keep = False
            try:
                now = os.fstat(child)
                if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or (
                    not is_dir and now.st_nlink != 1
                ):
                    continue  # replaced (or linked) since the lstat: left alone
                changed += _change(child, now, uid, gid, mode, only_uid)
                if is_dir:
                    if len(stack) >= MAX_DEPTH:
                        problems.append(f"{where}: deeper than {MAX_DEPTH} levels: not entered")
                        continue
                    stack.append((child, where, os.listdir(child)))
                    keep = True
            except OSError as e:
                problems.append(f"{where}: {e.strerror}")
            finally:
                if not keep:
                    os.close(child)
    finally:
        for fd, _path, _names in stack:
            os.close(fd)
    return changed, problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 4 or ":" not in args[1] or args[2] not in ("--from-root", "--all") or (
        args[3] not in MODES
    ):
        print("usage: python3 -m rollcap.reown DIR USER:GROUP --from-root|--all "
              "archive|private", file=sys.stderr)  # fmt: skip
        return 2
    top, owner, which, mode = args
    user, group = owner.split(":", 1)
    try:
        uid, gid = pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid
    except KeyError as e:
        print(f"rollcap reown: no such user or group {e}", file=sys.stderr)
        return 1
    try:
        _n, problems = reown(top, uid, gid, MODES[mode], 0 if which == "--from-root" else None)
    except OSError as e:
        print(f"rollcap reown: {top}: {e.strerror}", file=sys.stderr)
        return 1
    for line in problems:
        print(f"rollcap reown: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
