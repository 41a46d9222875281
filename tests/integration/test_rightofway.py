"""Capture first, through the real daemons: a real `rollcap capture` whose tcpdump
drops (a tiny kernel buffer, tcpreplay at top speed onto the test's veth) says
so in its status, the journal and rollcap_capture_kernel_drops_total, names the
likely cause, and the shipped alert fires in a real Prometheus scraping it; a
real `rollcap offload` pauses compression while those drops are fresh or while
the dirty page cache is high, and then stores every file, in order."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from rollcap.capture.counters import CAUSES
from rollcap.dirtypages import read_dirty_level
from tests.integration.capture_daemon import CaptureDaemon
from tests.integration.test_offload import Offload
from tests.support.net import Veth, count_packets
from tests.support.prometheus import Prometheus, free_port, wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "packaging" / "prometheus" / "rollcap.rules.yml"
TINY_BUFFER_KIB = 1  # tcpdump -B 1: the smallest ring libpcap makes


def _drop(veth: Veth, pcap: Path, cap: CaptureDaemon, timeout: float = 90) -> dict[str, Any]:
    """Replay at top speed until capture reports kernel drops (a few rounds at most)."""
    st: dict[str, Any] = {}

    def dropped() -> dict[str, Any]:
        nonlocal st
        veth.replay(pcap, loop=20)
        st = cap.state()
        return st

    return wait_until("capture reporting kernel drops", dropped,  # type: ignore[no-any-return]
                      lambda s: s.get("kernel_drops", 0) > 0 and s.get("last_drops"),
                      timeout)  # fmt: skip


def test_capture_drops_are_reported_with_a_cause_and_the_alert_fires(
    veth: Veth, all_pcap: Path, base: Path
) -> None:
    port = free_port()
    cap = CaptureDaemon(base / "c", veth.b, buffer_kib=TINY_BUFFER_KIB, rotate_seconds=60,
                        metrics={"textfile_directory": "", "capture_listen":
                                 f"127.0.0.1:{port}"})  # fmt: skip
    prom = Prometheus({"rollcap-capture": f"127.0.0.1:{port}"}, rule_files=[RULES])
    try:
        cap.start()
        cap.wait_capturing()
        prom.start()
        wait_until("Prometheus scraping capture", prom.targets_up,
                   lambda up: up == {"rollcap-capture": 1.0}, 30)  # fmt: skip
        st = _drop(veth, all_pcap, cap)
        drops = st["kernel_drops"]
        print(f"\n{drops} kernel drops; likely cause: {st['last_drops']}")
        # rollcap status: the count, and the likely cause with its evidence
        last = st["last_drops"]
        assert last["cause"] in CAUSES and last["detail"] and last["interface"] == veth.b
        per = st["interfaces"][veth.b]
        assert per["drop_cause"] == last["cause"] and per["kernel_drops"] == drops
        if last["cause"] == "buffer":
            assert f"{TINY_BUFFER_KIB} KiB" in last["detail"]
        # the journal line names the count and the cause
        text = cap.log_text()
        m = re.search(r"packets dropped on \S+: (\d+) by the kernel.*likely cause: (\w+) \(",
                      text)  # fmt: skip
        assert m and int(m[1]) > 0 and m[2] in CAUSES, text[-3000:]
        # the metric says so, and the shipped alert fires on the real series
        wait_until("the scraped kernel drops", lambda: prom.query(
            "rollcap_capture_kernel_drops_total"), lambda q: q.get("rollcap-capture", 0) > 0,
            30)  # fmt: skip

        def firing() -> list[dict[str, Any]]:
            return [a for a in prom.api("alerts")["alerts"]
                    if a["labels"]["alertname"] == "RollcapKernelDrops"
                    and a["state"] == "firing"]  # fmt: skip

        alerts = wait_until("RollcapKernelDrops firing", firing, bool, 30)
        assert alerts[0]["labels"]["interface"] == veth.b
        assert cap.stop() == 0
        # after the stop, the last status still says what happened
        assert cap.state()["kernel_drops"] >= drops
    finally:
        prom.cleanup()
        cap.kill()


def _offload_state(cap: CaptureDaemon) -> dict[str, Any]:
    try:
        data = json.loads((cap.spool / "state" / "offload.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    assert isinstance(data, dict)
    return data


def _archived(archive: Path) -> list[Path]:
    return sorted(p for p in archive.rglob("*") if p.is_file() and "_index" not in p.parts
                  and p.name.endswith((".pcap", ".pcap.zst")))  # fmt: skip


def _metric(path: Path, line_start: str) -> float | None:
    for line in path.read_text().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_offload_pauses_while_capture_drops_then_stores_everything_in_order(
    veth: Veth, all_pcap: Path, base: Path
) -> None:
    metrics = base / "metrics"
    for daemon in ("capture", "offload"):
        (metrics / daemon).mkdir(parents=True)
    archive = base / "archive"
    hold = 8
    cap = CaptureDaemon(base / "c", veth.b, buffer_kib=TINY_BUFFER_KIB, rotate_seconds=10,
                        rotate_megabytes=1,
                        offload={"destination": f"file://{archive}", "yield_seconds": hold,
                                 "yield_dirty_percent": 0, "compression": "none"},
                        metrics={"textfile_directory": str(metrics),
                                 "interval_seconds": 1})  # fmt: skip
    off = Offload(cap.config, {})
    try:
        cap.start()
        cap.wait_capturing()
        off.start()
        off.wait_for("started", lambda: "offload started" in off.text())
        st = _drop(veth, all_pcap, cap)
        assert st["kernel_drops"] > 0
        off.wait_for("the pause", lambda: _offload_state(cap).get("compression_paused")
                     == "capture-drops", 30)  # fmt: skip
        assert "compression paused: capture reported new kernel drops" in off.text()
        # while paused, finished files wait in ready/ (the quiet-link switch hands
        # the last one off within rotate_seconds + 5 s)
        waiting = cap.wait_for("a file handed off during the pause",
                               lambda s: s.get("handed_off_files", 0) > 0, 30)  # fmt: skip
        assert waiting
        # resumes once capture reports no new drops for `hold` seconds
        off.wait_for("the resume", lambda: "compression resumed after capture-drops"
                     in off.text(), 90)  # fmt: skip
        assert cap.stop() == 0
        handed = cap.state()
        off.wait_for("every file stored", lambda: not any(
            p.stat().st_size > 24 for p in (cap.spool / "ready").iterdir()), 60)  # fmt: skip
        prom = metrics / "offload" / "rollcap-offload.prom"
        off.wait_for("the paused seconds metric", lambda: (_metric(
            prom, 'rollcap_offload_compression_paused_seconds_total{reason="capture-drops"}')
            or 0) >= hold - 1, 15)  # fmt: skip
        assert off.stop() == 0
        # nothing lost by the pause: every packet capture handed off is archived
        # (the order of compressions is pipeline.OrderedSlots', which the pause
        # waits in front of)
        stored = _archived(archive)
        assert len(stored) == handed["handed_off_files"]
        # tcpdump's own count, less the duplicates of switches' overlaps
        assert sum(count_packets(p) for p in stored) == (
            handed["packets_captured"] - handed["duplicates_removed"]
        )
    finally:
        if off.proc is not None and off.proc.poll() is None:
            off.kill9()
        cap.kill()


def test_offload_pauses_while_dirty_pages_are_high_and_loses_nothing(
    veth: Veth, all_pcap: Path, base: Path
) -> None:
    # 1 % of the kernel's throttle point: this test's own 64 MiB of unwritten
    # data is above it on any host with less than ~40 GiB of page cache
    level = read_dirty_level()
    assert level is not None
    if level.freerun_bytes // 100 > 48 << 20:
        pytest.skip(f"the throttle point is {level.freerun_bytes >> 20} MiB: 1 % of it is "
                    "more than this test dirties")  # fmt: skip
    archive = base / "archive"
    metrics = base / "metrics"
    for daemon in ("capture", "offload"):
        (metrics / daemon).mkdir(parents=True)
    cap = CaptureDaemon(base / "c", veth.b, rotate_seconds=60, rotate_megabytes=1,
                        offload={"destination": f"file://{archive}", "yield_seconds": 0,
                                 "yield_dirty_percent": 1},
                        metrics={"textfile_directory": str(metrics),
                                 "interval_seconds": 1})  # fmt: skip
    off = Offload(cap.config, {})
    ballast = base / "dirty"
    try:
        with ballast.open("wb") as f:  # dirty pages the flusher writes within ~30 s
            for _ in range(64):
                f.write(os.urandom(1 << 20))
        cap.start()
        cap.wait_capturing()
        veth.replay(all_pcap, loop=3, pps=20000)
        cap.wait_for("files handed off", lambda s: s.get("handed_off_files", 0) > 0, 30)
        files = [p.name for p in (cap.spool / "ready").iterdir() if p.stat().st_size > 24]
        # capture runs (its textfile is fresh): the dirty level counts
        off.start()
        off.wait_for("the pause", lambda: _offload_state(cap).get("compression_paused")
                     == "dirty-pages", 30)  # fmt: skip
        assert "compression paused: dirty pages near the kernel's writer throttling" in off.text()
        # paused: nothing was compressed, every file still waits in ready/
        assert _offload_state(cap).get("uploaded_files") == 0, off.text()
        assert files and {p.name for p in (cap.spool / "ready").iterdir()} >= set(files)
        assert off.stop() == 0
        assert cap.stop() == 0
        handed = cap.state()
        # the same spool, capture stopped: no pause, everything goes out
        off2 = Offload(cap.config, {}).start()
        try:
            off2.wait_for("every file stored", lambda: not any(
                p.stat().st_size > 24 for p in (cap.spool / "ready").iterdir()), 60)  # fmt: skip
            assert off2.stop() == 0
        finally:
            if off2.proc is not None and off2.proc.poll() is None:
                off2.kill9()
        assert "compression paused" not in off2.text()[len(off.text()) :]
        stored = _archived(archive)
        assert len(stored) == handed["handed_off_files"]
        # tcpdump's own count, less the duplicates of switches' overlaps
        assert sum(count_packets(p) for p in stored) == (
            handed["packets_captured"] - handed["duplicates_removed"]
        )
    finally:
        ballast.unlink(missing_ok=True)
        if off.proc is not None and off.proc.poll() is None:
            off.kill9()
        cap.kill()
