"""Creating the spool with least-privilege owners and modes.

root/        0751 root:GROUP   offload (in GROUP) may list it; others, tcpdump's
             user among them, may only pass through to work/
work/        2770 USER:GROUP   tcpdump writes here after dropping to USER
ready/ quarantine/ tmp/ state/  2770 root:GROUP  offload reads and deletes
Finished files are 0640 root:GROUP: never world-readable.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
import stat
from pathlib import Path

from rollcap.errors import ConfigError
from rollcap.journal import fields
from rollcap.spool import Spool

log = logging.getLogger("rollcap.capture")


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


def _ensure_dir(path: Path, mode: int, uid: int, gid: int) -> None:
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=False)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"spool.directory: {path} is not a directory")
    # Change only what differs: under the packaged unit (tmpfiles.d made these
    # right already) root holds no CAP_FOWNER and may not set setgid bits.
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid)
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)  # also sets setgid: new files inherit GROUP


def check_reachable(path: Path, uid: int) -> None:
    """tcpdump runs as uid after dropping root: it must be able to enter every
    directory down to path, or each start fails with "Permission denied"."""
    pw = pwd.getpwuid(uid)
    groups = set(os.getgrouplist(pw.pw_name, pw.pw_gid))
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


def prepare(spool: Spool, tcpdump_uid: int, gid: int) -> None:
    try:
        spool.root.parent.mkdir(parents=True, exist_ok=True)
        _ensure_dir(spool.root, 0o751, 0, gid)
        _ensure_dir(spool.work, 0o2770, tcpdump_uid, gid)
        for d in (spool.ready, spool.quarantine, spool.tmp, spool.state):
            _ensure_dir(d, 0o2770, 0, gid)
        check_reachable(spool.work, tcpdump_uid)
    except PermissionError as e:
        raise ConfigError(
            f"spool.directory: cannot set up {e.filename}: permission denied"
        ) from None
