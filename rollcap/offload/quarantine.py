"""Move a refused file out of ready/ into quarantine/, with a reason beside it."""

from __future__ import annotations

import os
import time
from pathlib import Path


def quarantine(ready_path: Path, quarantine_dir: Path, reason: str) -> Path:
    """Rename ready_path into quarantine_dir (never following or opening it) and
    write ``<name>.reason``; return the new path. Raises OSError if it cannot."""
    base = ready_path.name
    dest = quarantine_dir / base
    n = 0
    while os.path.lexists(dest) or os.path.lexists(f"{dest}.reason"):
        n += 1
        dest = quarantine_dir / f"{base}.{n}"
    os.rename(ready_path, dest)  # rename works for any file type; no open
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    fd = os.open(
        f"{dest}.reason", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640
    )
    with os.fdopen(fd, "w") as f:
        f.write(f"{stamp} {base}: {reason}\n")
    return dest
