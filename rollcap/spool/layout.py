"""Creating the spool with least-privilege owners and modes (see rollcap/spool/__init__.py).

Packaged, the capture daemon and tcpdump run as one unprivileged user (the
unit's User=, with CAP_NET_RAW only): it owns work/, capture/, ready/ and
quarantine/, and systemd-tmpfiles made them before the start. Started as root
(a foreground run outside the unit), the daemon makes them itself and tcpdump
switches to capture.user (tcpdump -Z), which then owns work/.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from rollcap.errors import ConfigError
from rollcap.journal import fields
from rollcap.spool import Spool
from rollcap.spool.fs import Dir

log = logging.getLogger("rollcap.capture")

ROOT_MODE = 0o751  # the group lists it; others (a -Z user) only pass through
WORK_MODE = 0o2700  # the capture user alone; setgid: tcpdump's files get GROUP
SHARED_MODE = 0o2770  # ready/ quarantine/: capture and offload (GROUP)
STATE_MODE = 0o2750  # capture/: written by capture, read by GROUP (rollcap status)


def resolve_group(name: str) -> int:
    """gid of the spool group; gid 0 with a warning when it does not exist (dev runs)."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        log.warning(
            "spool.group %r does not exist on this machine; finished files get group root "
            "(the offload service cannot read them unless it runs as root)",
            name,
            extra=fields(group=name),
        )
        return 0


def resolve_user(name: str) -> int:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        raise ConfigError(f"capture.user: no such user {name!r} on this machine") from None


def tcpdump_identity(capture_user: str) -> tuple[int, str | None]:
    """(uid tcpdump's files belong to, tcpdump -Z argument or None).

    Not root (the packaged unit): tcpdump runs as this daemon's own user with the
    ambient CAP_NET_RAW, and cannot switch to anyone; capture.user is not used.
    Root: tcpdump drops to capture.user after opening the interface."""
    if os.geteuid() != 0:
        return os.geteuid(), None
    return resolve_user(capture_user), capture_user


@dataclass(frozen=True)
class Identity:
    """Who a running capture's files belong to: tcpdump's uid, its -Z argument
    (tcpdump_identity) and spool.group's gid."""

    uid: int
    switch_user: str | None
    gid: int


def _ensure_dir(path: Path, mode: int, uid: int, gid: int) -> None:
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=False)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        # Change only what differs: under the packaged unit (tmpfiles.d made these
        # right already) the daemon may not set setgid bits (RestrictSUIDSGID=).
        if (st.st_uid, st.st_gid) != (uid, gid) and (os.geteuid() == 0 or st.st_gid != gid):
            if os.geteuid() == 0:
                os.fchown(fd, uid, gid)
            else:
                os.fchown(fd, -1, gid)  # a group we are in (SupplementaryGroups=)
        if stat.S_IMODE(st.st_mode) != mode:
            os.fchmod(fd, mode)  # also sets setgid: new files inherit GROUP
    except OSError as e:
        raise ConfigError(
            f"spool.directory: cannot give {path} mode {mode:04o} and group {gid}: {e.strerror} "
            "(systemd-tmpfiles --create rollcap.conf sets it up as root)"
        ) from None
    finally:
        os.close(fd)


def check_reachable(path: Path, uid: int) -> None:
    """tcpdump runs as uid after dropping root: it must be able to enter every
    directory down to path, or each start fails with "Permission denied"."""
    pw = pwd.getpwuid(uid)
    groups = set(os.getgrouplist(pw.pw_name, pw.pw_gid))
    if uid == os.geteuid():
        groups |= set(os.getgroups())
    for d in [*reversed(path.parents), path]:
        st = d.stat()
        if st.st_uid == uid:
            ok = st.st_mode & 0o100
        elif st.st_gid in groups:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok and uid != 0:
            raise ConfigError(
                f"spool.directory: capture.user {pw.pw_name!r} cannot enter {d} "
                f"(mode {stat.S_IMODE(st.st_mode):04o}), so tcpdump could not write into "
                f"{path}; allow others to pass through it (chmod o+x) or move the spool"
            )


def _check_owned(path: Path, uid: int) -> None:
    """Not root: a directory of ours must really be ours (tmpfiles made it so)."""
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
        raise ConfigError(
            f"spool.directory: {path} must be a directory owned by uid {uid} (this daemon's "
            f"user), not uid {st.st_uid}; run systemd-tmpfiles --create rollcap.conf as root"
        )


def prepare(spool: Spool, tcpdump_uid: int, gid: int) -> None:
    me = os.geteuid()
    try:
        spool.root.parent.mkdir(parents=True, exist_ok=True)
        if me == 0:
            _ensure_dir(spool.root, ROOT_MODE, 0, gid)
        elif not spool.root.is_dir():
            spool.root.mkdir(mode=ROOT_MODE)
        for d, mode, uid in (
            (spool.work, WORK_MODE, tcpdump_uid),
            (spool.capture_state, STATE_MODE, me),
            (spool.ready, SHARED_MODE, me),
            (spool.quarantine, SHARED_MODE, me),
        ):
            _ensure_dir(d, mode, uid, gid)
            if me != 0:
                _check_owned(d, uid)
        if me == 0:  # offload's own; packaged, tmpfiles.d makes them for its user
            for d in (spool.tmp, spool.state):
                _ensure_dir(d, SHARED_MODE, 0, gid)
            # pins (rollcap.keep.pins): root and the group write, capture reads
            _ensure_dir(spool.root / "keep", 0o2770, 0, gid)
        check_reachable(spool.work, tcpdump_uid)
    except PermissionError as e:
        raise ConfigError(
            f"spool.directory: cannot set up {e.filename}: permission denied"
        ) from None


@dataclass
class CaptureDirs:
    """capture's spool directories, open: every entry is reached through these fds."""

    work: Dir
    ready: Dir
    quarantine: Dir
    state: Dir  # capture/

    @classmethod
    def open(cls, spool: Spool) -> CaptureDirs:
        return cls(
            Dir(spool.work), Dir(spool.ready), Dir(spool.quarantine), Dir(spool.capture_state)
        )

    def close(self) -> None:
        for d in (self.work, self.ready, self.quarantine, self.state):
            d.close()
