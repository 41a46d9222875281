"""The package's upgrade from 0.1.0 (run by postinst as root): the spool's files
move to the owners of the unprivileged layout (rollcap/spool/__init__.py). Nothing is
deleted: every capture in work/, ready/ and quarantine/ is kept.

0.1.0 ran capture as root and tcpdump as user tcpdump, with capture's counters
in state/. Now work/, ready/, quarantine/ and capture/ belong to rollcap-capture,
tmp/ and state/ to rollcap (the directories themselves: tmpfiles.d). By the
time this runs, rollcap (offload, maybe running) can write state/, ready/ and
quarantine/, and tcpdump's user may have left anything in work/. So every entry
is reached through directory fds, never followed, and adopted only when it is
a regular file with one link owned by one of 0.1.0's users (root, tcpdump's):

- root's that no one else may write (0.1.0's capture, stopped) change owner
  through the checked fd;
- any other (tcpdump's, or root's but group- or world-writable) is copied into
  a new file of the capture user's, which then replaces the name: another
  process may hold the old file open for writing, and must not end up with a
  write fd on a capture user's file;
- state/capture-counters.json is copied (never moved: rollcap may have planted
  it) into capture/, only when it is root's.

Anything else (a link, directory, FIFO, hard link, a file of rollcap's or of
another user) is left as it is with one line; the daemons quarantine it.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import stat
import sys
from pathlib import Path

from rollcap.errors import RollcapError
from rollcap.spool import Spool
from rollcap.spool.fs import BadEntry, Dir, is_no_space

CAPTURE_USER = "rollcap-capture"
OLD_TCPDUMP_USER = "tcpdump"  # 0.1.0's tcpdump -Z user (Debian's default)
COUNTERS = "capture-counters.json"
COUNTERS_LIMIT = 64 * 1024  # a few numbers in JSON; anything bigger is not ours
MODE = 0o640


def _copy_fd(src: int, dst: int) -> None:
    offset = 0
    while True:
        try:
            n = os.copy_file_range(src, dst, 1 << 24, offset)
        except OSError:  # not between these filesystems: plain reads
            os.lseek(src, offset, os.SEEK_SET)
            while chunk := os.read(src, 1 << 20):
                os.write(dst, chunk)
            return
        if n == 0:
            return
        offset += n


def _replace_with_copy(d: Dir, name: str, src: int, st: os.stat_result, uid: int,
                       gid: int) -> None:  # fmt: skip
    """A new file of uid:gid with src's bytes and times takes name's place."""
    fd, tmp = d.create_temp("." + name + ".", ".upgrade", MODE)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, MODE)
        _copy_fd(src, fd)
        os.fsync(fd)  # captures: never a half copy in place of the original
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))  # drop-oldest, quarantine cap
        now = d.lstat(name)
        if now is None or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise BadEntry("replaced while being copied")
        d.rename(tmp, d, name)
    except BaseException:
        with contextlib.suppress(OSError):
            d.unlink(tmp)
        raise
    finally:
        os.close(fd)


def _adopt(d: Dir, uid: int, gid: int, old_uids: set[int]) -> tuple[int, list[str]]:
    """Give d's plain files of old_uids to uid:gid (see the module's docstring);
    (the number changed, one line per entry left as it is)."""
    n = 0
    left: list[str] = []
    for name in d.names():
        if name.endswith(".upgrade") and name.startswith("."):
            continue  # a copy of ours in the making (an earlier, interrupted run)
        st = d.lstat(name)
        if st is None or (st.st_uid == uid and stat.S_ISREG(st.st_mode)):
            continue  # gone, or the capture user's own already
        try:
            fd = d.open(name, old_uids)
        except FileNotFoundError:
            continue
        except BadEntry as e:
            left.append(f"{d.path.name}/{name}: {e}: left as it is")
            continue
        try:
            fst = os.fstat(fd)
            if fst.st_uid == 0 and not fst.st_mode & 0o022:
                # only root could have opened it for writing: 0.1.0's capture, stopped
                os.fchown(fd, uid, gid)
                os.fchmod(fd, MODE)
            else:
                _replace_with_copy(d, name, fd, fst, uid, gid)
            n += 1
        except BadEntry as e:
            left.append(f"{d.path.name}/{name}: {e}: left as it is")
        except OSError as e:
            if not is_no_space(e):
                raise
            left.append(f"{d.path.name}/{name}: no space to copy it: left as it is")
        finally:
            os.close(fd)
    return n, left


def _copy_counters(old_state: Dir, state_dir: Dir, uid: int, gid: int) -> str | None:
    """state/capture-counters.json (0.1.0's, root's) copied into capture/."""
    if state_dir.lstat(COUNTERS) is not None:
        return None  # capture has its own
    try:
        fd = old_state.open(COUNTERS, {0})
    except FileNotFoundError:
        return None
    except BadEntry as e:
        return f"state/{COUNTERS}: {e}: not used (capture starts its counters anew)"
    try:
        st = os.fstat(fd)
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(COUNTERS_LIMIT + 1)
    finally:
        os.close(fd)
    if len(data) > COUNTERS_LIMIT:
        return f"state/{COUNTERS}: larger than {COUNTERS_LIMIT} bytes: not used"
    new, tmp = state_dir.create_temp("." + COUNTERS + ".", ".tmp", MODE)
    try:
        with os.fdopen(new, "wb") as f:
            os.fchown(f.fileno(), uid, gid)
            os.fchmod(f.fileno(), MODE)
            f.write(data)
        state_dir.rename(tmp, state_dir, COUNTERS)
    except BaseException:
        with contextlib.suppress(OSError):
            state_dir.unlink(tmp)
        raise
    old_state.unlink_if_same(COUNTERS, st)
    return f"copied state/{COUNTERS} to capture/"


def _remove_old_state(old_state: Dir) -> None:
    """0.1.0's state/capture.json (capture writes capture/ now), if it is root's."""
    st = old_state.lstat("capture.json")
    if st is not None and stat.S_ISREG(st.st_mode) and st.st_uid == 0:
        old_state.unlink_if_same("capture.json", st)


def migrate(spool: Spool, capture_uid: int, gid: int,
            old_uids: set[int] | None = None) -> list[str]:  # fmt: skip
    """What was done, one line each. old_uids: 0.1.0's owners (root, tcpdump's)."""
    old = {0} if old_uids is None else old_uids | {0}
    old.discard(capture_uid)
    done: list[str] = []
    if not spool.root.is_dir():
        return done
    with contextlib.suppress(FileExistsError):
        spool.capture_state.mkdir(mode=0o750)  # in the spool's root: root's alone
    state_dir = Dir(spool.capture_state)
    try:
        os.fchown(state_dir.fd, capture_uid, gid)
        with contextlib.suppress(FileNotFoundError), Dir(spool.state) as old_state:
            if line := _copy_counters(old_state, state_dir, capture_uid, gid):
                done.append(line)
            _remove_old_state(old_state)
        for d in (spool.work, spool.ready, spool.quarantine, spool.capture_state):
            try:
                with Dir(d) as opened:
                    n, left = _adopt(opened, capture_uid, gid, old)
            except FileNotFoundError:
                continue
            if n:
                done.append(f"{n} file(s) in {d.name}/ now {CAPTURE_USER}'s")
            done += left
    finally:
        state_dir.close()
    return done


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0] if args else "/var/spool/rollcap")
    try:
        uid = pwd.getpwnam(CAPTURE_USER).pw_uid
        gid = grp.getgrnam(args[1] if len(args) > 1 else "rollcap").gr_gid
    except KeyError as e:
        print(f"rollcap upgrade: no such user or group {e}", file=sys.stderr)
        return 1
    old_uids = {0}
    with contextlib.suppress(KeyError):
        old_uids.add(pwd.getpwnam(OLD_TCPDUMP_USER).pw_uid)
    try:
        for line in migrate(Spool.at(root), uid, gid, old_uids):
            print(f"rollcap: {root}: {line}", file=sys.stderr)
    except (OSError, RollcapError) as e:
        print(f"rollcap upgrade: {root}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
