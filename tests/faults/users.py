"""The package's two daemon users, stood in for by users every Debian has: tcpdump's
user for rollcap-capture (its own group), nobody for rollcap, nogroup for the
spool group; the spool laid out for them as debian/rollcap.tmpfiles does, and
entries planted as each of them (cases 12 and 13)."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import textwrap
from pathlib import Path

CAPTURE_USER, OFFLOAD_USER, GROUP = "tcpdump", "nobody", "nogroup"
NET_RAW = ["--inh-caps=-all,+net_raw", "--ambient-caps=-all,+net_raw",
           "--bounding-set=-all,+net_raw"]  # fmt: skip
NO_CAPS = ["--inh-caps=-all", "--bounding-set=-all"]


def setpriv(user: str, caps: list[str]) -> list[str]:
    pw = pwd.getpwnam(user)
    return ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", *caps]


def layout(spool: Path) -> None:
    """As debian/rollcap.tmpfiles makes it, with these users."""
    cap, off = pwd.getpwnam(CAPTURE_USER).pw_uid, pwd.getpwnam(OFFLOAD_USER).pw_uid
    gid = int(subprocess.run(["getent", "group", GROUP], capture_output=True, text=True,
                             check=True).stdout.split(":")[2])  # fmt: skip
    os.chown(spool, 0, gid)
    os.chmod(spool, 0o751)
    for name, mode, uid in (("work", 0o2700, cap), ("capture", 0o2750, cap),
                            ("ready", 0o2770, cap), ("quarantine", 0o2770, cap),
                            ("tmp", 0o2750, off), ("state", 0o2750, off)):  # fmt: skip
        d = spool / name
        d.mkdir()
        os.chown(d, uid, gid)
        os.chmod(d, mode)  # after chown, which clears setgid


def plant(user: str, script: str) -> None:
    r = subprocess.run([*setpriv(user, NO_CAPS), sys.executable, "-c", textwrap.dedent(script)],
                       capture_output=True, text=True, timeout=30)  # fmt: skip
    assert r.returncode == 0, f"planting as {user} failed: {r.stderr}"
