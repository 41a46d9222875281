"""Move a refused file out of ready/ into quarantine/, with a reason beside it."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)


def quarantine(ready_path: Path, quarantine_dir: Path, reason: str) -> Path:
    """Rename ready_path into quarantine_dir (never following or opening it) and
    write ``<name>.reason``; return the new path. Raises OSError if it cannot
    move the file. The reason file is a courtesy (the journal has the reason
    too): if it cannot be written (a full disk) it is left out, never half written."""
    base = ready_path.name
    dest = quarantine_dir / base
    n = 0
    while os.path.lexists(dest) or os.path.lexists(f"{dest}.reason"):
        n += 1
        dest = quarantine_dir / f"{base}.{n}"
    os.rename(ready_path, dest)  # rename works for any file type; no open
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    reason_path = f"{dest}.reason"
    try:
        fd = os.open(
            reason_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640
        )
    except OSError as e:
        log.warning("cannot write %s: %s", reason_path, e.strerror)
        return dest
    try:
        with os.fdopen(fd, "wb", buffering=0) as f:
            f.write(f"{stamp} {base}: {reason}\n".encode(errors="replace"))
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(reason_path)
        log.warning("cannot write %s: %s", reason_path, e.strerror)
    return dest
