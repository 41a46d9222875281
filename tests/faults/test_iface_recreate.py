"""Case 6: the captured interface is deleted and re-created; capture resumes by itself."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.faults.checks import account
from tests.faults.proc import wait_for
from tests.faults.rig import Rig


def _recreate(a: str, b: str) -> None:
    subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
    for dev in (a, b):
        with open(f"/proc/sys/net/ipv6/conf/{dev}/disable_ipv6", "w") as f:
            f.write("1")
        subprocess.run(["ip", "link", "set", dev, "up"], check=True)


@pytest.mark.case("6. captured interface deleted and re-created")
@pytest.mark.hard_timeout(150)
def test_interface_deleted_and_recreated(rig: Rig, reliability) -> None:  # type: ignore[no-untyped-def]
    assert rig.veth is not None
    rig.configure()
    cap, off = rig.daemon("capture"), rig.daemon("offload")
    cap.start()
    rig.wait_capturing(cap)
    rig.watch()
    off.start()
    rig.replay(loops=1, pps=15000)
    time.sleep(1.5)
    old = set(rig.tcpdumps())
    subprocess.run(["ip", "link", "del", rig.veth.a], check=True)
    time.sleep(3)
    assert cap.running(), "capture exited when its interface went away:\n" + cap.tail()
    _recreate(rig.veth.a, rig.veth.b)
    t0 = time.monotonic()
    new = wait_for(lambda: set(rig.tcpdumps()) - old, 60, 0.1,
                   what="capture to resume on the re-created interface")  # fmt: skip
    resumed_s = time.monotonic() - t0
    rig.wait_listening(cap, min(new))  # phase 2's packets must all be captured
    t_phase2 = time.time()
    rig.replay(loops=1, pps=15000)
    time.sleep(1.5)
    assert cap.stop(timeout=30) == 0, cap.tail()
    rig.wait_drained(90)
    assert off.stop() == 0, off.tail()
    acc = account(rig, capture_log=cap.text(), offload_log=off.text())
    phase2 = rig.bucket().packets_since(t_phase2)
    reliability.record(
        runs=1, **acc.row(),
        notes=f"capture resumed {resumed_s:.1f} s after the interface came back; "
        f"{phase2} of 5374 packets sent after that arrived; {acc.files()}",
    )  # fmt: skip
    assert not acc.problems, "\n".join(acc.problems)
    assert acc.lost == 0 and acc.duplicated == 0
    assert phase2 == 5374
    assert acc.stored == acc.replayed, "end to end (waited 1.5 s before deleting the interface)"
