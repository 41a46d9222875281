"""Case 9: the wall clock jumps back one hour, then forward two, while capturing.

libfaketime (LD_PRELOAD, a timestamp file re-read on every call) moves the
clock of the capture daemon and its tcpdump only; the monotonic clock is left
alone, as a real clock step would. Packet timestamps come from the kernel and
are not faked. Ready/ names must stay unique, and sorting them must give the
order in which they were handed off.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.faults.checks import account
from tests.faults.rig import Rig

LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


@pytest.mark.case("9. clock jumps (faketime): -1 h, then +2 h")
@pytest.mark.hard_timeout(150)
def test_clock_jump_names_unique_and_sorted(rig: Rig, tmp_path: Path, reliability) -> None:  # type: ignore[no-untyped-def]
    if not LIB.exists() or shutil.which("faketime") is None:
        pytest.fail("faketime is not installed (.ci/run installs it)")
    clock = tmp_path / "faketime"
    clock.write_text("+0\n")
    env = {
        "LD_PRELOAD": str(LIB),
        "FAKETIME_TIMESTAMP_FILE": str(clock),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    rig.configure(capture={"rotate_megabytes": 1, "rotate_seconds": 10})
    cap = rig.daemon("capture", env=env)
    off = rig.daemon("offload")
    cap.start()
    rig.wait_capturing(cap)
    rig.watch()
    off.start()
    rig.replay(loops=2, pps=10000)
    time.sleep(1.5)
    clock.write_text("-1h\n")
    rig.replay(loops=2, pps=10000)
    time.sleep(12)  # a time rotation under the stepped-back clock
    clock.write_text("+2h\n")
    rig.replay(loops=2, pps=10000)
    time.sleep(1.5)
    assert cap.stop(timeout=30) == 0, cap.tail()
    rig.wait_drained(90)
    assert off.stop() == 0, off.tail()
    w = rig.watcher
    assert w is not None
    names = w.order_of_appearance()
    acc = account(rig, capture_log=cap.text())
    keys = sorted(o.key for o in rig.bucket().objects)
    reliability.record(
        runs=1, **acc.row(),
        notes=f"{len(names)} files; names: {names[0]} .. {names[-1]}" if names else "no files",
    )  # fmt: skip
    assert len(names) >= 4
    assert len(set(names)) == len(names), "a name was used twice"
    assert names == sorted(names), f"hand-off order is not name order:\n{names}"
    assert len(set(keys)) == len(keys) == acc.objects
    assert not acc.problems, "\n".join(acc.problems)
    assert acc.lost == 0 and acc.duplicated == 0
