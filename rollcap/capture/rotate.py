"""`rollcap rotate`: make the running capture cut its current file now.

The capture that holds the spool's lock (see rollcap.capture.lock) gets
SIGUSR2, switches to a new tcpdump (make-before-break: no packet lost) and
hands the file off at once; this command waits for its answer in capture.json.
"""

from __future__ import annotations

import os
import sys
import time

from rollcap.capture import lock
from rollcap.capture.wakeup import ROTATE_SIGNAL
from rollcap.config.schema import RollcapConfig
from rollcap.errors import RollcapError
from rollcap.spool import Spool
from rollcap.spool.state import read_state

EXIT_NOT_RUNNING = 3  # as `rollcap status`


class NotRunning(RollcapError):
    exit_code = EXIT_NOT_RUNNING


def run(cfg: RollcapConfig, timeout: float = 30.0) -> int:
    spool = Spool.at(cfg.spool.directory)
    try:
        h = lock.holder(spool.capture_state)
    except PermissionError:
        raise RollcapError(
            f"cannot read {spool.capture_state}: permission denied (run as root)"
        ) from None
    if h is None or h.pid is None:
        raise NotRunning(f"no rollcap capture is running on {spool.root}")
    asked = time.time()
    try:
        os.kill(h.pid, ROTATE_SIGNAL)
    except PermissionError:
        raise RollcapError(
            f"cannot signal rollcap capture (pid {h.pid}, {h.unit}): permission denied "
            "(run as root)"
        ) from None
    except ProcessLookupError:
        raise NotRunning(f"rollcap capture (pid {h.pid}) has just exited") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = read_state(spool.state_file("capture")) or {}
        last = st.get("last_rotate")
        at = last.get("at") if isinstance(last, dict) else None
        # written after our signal (a second of slack: the clock may step)
        if isinstance(last, dict) and isinstance(at, int | float) and at >= asked - 1.0:
            result = str(last.get("result", "?"))
            if result == "handed off":
                print(f"rollcap: cut the current file: {last.get('last_handoff')}")
                return 0
            if result == "no packets to hand off":
                print("rollcap: cut the current file: it held no packets (nothing to hand off)")
                return 0
            print(f"rollcap: rotate: {result}", file=sys.stderr)
            return 1
        time.sleep(0.1)
    raise RollcapError(
        f"rollcap capture (pid {h.pid}) did not confirm the rotation in {timeout:.0f} s"
    )
