"""Case 9: the wall clock steps back one hour, then forward two, while capturing.

A small LD_PRELOAD shim (clockshift.c, compiled here with gcc) shifts
CLOCK_REALTIME, time() and gettimeofday() of the capture daemon and its
tcpdump by the seconds written in a file; the monotonic clock and sleeps are
left alone, as in a real clock step. (libfaketime 0.9.10 was tried first: with
a negative offset and FAKETIME_DONT_FAKE_MONOTONIC=1 Python's time.sleep fails
with EINVAL, and faking the monotonic clock too would test a clock no kernel
has.)

Limit of the method: the kernel's packet timestamps are not shifted (only a
real `date -s` would do that, and this machine is shared). rollcap's overlap
de-duplication compares the wall clock with packet times, which agree after a
real step but not here, so no traffic is sent while a make-before-break
switch may be running (the 4 s after each step).

Checked: ready/ names stay unique and sort in hand-off order; after the step
back, a file still reaches ready/ within rotate_seconds + 5 s (issue 3's
quiet-link promise, which tcpdump -G alone breaks: it compares time() with
the time of its last rotation); every packet arrives once.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.faults.checks import account
from tests.faults.proc import wait_for
from tests.faults.rig import Rig

SHIM = Path(__file__).with_name("clockshift.c")


@pytest.mark.case("9. clock steps -1 h, then +2 h, while capturing")
@pytest.mark.hard_timeout(150)
def test_clock_jump_names_unique_and_sorted(
    rig: Rig, request: pytest.FixtureRequest, reliability
) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to build the clock shim (build-essential)")
    # tcpdump reads the clock file after dropping to its user, and capture
    # starts it with a clean environment: a world-readable directory and a
    # wrapper as capture.tcpdump_path carry the shim over.
    shared = Path(tempfile.mkdtemp(prefix="rollcap-faults-clock-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(shared, ignore_errors=True))
    shared.chmod(0o755)
    lib = shared / "clockshift.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(lib), str(SHIM), "-ldl"],
                   check=True)  # fmt: skip
    clock = shared / "clockshift"
    clock.write_text("0\n")
    clock.chmod(0o644)
    env = {"LD_PRELOAD": str(lib), "CLOCKSHIFT_FILE": str(clock)}
    wrapper = shared / "tcpdump"
    wrapper.write_text(
        f"#!/bin/sh\nexport LD_PRELOAD={lib} CLOCKSHIFT_FILE={clock}\n"
        f'exec {shutil.which("tcpdump")} "$@"\n'
    )
    wrapper.chmod(0o755)
    rotate = 10
    # rotate_align off: aligned cuts are switches at every boundary, also during the
    # replays, and the shim shifts the wall clock but not packet times (see above),
    # which a real step does; the -G path is what this case checks
    rig.configure(capture={"rotate_megabytes": 1, "rotate_seconds": rotate,
                           "tcpdump_path": str(wrapper), "rotate_align": False})  # fmt: skip
    cap = rig.daemon("capture", env=env)
    off = rig.daemon("offload")
    cap.start()
    rig.wait_capturing(cap)
    w = rig.watch()
    off.start()
    rig.replay(loops=2, pps=10000)
    time.sleep(1.5)
    clock.write_text("-3600\n")  # step back one hour
    time.sleep(4)
    seen = len(w.history)
    # 200 packets: far less than a -C file, so only a time rotation hands them off
    assert rig.veth is not None
    subprocess.run(["tcpreplay", "-q", f"--intf1={rig.veth.a}", "--pps=10000", "--limit=200",
                    str(rig.pcap)], check=True, capture_output=True)  # fmt: skip
    rig.replayed += 200
    t_sent = time.monotonic()
    handed = True
    try:
        wait_for(lambda: len(w.history) > seen, rotate + 5 + 3, 0.2, what="a hand-off")
    except AssertionError:
        handed = False
    after_back = time.monotonic() - t_sent
    clock.write_text("3600\n")  # step forward two hours
    time.sleep(4)
    rig.replay(loops=2, pps=10000)
    time.sleep(1.5)
    assert cap.stop(timeout=30) == 0, cap.tail()
    rig.wait_drained(90)
    assert off.stop() == 0, off.tail()
    w = rig.watcher
    assert w is not None
    names = w.order_of_appearance()
    acc = account(rig, capture_log=cap.text(), offload_log=off.text())
    keys = sorted(o.key for o in rig.bucket().objects)
    reliability.record(
        runs=2, **acc.row(),
        notes=f"{acc.files()}; after the step back the next hand-off came "
        + (f"{after_back:.0f} s after the traffic" if handed else f"not within {after_back:.0f} s"),
    )  # fmt: skip
    assert handed, (
        f"no file reached ready/ {after_back:.0f} s after traffic under a clock stepped back "
        f"by 1 h (promise: rotate_seconds + 5 = {rotate + 5} s)"
    )
    assert len(names) >= 4
    assert len(set(names)) == len(names), "a name was used twice"
    assert names == sorted(names), f"hand-off order is not name order:\n{names}"
    assert len(set(keys)) == len(keys) == acc.objects
    assert not acc.problems, "\n".join(acc.problems)
    assert acc.lost == 0 and acc.duplicated == 0
