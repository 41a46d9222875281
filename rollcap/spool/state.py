"""Small JSON state files shared between a daemon and `rollcap status`.

Written atomically (temp file + rename in the same directory) so a reader
never sees half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def state_dir(spool_directory: str | os.PathLike[str]) -> Path:
    return Path(spool_directory) / "state"


def write_state(path: Path, data: dict[str, Any]) -> None:
    data = {**data, "updated": time.time(), "pid": os.getpid()}
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True, default=str)
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_state(path: Path) -> dict[str, Any] | None:
    try:
        with path.open() as f:
            data = json.load(f)
    except (FileNotFoundError, PermissionError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
