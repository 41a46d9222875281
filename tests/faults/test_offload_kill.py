"""Case 1: kill -9 the offload at random moments during uploads, restart it each time.

Every packet arrives exactly once; no ready/ file disappears before an object
holding it is listed (the watcher lists the bucket the moment a file goes);
no cut-off, unreadable or duplicate object; no multipart upload left behind.
"""

from __future__ import annotations

import os
import random
import re
import time
from datetime import UTC, datetime

import pytest

from tests.faults.checks import account
from tests.faults.pcaprec import synth
from tests.faults.proc import Daemon
from tests.faults.rig import Rig

KILLS = 20
_BUSY = re.compile(r"uploaded|uploading|compressing|multipart", re.I)


def _reading_ready(rig: Rig, off: Daemon) -> bool:
    """The offload holds a ready/ file open: it compresses it straight into
    its upload (no temp file shows the work since the offload streams)."""
    ready = str(rig.spool / "ready") + "/"
    try:
        fds = os.listdir(f"/proc/{off.pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{off.pid}/fd/{fd}").startswith(ready):
                return True
        except OSError:
            continue
    return False


def _kill_during_work(rig: Rig, off: Daemon, rng: random.Random, max_wait: float) -> bool:
    """Start the offload, wait until it works on a file, kill -9 it at a random moment.

    Working = it holds a ready/ file open (reading it into an upload) or
    logged a line about an upload. Returns whether the kill landed while it
    was working.
    """
    mark = len(off.text())
    off.start()
    deadline = time.monotonic() + max_wait
    busy = False
    while time.monotonic() < deadline and off.running():
        if _reading_ready(rig, off) or _BUSY.search(off.text()[mark:]):
            busy = True
            break
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.4))
    assert off.running(), "offload exited by itself:\n" + off.tail()
    off.kill9()
    return busy


@pytest.mark.case("1a. kill -9 offload x20 during live uploads")
@pytest.mark.hard_timeout(240)
def test_offload_killed_during_uploads(rig: Rig, rng: random.Random, reliability) -> None:  # type: ignore[no-untyped-def]
    rig.configure(capture={"rotate_megabytes": 2}, offload={"concurrency": 4})
    cap, off = rig.daemon("capture"), rig.daemon("offload")
    cap.start()
    rig.wait_capturing(cap)
    rig.watch()
    # 36 loops at 8000 pps: ~24 s of traffic, ~47 MB in ~24 files of 2 MB
    traffic = rig.replay_async(loops=36, pps=8000)
    time.sleep(4)  # a first backlog
    busy_kills = 0
    for _ in range(KILLS):
        busy_kills += _kill_during_work(rig, off, rng, max_wait=6)
    assert traffic.wait(120) == 0
    off.start()  # the last restart: let it drain
    time.sleep(1.5)
    assert cap.stop(timeout=30) == 0, cap.tail()
    rig.wait_drained(90)
    time.sleep(1)
    assert off.stop() == 0, off.tail()
    acc = account(rig, capture_log=cap.text(), offload_log=off.text())
    reliability.record(
        runs=KILLS, **acc.row(),
        notes=f"seed {reliability.seed}; {busy_kills} of {KILLS} kills while a file was in "
        f"flight; {acc.files()}",
    )  # fmt: skip
    assert not acc.problems, "\n".join(acc.problems)
    assert acc.duplicated == 0
    assert acc.lost == 0
    assert acc.stored == acc.replayed, "end to end: replayed vs stored"


@pytest.mark.case("1b. kill -9 offload x8 during multipart uploads")
@pytest.mark.hard_timeout(180)
def test_offload_killed_during_multipart(offload_rig: Rig, rng: random.Random,
                                         reliability) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    """Files of 21 MB (compression off, 8 MiB parts) go up as multipart uploads."""
    rig = offload_rig
    rig.configure(offload={"compression": "none", "concurrency": 2, "s3_part_megabytes": 8})
    for d in ("ready", "work", "quarantine", "tmp", "state"):
        (rig.spool / d).mkdir(mode=0o770)
    src = rig.pcap.read_bytes()
    t0 = time.time() - 3600
    packets = 0
    for i in range(4):
        name = datetime.fromtimestamp(t0 + 60 * i, UTC).strftime("%Y%m%dT%H%M%SZ")
        blob = synth(src, 16, t0 + 60 * i)
        (rig.ready / f"{name}-{i + 1:06d}_{rig.host}_veth0.pcap").write_bytes(blob)
        packets += 16 * 5374
    rig.replayed = packets
    rig.watch()
    off = rig.daemon("offload")
    kills, busy = 0, 0
    while kills < 8 and rig.ready_files():
        busy += _kill_during_work(rig, off, rng, max_wait=6)
        kills += 1
    off.start()
    rig.wait_drained(120)
    assert off.stop() == 0, off.tail()
    acc = account(rig, offload_log=off.text())
    reliability.record(
        runs=kills, **acc.row(),
        notes=f"seed {reliability.seed}; 4 files of 21 MB placed in ready/ (no capture), "
        f"compression none; {busy} kills while busy",
    )  # fmt: skip
    assert not acc.problems, "\n".join(acc.problems)
    assert acc.duplicated == 0 and acc.lost == 0 and acc.stored == packets
