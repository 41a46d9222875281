"""Case 13: something outside the spool fills its filesystem.

The spool is well within spool.max_megabytes; a ballast file next to it (same
filesystem, not in the spool) takes the free space below spool.min_free_percent.
That is not the spool's overage: capture must pause and say so (journal and
capture.json), delete nothing from ready/, and resume once there is room.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.faults.proc import wait_for
from tests.faults.rig import Rig

FS_MB = 64


def _state(spool: Path) -> dict[str, Any]:
    try:
        data = json.loads((spool / "capture" / "capture.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


@pytest.mark.case("13. the spool's filesystem filled from outside the spool")
@pytest.mark.hard_timeout(150)
def test_outside_fill_pauses_and_keeps_ready(rig: Rig, reliability) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    rig.mount_tmpfs(FS_MB)
    fs = rig.spool
    rig.spool = fs / "spool"  # the spool is one directory of the filesystem
    rig.spool.mkdir()
    rig.configure(capture={"rotate_megabytes": 1},
                  spool={"max_megabytes": 40, "min_free_percent": 30})  # fmt: skip
    cap = rig.daemon("capture")
    cap.start()
    rig.wait_capturing(cap)
    rig.replay(loops=4, pps=15000)
    wait_for(lambda: len(rig.ready_files()) >= 3, 30, 0.2, what="files in ready/")
    kept = set(rig.ready_files())
    ballast = fs / "ballast"  # outside the spool: ~45 of 64 MB
    with ballast.open("wb") as f:
        f.write(b"\0" * 45_000_000)
    paused = wait_for(
        lambda: (s := _state(rig.spool)).get("paused") and s, 30, 0.2, what="capture to pause"
    )
    time.sleep(3)  # several budget checks while the disk stays full
    now = set(rig.ready_files())
    st = _state(rig.spool)
    log = cap.text()
    os.unlink(ballast)
    resumed = wait_for(
        lambda: (s := _state(rig.spool)).get("state") == "capturing" and s, 30, 0.2,
        what="capture to resume",
    )  # fmt: skip
    assert cap.stop(timeout=30) == 0, cap.tail()
    reliability.record(
        runs=1, packets_in=rig.replayed, packets_out="n/a (no offload)", lost=len(kept - now),
        duplicated=0,
        notes=f"paused ({paused.get('pause_reason')}) at {st['budget']['free_percent']}% free "
        f"with the spool at {st['budget']['percent_of_budget']}% of its budget; "
        f"{len(kept)} ready files kept, resumed: {resumed.get('state')}",
    )  # fmt: skip
    assert paused["pause_reason"] == "low free space"
    assert kept <= now, f"ready/ files deleted for space the spool did not use: {kept - now}"
    assert st["dropped_files"] == 0
    assert "low free space" in log and "pausing capture" in log
    assert "nothing is deleted for it" in log
