"""`rollcap rotate`: make the running capture cut its current file now.

The capture that holds the spool's lock (see rollcap.capture.lock) gets
SIGUSR2, switches to a new tcpdump (make-before-break: no packet lost) and
hands the file off at once; this command waits for its answer in capture.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from rollcap import exitcodes
from rollcap.commands import _config
from rollcap.config.schema import RollcapConfig
from rollcap.errors import RollcapError
from rollcap.spool import Spool

HELP = "cut the file being captured now and hand it off (exit 3: not running)"
DESCRIPTION = (
    "Make the running capture daemon cut the file it is writing now and hand it off to "
    "the offload at once (a new tcpdump starts first: no packet is lost), then wait for "
    "its answer. Exit 0 when it is cut, 3 when no capture runs on this spool, 1 otherwise."
)
# `--help` ends with these (and rollcap(8)); tests/unit/test_cli.py parses each
EXAMPLES: tuple[tuple[str, str | None], ...] = (
    ("rollcap rotate", "cut the current file now, before fetching the last minutes"),
    ("rollcap rotate && rollcap fetch --since 5m -w last.pcap", None),
)


class NotRunning(RollcapError):
    exit_code = exitcodes.NOT_RUNNING  # as `rollcap status`


def add_arguments(p: argparse.ArgumentParser) -> None:
    _config.add_config_argument(p)


def run(args: argparse.Namespace) -> int:
    return rotate(_config.load(args))


def rotate(cfg: RollcapConfig, timeout: float = 30.0) -> int:
    from rollcap.capture import lock
    from rollcap.capture.wakeup import ROTATE_SIGNAL
    from rollcap.spool.state import read_state

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
