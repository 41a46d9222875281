"""What `rollcap list` adds about this host: captures not in the archive yet.

The file tcpdump is writing now (until it is cut: rotate_seconds, or `rollcap
rotate`) and finished files still waiting in ready/ for offload."""

from __future__ import annotations

import time

from rollcap.capture import lock
from rollcap.config.schema import RollcapConfig
from rollcap.spool import Spool
from rollcap.spool.readyname import ReadyName
from rollcap.spool.state import read_state


def local_notes(cfg: RollcapConfig) -> list[str]:
    spool = Spool.at(cfg.spool.directory)
    notes: list[str] = []
    try:
        running = lock.holder(spool.capture_state) is not None
    except OSError:
        running = False
    st = read_state(spool.state_file("capture")) or {}
    active, since = st.get("active_file"), st.get("active_since")
    if running and isinstance(active, str):
        when = ""
        if isinstance(since, int | float):
            when = time.strftime(" since %Y-%m-%d %H:%M:%S UTC", time.gmtime(since))
        notes.append(
            f"still open on this host: {active[:200]!r}{when}, not listed until it is cut "
            "(`rollcap rotate` hands it off now)"
        )
    try:
        waiting = [n for n in spool.ready.iterdir() if ReadyName.parse(n.name)]
    except OSError:
        waiting = []
    if waiting:
        notes.append(
            f"{len(waiting)} finished file(s) on this host wait in {spool.ready} for upload"
        )
    return notes
