"""Capture and offload together: every packet tcpdump captured on a veth pair
ends up in the file:// archive, and ready/ empties."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.capture_daemon import CaptureDaemon
from tests.integration.test_offload import Offload, state
from tests.support.net import Veth, count_packets

pytestmark = pytest.mark.integration

PACKETS = 5374  # in all_pcap


def test_captured_packets_all_arrive_in_the_archive(veth: Veth, all_pcap: Path, base: Path) -> None:
    cap = CaptureDaemon(base, veth.b, rotate_megabytes=1, offload={
        "destination": f"file://{base}/archive", "rescan_seconds": 3600,
    })  # fmt: skip
    off: Offload | None = None
    try:
        cap.start()
        cap.wait_capturing()
        off = Offload(cap.config, {}).start()
        off.wait_for("started", lambda: "offload started" in off.text())  # type: ignore[union-attr]
        veth.replay(all_pcap, loop=3, pps=20000)
        time.sleep(1.5)  # tcpdump's last kernel block (see the brief)
        assert cap.stop() == 0
        handed = cap.state()["handed_off_files"]
        assert handed >= 3
        # only inotify (no rescan for an hour) tells offload about the hand-offs
        off.wait_for(
            "all handed-off files stored",
            lambda: state(cap.spool).get("uploaded_files") == handed,
            timeout=60,
        )
        assert list((cap.spool / "ready").iterdir()) == []
        assert off.stop() == 0
    finally:
        cap.kill()
        if off is not None and off.proc is not None and off.proc.poll() is None:
            off.proc.kill()
    stored = sorted((base / "archive").rglob("*.pcap.zst"))
    assert len(stored) == handed
    assert sum(count_packets(p) for p in stored) == 3 * PACKETS
    assert state(cap.spool)["quarantined"] == 0
