"""The package's upgrade from 0.1.0 (run by postinst as root): the spool's files
move to the owners of the unprivileged layout (rollcap/spool.py). Nothing is
deleted: every capture in work/, ready/ and quarantine/ is kept.

0.1.0 ran capture as root and tcpdump as user tcpdump, with capture's counters
in state/. Now work/, ready/, quarantine/ and capture/ belong to rollcap-capture,
tmp/ and state/ to rollcap (the directories themselves: tmpfiles.d). Every
entry is reached through directory fds and never followed: work/ was writable
by tcpdump's user, who may have left links there. Only plain files with one
link change owner; anything else is left for the daemons, which quarantine it.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import sys
from pathlib import Path

from rollcap.errors import RollcapError
from rollcap.spool import Spool
from rollcap.spoolfs import BadEntry, Dir

CAPTURE_USER = "rollcap-capture"
COUNTERS = "capture-counters.json"


def _adopt(d: Dir, uid: int, gid: int, mode: int) -> int:
    """chown/chmod every plain file of d by fd; the number changed."""
    n = 0
    for name in d.names():
        try:
            fd = d.open(name, None)
        except (BadEntry, FileNotFoundError):
            continue
        try:
            st = os.fstat(fd)
            if (st.st_uid, st.st_gid) != (uid, gid):
                os.fchown(fd, uid, gid)
                n += 1
            if st.st_mode & 0o7777 != mode:
                os.fchmod(fd, mode)
        finally:
            os.close(fd)
    return n


def migrate(spool: Spool, capture_uid: int, gid: int) -> list[str]:
    """What was done, one line each."""
    done: list[str] = []
    if not spool.root.is_dir():
        return done
    with contextlib.suppress(FileExistsError):
        spool.capture_state.mkdir(mode=0o750)
    state_dir = Dir(spool.capture_state)
    try:
        os.fchown(state_dir.fd, capture_uid, gid)
        with contextlib.suppress(FileNotFoundError), Dir(spool.state) as old_state:
            st = old_state.lstat(COUNTERS)
            if st is not None and state_dir.lstat(COUNTERS) is None:
                old_state.rename(COUNTERS, state_dir, COUNTERS)
                done.append(f"moved state/{COUNTERS} to capture/")
            with contextlib.suppress(FileNotFoundError):
                old_state.unlink("capture.json")  # 0.1.0's; capture writes capture/ now
        for d, mode in ((spool.work, 0o640), (spool.ready, 0o640), (spool.quarantine, 0o640),
                        (spool.capture_state, 0o640)):  # fmt: skip
            try:
                with Dir(d) as opened:
                    if n := _adopt(opened, capture_uid, gid, mode):
                        done.append(f"{n} file(s) in {d.name}/ now {CAPTURE_USER}'s")
            except FileNotFoundError:
                continue
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
    try:
        for line in migrate(Spool.at(root), uid, gid):
            print(f"rollcap: {root}: {line}", file=sys.stderr)
    except (OSError, RollcapError) as e:
        print(f"rollcap upgrade: {root}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
