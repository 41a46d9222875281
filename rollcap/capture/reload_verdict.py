"""The answer to a reload: accepted or rejected, so `systemctl reload` can fail.

SIGHUP carries no reply, so the capture daemon writes its verdict after each
reload into ``capture/capture-reload.json``, beside capture.json (atomically:
seq, ok, message, pid, updated). `rollcap reload` (the unit's ExecReload) reads the seq, sends
SIGHUP, waits for a newer verdict from that pid and exits 0 or 1 with the
daemon's message: a rejected config makes `systemctl reload` fail instead of
printing nothing and keeping the old config in silence.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from rollcap.errors import RollcapError
from rollcap.spool.state import read_state, write_state

log = logging.getLogger("rollcap.capture")

NAME = "capture-reload.json"
# Well inside systemd's reload timeout (TimeoutStartSec=, 90 s by default); a
# reload takes a filter check (at most 10 s) and a switch (at most ~12 s).
WAIT_SECONDS = 60.0


def path_in(state_dir: Path) -> Path:
    return state_dir / NAME


def _seq(v: dict[str, Any] | None) -> int:
    seq = v.get("seq") if v else None
    return seq if isinstance(seq, int) else 0


def record(state_dir: Path, ok: bool, message: str) -> None:
    """Daemon side: the verdict of the reload just done. A full disk costs only
    the answer (the client then times out), never the reload itself."""
    p = path_in(state_dir)
    try:
        write_state(p, {"seq": _seq(read_state(p)) + 1, "ok": ok, "message": message})
    except OSError as e:
        log.warning("cannot write the reload verdict %s: %s", p, e.strerror or e)


class ReloadRejected(RollcapError):
    """The daemon kept its running configuration (exit 1)."""


def request(pid: int, state_dir: Path, timeout: float = WAIT_SECONDS) -> str:
    """Client side: SIGHUP pid, wait for its verdict; the message, or ReloadRejected."""
    p = path_in(state_dir)
    before = _seq(read_state(p))
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise RollcapError(f"reload: no process {pid}") from None
    except PermissionError:
        raise RollcapError(f"reload: not allowed to signal process {pid} (run as root)") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = read_state(p)
        if v is not None and _seq(v) != before and v.get("pid") == pid:
            msg = str(v.get("message") or "")
            if v.get("ok") is True:
                return msg
            raise ReloadRejected(msg or "reload rejected")
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise RollcapError(f"reload: capture (pid {pid}) exited before answering") from None
        except PermissionError:
            pass
        time.sleep(0.1)
    raise RollcapError(
        f"reload: no answer from capture (pid {pid}) within {timeout:.0f} s in {p}; "
        "a changed spool.directory needs a restart"
    )
