"""Case 12b: the spool's own users plant directory trees too deep or too wide to walk.

A 1,200-level tree in ready/ made the capture daemon's budget walk raise
RecursionError (or EMFILE); a very wide one was walked on every loop. As each
of the two daemon users (see users.py), the test plants both shapes in ready/
and quarantine/, then runs the real capture and offload daemons as those users
with a small quarantine cap (so the cap tries to remove them too). Each tree
must be reported once per place it sits in, not every loop, and every
captured packet must still reach the bucket.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from rollcap.spool.fs import MAX_DIR_ENTRIES
from tests.faults.proc import wait_for
from tests.faults.rig import Rig
from tests.faults.users import (
    CAPTURE_USER,
    GROUP,
    NET_RAW,
    NO_CAPS,
    OFFLOAD_USER,
    layout,
    plant,  # fmt: skip
    setpriv,
)

DEEP = 1200  # levels: past Python's recursion limit and the usual 1,024 open files
WIDE = MAX_DIR_ENTRIES + 500  # entries in one subdirectory


def _plant_trees(user: str, spool: Path, iface: str, first: int) -> list[str]:
    """A deep and a wide tree in ready/ (named as captures, so offload looks at
    them) and in quarantine/, as user; their paths relative to the spool."""
    names = [f"ready/20250101T0000{first:02d}Z-0003{first:02d}_h_{iface}.pcap",
             f"ready/20250101T0000{first + 1:02d}Z-0003{first + 1:02d}_h_{iface}.pcap",
             f"quarantine/deep-{user}", f"quarantine/wide-{user}"]  # fmt: skip
    plant(user, f"""
        import os
        S, DEEP, WIDE = {str(spool)!r}, {DEEP}, {WIDE}
        names = {names!r}
        for rel in names[0::2]:  # deep: a file and a subdirectory on every level
            area, top = rel.split("/")
            fd = os.open(os.path.join(S, area), os.O_RDONLY | os.O_DIRECTORY)
            for part in [top] + ["d"] * DEEP:
                os.mkdir(part, dir_fd=fd)
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd = nxt
                f = os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
                os.write(f, b"x" * 100)
                os.close(f)
            os.close(fd)
        for rel in names[1::2]:  # wide: one subdirectory of WIDE empty files
            sub = os.path.join(S, rel, "sub")
            os.makedirs(sub)
            for i in range(WIDE):
                os.close(os.open(os.path.join(sub, str(i)), os.O_WRONLY | os.O_CREAT, 0o644))
        for rel in names:  # the oldest in quarantine/: its cap tries them first
            os.utime(os.path.join(S, rel), (1e9, 1e9))
    """)  # fmt: skip
    return names


@pytest.mark.case("12b. deep and wide directory trees planted by the spool's users")
@pytest.mark.hard_timeout(300)
def test_planted_trees_are_reported_once_and_stop_nothing(rig: Rig, reliability) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    spool = rig.spool
    rig.workdir = Path(f"{spool}-etc")  # readable by the daemons' users (tmp_path is 0700)
    rig.workdir.mkdir(mode=0o755)
    try:
        _run(rig, spool, reliability)
    finally:
        # shutil.rmtree (Python 3.11) recurses: RecursionError on these trees
        subprocess.run(["rm", "-rf", "--one-file-system", str(spool)], check=False)
    shutil.rmtree(rig.workdir, ignore_errors=True)  # the logs stay when it failed


def _run(rig: Rig, spool: Path, reliability) -> None:  # type: ignore[no-untyped-def]
    layout(spool)
    rig.configure(capture={"rotate_megabytes": 1},
                  spool={"group": GROUP, "quarantine_megabytes": 1})  # fmt: skip
    iface = rig.veth.b if rig.veth else "lo"
    trees = _plant_trees(CAPTURE_USER, spool, iface, 1) + _plant_trees(OFFLOAD_USER, spool,
                                                                         iface, 11)  # fmt: skip
    # 2 MB of junk in quarantine/, newer than the trees: over the 1 MB cap, so the
    # cap walks past the trees (oldest first) to remove it
    ballast = spool / "quarantine" / "ballast"
    ballast.write_bytes(b"\0" * 2_000_000)
    cap = rig.daemon("capture", wrapper=setpriv(CAPTURE_USER, NET_RAW))
    cap.start()
    rig.wait_capturing(cap)
    off = rig.daemon("offload", wrapper=setpriv(OFFLOAD_USER, NO_CAPS))
    off.start()
    sent = rig.replay(loops=2, pps=15000)
    wait_for(lambda: not ballast.exists(), 30, 0.5, what="the quarantine cap\n" + cap.tail())
    time.sleep(3)  # more budget loops over the same trees
    assert cap.stop(timeout=30) == 0, cap.tail()
    # offload cannot move a directory of the capture user's (renaming a directory
    # needs write access to it): those stay in ready/, skipped with one line each
    stuck = {Path(t).name for t in trees[:2]}
    wait_for(lambda: set(rig.ready_files()) <= stuck, 90, 0.5,
             what=lambda: f"ready/ to drain: {rig.ready_files()}\n{off.tail()}")  # fmt: skip
    alive = off.running()
    assert off.stop() == 0, off.tail()
    view = rig.bucket()
    stored = sum(o.packets for o in view.objects)
    clog = cap.text()
    # "<path>: a directory tree <why>: ..." (rollcap.spool.fs), once per place
    tree = rf"{re.escape(str(spool))}/(\S+): a directory tree (?:deeper|with|of) "
    places = re.findall(tree, clog)
    reliability.record(
        runs=1, packets_in=sent, packets_out=stored, lost=sent - stored, duplicated=0,
        notes=f"{len(trees)} trees ({DEEP} levels deep, or {WIDE} entries in one directory) "
        f"planted in ready/ and quarantine/ as the capture and the offload user; "
        f"{len(places)} capture log lines about them",
    )  # fmt: skip
    assert alive, "offload died on the planted trees"
    assert stored == sent, f"{sent - stored} packets did not reach the bucket"
    assert len(places) == len(set(places)), f"reported more than once: {sorted(places)}"
    for t in trees:
        name = Path(t).name
        assert any(p.endswith("/" + name) for p in places), f"{t} never reported: {places}"
    olog = off.text()
    for name in stuck:
        lines = [ln for ln in olog.splitlines() if name in ln]
        assert len(lines) == 1 and "cannot quarantine it" in lines[0], lines
