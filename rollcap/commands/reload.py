"""`rollcap reload` (the capture unit's ExecReload): SIGHUP the capture daemon and
wait for its verdict (rollcap.capture.reload), so a rejected config
makes `systemctl reload` fail with the reason instead of keeping the old config
in silence."""

from __future__ import annotations

import argparse
import os
import signal
import time
from pathlib import Path

from rollcap.commands import _config
from rollcap.config.schema import RollcapConfig
from rollcap.errors import RollcapError
from rollcap.spool import Spool

# Well inside systemd's reload timeout (TimeoutStartSec=, 90 s by default); a
# reload takes a filter check (at most 10 s) and a switch (at most ~12 s).
WAIT_SECONDS = 60.0

HELP = (
    "make the capture daemon re-read the config and wait for its verdict: exit 1 "
    "when it rejects the file and keeps capturing as before (the unit's ExecReload)"
)
DESCRIPTION = (
    "Send SIGHUP to the capture daemon and wait for its verdict on the config file. "
    "Exit 0 with its message when it took the file (an unchanged file cuts the current "
    "file, as rollcap rotate); exit 1 with the reason when it rejected it and goes on "
    "capturing as before. A changed spool.directory needs a restart."
)
# `--help` ends with these (and rollcap(8)); tests/unit/test_cli.py parses each
EXAMPLES: tuple[tuple[str, str | None], ...] = (
    ("rollcap reload", "re-read /etc/rollcap.toml; exit 1 with the reason if refused"),
    ("rollcap reload --timeout 30", None),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    _config.add_config_argument(p)
    p.add_argument("--pid", type=int, help="the daemon's pid (default: $MAINPID, else its state)")
    p.add_argument("--timeout", type=float, default=WAIT_SECONDS, metavar="SECONDS",
                   help="how long to wait for the verdict (default: 60)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    cfg = _config.load_for_reading(args, warn=False)  # the daemon's verdict says it
    state_dir = Spool.at(cfg.spool.directory).capture_state
    print(request(_capture_pid(args, cfg), state_dir, args.timeout))
    return 0


def _capture_pid(args: argparse.Namespace, cfg: RollcapConfig) -> int:
    """--pid, systemd's $MAINPID (set for ExecReload), or the pid in capture.json."""
    from rollcap.spool.state import read_state

    if args.pid:
        return int(args.pid)
    main_pid = os.environ.get("MAINPID", "")
    if main_pid.isdigit() and int(main_pid) > 0:
        return int(main_pid)
    st = read_state(Spool.at(cfg.spool.directory).state_file("capture"))
    pid = st.get("pid") if st else None
    if not isinstance(pid, int) or st is None or st.get("state") == "stopped":
        raise RollcapError("reload: no running capture daemon found (give --pid)")
    return pid


class ReloadRejected(RollcapError):
    """The daemon kept its running configuration (exit 1)."""


def request(pid: int, state_dir: Path, timeout: float = WAIT_SECONDS) -> str:
    """SIGHUP pid, wait for its verdict; the message, or ReloadRejected."""
    from rollcap.capture.reload import path_in, seq
    from rollcap.spool.state import read_state

    p = path_in(state_dir)
    before = seq(read_state(p))
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise RollcapError(f"reload: no process {pid}") from None
    except PermissionError:
        raise RollcapError(f"reload: not allowed to signal process {pid} (run as root)") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = read_state(p)
        if v is not None and seq(v) != before and v.get("pid") == pid:
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
