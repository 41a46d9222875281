"""The answer to a reload: accepted or rejected, so `systemctl reload` can fail.

SIGHUP carries no reply, so the capture daemon writes its verdict after each
reload into ``capture/capture-reload.json``, beside capture.json (atomically:
seq, ok, message, pid, updated). `rollcap reload` (the unit's ExecReload;
rollcap.commands.reload) reads the seq, sends SIGHUP, waits for a newer verdict
from that pid and exits 0 or 1 with the daemon's message: a rejected config
makes `systemctl reload` fail instead of printing nothing and keeping the old
config in silence.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from rollcap.spool.state import read_state, write_state

log = logging.getLogger("rollcap.capture")

NAME = "capture-reload.json"


def path_in(state_dir: Path) -> Path:
    return state_dir / NAME


def seq(v: dict[str, Any] | None) -> int:
    """The verdict's number (0: none yet); `rollcap reload` waits for a newer one."""
    n = v.get("seq") if v else None
    return n if isinstance(n, int) else 0


def record(state_dir: Path, ok: bool, message: str) -> None:
    """Daemon side: the verdict of the reload just done. A full disk costs only
    the answer (the client then times out), never the reload itself."""
    p = path_in(state_dir)
    try:
        write_state(p, {"seq": seq(read_state(p)) + 1, "ok": ok, "message": message})
    except OSError as e:
        log.warning("cannot write the reload verdict %s: %s", p, e.strerror or e)
