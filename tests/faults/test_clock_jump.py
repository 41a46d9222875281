"""Case 9: the wall clock jumps back one hour, then forward two, while capturing.

A small LD_PRELOAD shim (clockshift.c, compiled here with gcc) shifts
CLOCK_REALTIME, time() and gettimeofday() of the capture daemon and its
tcpdump by the seconds written in a file; the monotonic clock and sleeps are
left alone, as in a real clock step. (libfaketime 0.9.10 was tried first: with
a negative offset and FAKETIME_DONT_FAKE_MONOTONIC=1 Python's time.sleep fails
with EINVAL, and faking the monotonic clock too would test a clock no kernel
has.) Packet timestamps come from the kernel and are not shifted. ready/ names
must stay unique, and sorting them must give the order of hand-off.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.faults.checks import account
from tests.faults.rig import Rig

SHIM = Path(__file__).with_name("clockshift.c")


@pytest.mark.case("9. clock steps -1 h, then +2 h, while capturing")
@pytest.mark.hard_timeout(150)
def test_clock_jump_names_unique_and_sorted(rig: Rig, tmp_path: Path, reliability) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to build the clock shim (build-essential)")
    lib = tmp_path / "clockshift.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(lib), str(SHIM), "-ldl"],
                   check=True)  # fmt: skip
    clock = tmp_path / "clockshift"
    clock.write_text("0\n")
    env = {"LD_PRELOAD": str(lib), "CLOCKSHIFT_FILE": str(clock)}
    rig.configure(capture={"rotate_megabytes": 1, "rotate_seconds": 10})
    cap = rig.daemon("capture", env=env)
    off = rig.daemon("offload")
    cap.start()
    rig.wait_capturing(cap)
    rig.watch()
    off.start()
    rig.replay(loops=2, pps=10000)
    time.sleep(1.5)
    clock.write_text("-3600\n")
    rig.replay(loops=2, pps=10000)
    time.sleep(12)  # a time rotation under the stepped-back clock
    clock.write_text("3600\n")
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
        notes=f"{acc.files()}; names {names[0][:24]} .. {names[-1][:24]}" if names else "no files",
    )  # fmt: skip
    assert len(names) >= 4
    assert len(set(names)) == len(names), "a name was used twice"
    assert names == sorted(names), f"hand-off order is not name order:\n{names}"
    assert len(set(keys)) == len(keys) == acc.objects
    assert not acc.problems, "\n".join(acc.problems)
    assert acc.lost == 0 and acc.duplicated == 0
