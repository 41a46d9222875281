"""quarantine/: entries either daemon refused, each with a reason beside it.

Both daemons put refused entries here by rename between directory fds (never
opening, following or copying them: it works for a symlink, FIFO or directory
as for a file), and the capture daemon keeps the directory within its own cap,
oldest first, each removal logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
from dataclasses import dataclass

from rollcap.spool.fs import OPEN_FLAGS, Dir, Oversized

log = logging.getLogger(__name__)

REASON = ".reason"


def quarantine(src: Dir, name: str, qdir: Dir, reason: str) -> str:
    """Rename src/name into qdir and write ``<name>.reason``; return the new name.
    Raises OSError if it cannot move the entry (FileNotFoundError: it is gone).
    The reason file is a courtesy (the journal has the reason too): if it cannot
    be written (a full disk) it is left out, never half written."""
    base = name
    dest = base
    n = 0
    while qdir.lstat(dest) is not None or qdir.lstat(dest + REASON) is not None:
        n += 1
        dest = f"{base}.{n}"
    src.rename(name, qdir, dest)  # rename works for any file type; no open
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    reason_name = dest + REASON
    try:
        fd = os.open(
            reason_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | OPEN_FLAGS, 0o640, dir_fd=qdir.fd
        )
    except OSError as e:
        log.warning("cannot write %s: %s", qdir.path / reason_name, e.strerror)
        return dest
    try:
        with os.fdopen(fd, "wb", buffering=0) as f:
            f.write(f"{stamp} {base}: {reason}\n".encode(errors="replace"))
    except OSError as e:
        with contextlib.suppress(OSError):
            qdir.unlink(reason_name)
        log.warning("cannot write %s: %s", qdir.path / reason_name, e.strerror)
    return dest


@dataclass(frozen=True)
class Removed:
    name: str
    bytes: int


def enforce_cap(qdir: Dir, max_bytes: int) -> list[Removed]:
    """Remove the oldest entries (by mtime: when they were quarantined... or made)
    until quarantine/ holds at most max_bytes; each with its reason file."""
    entries: list[tuple[float, str, int]] = []
    total = 0
    for e in qdir.scandir():
        try:
            st = e.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        size = st.st_size if not stat.S_ISDIR(st.st_mode) else 0
        total += size
        if not e.name.endswith(REASON):
            entries.append((st.st_mtime, e.name, size))
    removed: list[Removed] = []
    for _mtime, name, size in sorted(entries):
        if total <= max_bytes:
            break
        try:
            qdir.remove_entry(name)
            with contextlib.suppress(FileNotFoundError):
                qdir.unlink(name + REASON)
        except Oversized:
            continue  # a planted tree beyond the walks' caps: spool.fs logged it once
        except OSError as e:
            log.warning("quarantine over its cap: cannot remove %s: %s", name, e.strerror)
            continue
        total -= size
        removed.append(Removed(name, size))
    return removed
