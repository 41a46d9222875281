"""Case 5: the spool lives on a tiny filesystem (tmpfs) that fills up.

A ballast file takes every free byte while capture and offload run, and the
offload is restarted while the disk is full (as systemd would after an
upgrade). Expected: no crash loop (the daemons stay up, tcpdump restarts are
backed off), a clear error in the log, and full recovery once the ballast is
gone: every packet replayed after that arrives.
"""

from __future__ import annotations

import errno
import os
import re
import time

import pytest

from tests.faults.pcaprec import synth
from tests.faults.proc import Daemon, wait_for
from tests.faults.rig import Rig

FS_MB = 12


def _fill(path: str) -> int:
    """Write until ENOSPC (unbuffered, so closing cannot fail again)."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        chunk = b"\0" * 65536
        while True:
            try:
                n = os.write(fd, chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
            if n == 0:
                break
            written += n
    finally:
        os.close(fd)
    return written


@pytest.mark.case("5. spool on a full 12 MB tmpfs")
@pytest.mark.hard_timeout(150)
def test_tiny_filesystem_fills(rig: Rig, reliability) -> None:  # type: ignore[no-untyped-def]
    rig.mount_tmpfs(FS_MB)
    rig.configure(capture={"rotate_megabytes": 1},
                  spool={"max_megabytes": 100, "min_free_percent": 0})  # fmt: skip
    cap, off = rig.daemon("capture"), rig.daemon("offload")

    def alive(d: Daemon, when: str) -> None:
        if d.running():
            return
        crash = (d.text().splitlines() or ["?"])[-1]
        status = d.proc.returncode if d.proc else "?"
        note = f"{d.kind} exited (status {status}) {when}: {crash}"
        reliability.record(runs=1, packets_in=rig.replayed, notes=note)
        raise AssertionError(f"{d.kind} died {when}:\n" + d.tail())

    cap.start()
    rig.wait_capturing(cap)
    off.start()
    wait_for(lambda: "offload started" in off.text() or not off.running(), 30,
             what=lambda: "the offload to start:\n" + off.tail())  # fmt: skip
    rig.replay(loops=2, pps=15000)
    ballast = str(rig.spool / "ballast.bin")
    filled = _fill(ballast)
    pids: set[int] = set()
    t_full = time.monotonic()
    traffic = rig.replay_async(loops=6, pps=3000)
    while time.monotonic() - t_full < 15:
        pids.update(rig.tcpdumps())
        alive(cap, "on a full disk")
        alive(off, "on a full disk")
        time.sleep(0.05)
    traffic.wait(60)
    # systemd restarts the offload (an upgrade, a reboot) while the disk is still full
    assert off.stop() == 0, off.tail()
    mark = len(off.text())
    off.start()
    for _ in range(60):
        alive(cap, "on a full disk")
        time.sleep(0.1)
    restarted_ok = off.running() and "Traceback" not in off.text()[mark:]
    restart_tail = off.tail(12)
    if not off.running():
        off.start()  # as Restart=on-failure would, so recovery can still be checked
    os.unlink(ballast)
    full_s = time.monotonic() - t_full
    t_free = time.time()
    # room again: capture must be back without help (within its restart backoff)
    wait_for(lambda: rig.tcpdumps() or not cap.running() or not off.running(), 30, 0.1,
             what=lambda: "a tcpdump after space returned:\n" + cap.tail())  # fmt: skip
    alive(cap, "after the disk was full")
    alive(off, "after the disk was full")
    pids_after_full = len(pids)
    rig.wait_listening(cap)  # phase 2's packets must all be captured
    t_phase2 = time.time()
    rig.replay(loops=2, pps=15000)
    time.sleep(1.5)
    assert cap.stop(timeout=30) == 0, cap.tail()
    rig.wait_drained(90)
    assert off.stop() == 0, off.tail()
    view = rig.bucket()
    phase2 = view.packets_since(t_phase2)
    logs = cap.text() + off.text()
    full = re.compile(r"no space left|ENOSPC|disk is full|filesystem is full", re.I)
    space_lines = [ln for ln in logs.splitlines() if full.search(ln)]
    restarted = "ran on" if restarted_ok else "CRASHED"
    reliability.record(
        runs=1,
        packets_in=rig.replayed,
        packets_out=view.ledger.unique,
        lost=2 * 5374 - phase2,
        duplicated=view.ledger.duplicated,
        notes=f"ballast {filled / 1e6:.1f} MB filled the fs for {full_s:.0f} s; "
        f"{pids_after_full} tcpdump processes while full; {len(space_lines)} log lines say "
        f"no space left; offload restarted on the full disk: {restarted}; lost = packets "
        "replayed after recovery that are missing; packets sent while the disk was full "
        "are legitimately not kept",
    )
    assert space_lines, "no log line says the disk is full"
    assert restarted_ok, "offload started on a full disk crashed:\n" + restart_tail
    assert pids_after_full <= 6, f"{pids_after_full} tcpdump starts in 15 s: a crash loop"
    assert phase2 == 2 * 5374, f"after recovery {phase2} of {2 * 5374} packets arrived"
    assert view.ledger.duplicated == 0
    assert t_free < t_phase2


@pytest.mark.case("5b. offload started on a full spool filesystem")
@pytest.mark.hard_timeout(90)
def test_offload_starts_on_a_full_filesystem(offload_rig: Rig, reliability) -> None:  # type: ignore[no-untyped-def]
    """A reboot or upgrade with the disk already full: the offload must wait, not crash-loop."""
    rig = offload_rig
    rig.mount_tmpfs(4)
    rig.configure()
    for d in ("ready", "work", "quarantine", "tmp", "state"):
        (rig.spool / d).mkdir(mode=0o770)
    src = rig.pcap.read_bytes()
    good = synth(src, 1, time.time() - 600)
    name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 600))
    (rig.ready / f"{name}-000001_{rig.host}_veth0.pcap").write_bytes(good)
    ballast = str(rig.spool / "ballast.bin")
    _fill(ballast)
    off = rig.daemon("offload")
    off.start()
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and off.running():
        time.sleep(0.1)
    ran = off.running()
    crash = (off.text().splitlines() or ["?"])[-1]
    if not ran:
        off.start()  # what Restart=on-failure does; maybe it recovers once there is room
    os.unlink(ballast)
    drained = True
    try:
        rig.wait_drained(30)
    except AssertionError:
        drained = False
    stored = rig.bucket().ledger.unique
    reliability.record(
        runs=1,
        packets_in=5374,
        packets_out=stored,
        lost=5374 - stored,
        duplicated=0,
        notes=("kept running on the full disk" if ran else f"exited on the full disk: {crash}")
        + ("; uploaded once space returned" if drained else "; nothing uploaded"),
    )
    assert ran, "offload exited when started on a full disk:\n" + off.tail(15)
    assert drained and stored == 5374
