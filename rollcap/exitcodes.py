"""Every exit status the `rollcap` command uses, in one place.

The man page's EXIT STATUS section and the README's table are generated from
(or checked against) ``DESCRIPTIONS``, so a new code is documented by adding
it here.
"""

from __future__ import annotations

import signal

OK = 0
# Any failure without a more specific code: storage or I/O errors, nothing
# found, a second instance, a rejected `rollcap reload`.
FAILURE = 1
# The command line is wrong (argparse uses 2 as well): a time expression, a BPF
# filter, an output path `fetch` refuses.
USAGE = 2
# `rollcap status`: a daemon is not running (or has exited), as `systemctl
# status` and LSB init scripts say it.
NOT_RUNNING = 3
# `rollcap status`: cannot tell (its state cannot be read, e.g. no permission).
STATUS_UNKNOWN = 4
# `rollcap status`: both run, but one is not doing its job (waiting for the
# interface, paused by the spool budget, destination down, no upload for a
# long time while files wait, stuck).
DEGRADED = 5
# sysexits.h EX_CONFIG; the units use RestartPreventExitStatus=78, so systemd
# does not restart a daemon into the same invalid config.
CONFIG = 78
# 128 + signal number: stopped by a signal (130 = Ctrl-C / SIGINT, 143 = SIGTERM,
# 141 = SIGPIPE: the reader of stdout went away; every command but status, whose
# exit code stays its health: rollcap.cli._reader_went_away).
SIGNAL_BASE = 128
INTERRUPTED = SIGNAL_BASE + 2


def by_signal(signum: int) -> int:
    return SIGNAL_BASE + signum


DESCRIPTIONS: list[tuple[str, str]] = [
    (str(OK), "success; for status: both daemons run and do their job"),
    (str(FAILURE), "an error: storage or I/O failure, nothing found in the window, "
                   "a rejected reload, a second daemon on the same spool"),
    (str(USAGE), "bad command line, e.g. a time expression or an output path that fetch "
                 "refuses"),
    (str(NOT_RUNNING), "status: a daemon is not running"),
    (str(STATUS_UNKNOWN), "status: a daemon's state cannot be read (run as root or as a "
                          "member of the spool group)"),
    (str(DEGRADED), "status: both run, but one does not do its job (waiting for the "
                    "interface, paused by the spool budget, destination down, no upload "
                    "for a long time with files waiting, no state update)"),
    (str(CONFIG), "invalid configuration (systemd does not restart a daemon that exits 78)"),
    ("128+N", f"stopped by signal N ({INTERRUPTED}: Ctrl-C); {by_signal(signal.SIGPIPE)}: "
              "the reader of stdout went away (| head), quietly; status keeps its own code"),
]  # fmt: skip
