"""Several interfaces in one capture service, and files cut on the wall clock
(capture.rotate_align), with real tcpdumps on test-owned veth pairs.

Every count is made by capinfos. As in test_capture, each test waits DRAIN
seconds after the last replayed packet before stopping (tcpdump's last
partially filled kernel block).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rollcap.pcapfile import scan
from rollcap.spool.readyname import ReadyName
from tests.integration.capture_daemon import REPO, CaptureDaemon
from tests.integration.conftest import Factory
from tests.integration.test_capture import _assert_sorted_by_time, _no_duplicates
from tests.integration.test_offload import Offload, state
from tests.support.net import TEST_PCAPS, Veth, count_packets

pytestmark = pytest.mark.integration

PACKETS = 5374  # in all_pcap
SMALL = TEST_PCAPS / "ssh.pcap"
SMALL_PACKETS = 54
DRAIN = 1.5


@pytest.fixture
def veth2() -> Iterator[Veth]:
    v = Veth.create()
    try:
        yield v
    finally:
        v.delete()


def _by_iface(d: CaptureDaemon) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for p in d.ready_files():
        r = ReadyName.parse(p.name)
        assert r is not None, p.name
        out.setdefault(r.iface, []).append(p)
    return out


def _packets(files: list[Path]) -> int:
    return sum(count_packets(p) for p in files)


def _iface_state(d: CaptureDaemon, name: str) -> dict[str, Any]:
    st: dict[str, Any] = d.state().get("interfaces", {}).get(name, {})
    return st


def test_two_interfaces_each_hold_exactly_their_packets(
    veth: Veth, veth2: Veth, all_pcap: Path, daemon: Factory
) -> None:
    d = daemon([veth.b, veth2.b], rotate_megabytes=1,
               per_interface={veth2.b: {"snaplen": 128}})  # fmt: skip
    st = d.wait_capturing()
    assert set(st["interfaces"]) == {veth.b, veth2.b}
    pids = {n: i["tcpdump_pid"] for n, i in st["interfaces"].items()}
    assert len(set(pids.values())) == 2  # one tcpdump per interface
    both = [
        threading.Thread(target=veth.replay, args=(all_pcap,), kwargs={"loop": 2, "pps": 8000}),
        threading.Thread(target=veth2.replay, args=(SMALL,), kwargs={"loop": 3, "pps": 200}),
    ]
    for t in both:
        t.start()
    for t in both:
        t.join()
    time.sleep(DRAIN)
    assert d.stop() == 0
    files = _by_iface(d)
    assert set(files) == {veth.b, veth2.b}
    assert _packets(files[veth.b]) == 2 * PACKETS
    assert _packets(files[veth2.b]) == 3 * SMALL_PACKETS
    for fs in files.values():
        _assert_sorted_by_time(fs)
    # the override: veth2's tcpdump kept 128 bytes of each packet, veth's all of them
    assert all(scan(p).header.snaplen == 128 for p in files[veth2.b])
    assert all(scan(p).header.snaplen == 262144 for p in files[veth.b])
    st = d.state()
    assert st["state"] == "stopped"
    one, two = st["interfaces"][veth.b], st["interfaces"][veth2.b]
    assert (one["packets_captured"], two["packets_captured"]) == (2 * PACKETS, 3 * SMALL_PACKETS)
    assert st["packets_captured"] == 2 * PACKETS + 3 * SMALL_PACKETS
    assert st["handed_off_files"] == len(files[veth.b]) + len(files[veth2.b])


def test_a_deleted_interface_resumes_and_the_other_loses_nothing(
    veth: Veth, all_pcap: Path, daemon: Factory
) -> None:
    gone = Veth.create()
    try:
        d = daemon([veth.b, gone.b])
        st = d.wait_capturing()
        steady_pid = st["interfaces"][veth.b]["tcpdump_pid"]
        gone.replay(SMALL, pps=500)
        # veth carries traffic all the time the other interface is away
        busy = threading.Thread(target=veth.replay, args=(all_pcap,), kwargs={"pps": 600})
        busy.start()
        time.sleep(DRAIN)  # the small replay's last kernel block
        gone.delete()
        d.wait_for(
            "the deleted interface noticed",
            lambda s: s["interfaces"][gone.b]["state"] != "capturing",
            timeout=20,
        )
        assert d.state()["state"] != "capturing"  # rollcap status: degraded
        gone = Veth.create(gone.b[3:])  # the same names again
        d.wait_for(
            "the interface back",
            lambda s: s["interfaces"][gone.b]["state"] == "capturing",
            timeout=90,  # restart backoff
        )
        gone.replay(SMALL, loop=2, pps=500)
        busy.join()
        time.sleep(DRAIN)
        st = d.state()
        # the steady interface's tcpdump never restarted
        assert st["interfaces"][veth.b]["tcpdump_pid"] == steady_pid
        assert st["interfaces"][veth.b]["restarts"] == 0
        assert st["interfaces"][gone.b]["restarts"] >= 1
        assert d.stop() == 0
        files = _by_iface(d)
        assert _packets(files[veth.b]) == PACKETS
        _no_duplicates(files[veth.b], all_pcap, 1)
        # before it went and after it came back: nothing lost either
        assert _packets(files[gone.b]) == 3 * SMALL_PACKETS
        assert "interface" in d.log_text()
    finally:
        gone.delete()


def test_reload_adds_an_interface_without_restarting_the_other(
    veth: Veth, veth2: Veth, all_pcap: Path, daemon: Factory
) -> None:
    d = daemon(veth.b)  # not aligned (see write_config): the pid must stay
    st = d.wait_capturing()
    pid = st["interfaces"][veth.b]["tcpdump_pid"]
    replay = threading.Thread(target=veth.replay, args=(all_pcap,), kwargs={"pps": 1000})
    replay.start()  # the reload happens while veth carries traffic
    d.reconfigure([veth.b, veth2.b])
    r = subprocess.run(
        [sys.executable, "-m", "rollcap", "reload", "--config", str(d.config)],
        cwd=REPO, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    st = d.wait_for(
        "the added interface capturing",
        lambda s: s.get("interfaces", {}).get(veth2.b, {}).get("state") == "capturing",
        timeout=30,
    )
    assert st["interfaces"][veth.b]["tcpdump_pid"] == pid  # untouched
    veth2.replay(SMALL, pps=500)
    replay.join()
    time.sleep(DRAIN)
    assert d.state()["interfaces"][veth.b]["tcpdump_pid"] == pid
    # and a reload removing it stops only that one
    d.reconfigure([veth.b])
    d.signal(1)  # SIGHUP
    d.wait_for("the interface removed", lambda s: veth2.b not in s["interfaces"], timeout=30)
    assert d.state()["interfaces"][veth.b]["tcpdump_pid"] == pid
    assert d.stop() == 0
    files = _by_iface(d)
    assert _packets(files[veth.b]) == PACKETS
    assert _packets(files[veth2.b]) == SMALL_PACKETS


ROTATE = 10  # capture.rotate_seconds' minimum


def _aligned_run(
    vs: list[Veth], daemon: Factory, replay: Callable[[], None], periods: int
) -> dict[str, list[Path]]:
    d = daemon([v.b for v in vs], rotate_seconds=ROTATE, rotate_align=True)
    d.wait_capturing()
    replay()
    # the last file handed off on its boundary, not at SIGTERM
    d.wait_for(f"{periods} aligned files", lambda s: s["handed_off_files"] >= periods * len(vs),
               timeout=ROTATE * (periods + 3))  # fmt: skip
    assert d.stop() == 0
    out = _by_iface(d)
    report = []
    for files in out.values():
        starts = [ReadyName.parse(p.name).start.timestamp() for p in files]  # type: ignore[union-attr]
        # every file after the first opens on a UTC multiple of rotate_seconds
        assert [s % ROTATE for s in starts[1:]] == [0] * (len(files) - 1), [p.name for p in files]
        _assert_sorted_by_time(files)
        for p, start in zip(files[1:], starts[1:], strict=True):
            s = scan(p)
            if s.first_ts is not None:
                report.append(
                    f"{p.name}: first packet {s.first_ts - start:+.3f} s from its boundary"
                )
                # the cut lies near the boundary: the old tcpdump's last kernel block
                # before it, a loop held up on a loaded machine after it
                assert -2.5 < s.first_ts - start < 2.5, p.name
        for p, nxt in zip(files, starts[1:], strict=False):
            s = scan(p)
            if s.last_ts is not None:
                report.append(
                    f"{p.name}: last packet {s.last_ts - nxt:+.3f} s from the next boundary"
                )
                assert s.last_ts - nxt < 2.5, p.name
    print("\n".join(report))  # the measurement docs/capture.md quotes (pytest -s)
    return out


def test_aligned_files_open_on_multiples_of_rotate_seconds_on_a_busy_link(
    veth: Veth, all_pcap: Path, daemon: Factory
) -> None:
    # 5374 packets at 200/s: 27 s of traffic across at least two boundaries
    (files,) = _aligned_run([veth], daemon, lambda: veth.replay(all_pcap, pps=200), 3).values()
    assert sum(count_packets(p) for p in files) == PACKETS  # the switches lost nothing
    _no_duplicates(files, all_pcap, 1)


def test_aligned_files_open_on_multiples_of_rotate_seconds_on_a_quiet_link(
    veth: Veth, daemon: Factory
) -> None:
    # 54 packets at 2/s: a packet every half second, far below -C
    (files,) = _aligned_run([veth], daemon, lambda: veth.replay(SMALL, pps=2), 3).values()
    assert sum(count_packets(p) for p in files) == SMALL_PACKETS
    _no_duplicates(files, SMALL, 1)


def test_two_interfaces_are_cut_on_the_same_boundaries(
    veth: Veth, veth2: Veth, all_pcap: Path, daemon: Factory
) -> None:
    def both() -> None:
        t = threading.Thread(target=veth2.replay, args=(SMALL,), kwargs={"loop": 10, "pps": 20})
        t.start()
        veth.replay(all_pcap, pps=200)
        t.join()

    files = _aligned_run([veth, veth2], daemon, both, 3)
    assert sum(count_packets(p) for p in files[veth.b]) == PACKETS
    assert sum(count_packets(p) for p in files[veth2.b]) == 10 * SMALL_PACKETS
    # same boundaries on both: the names after the first are the same times
    times = {n: {ReadyName.parse(p.name).start for p in fs[1:]} for n, fs in files.items()}  # type: ignore[union-attr]
    assert times[veth.b] & times[veth2.b]


def test_list_and_fetch_by_interface_with_two_interfaces_on_one_host(
    veth: Veth, veth2: Veth, all_pcap: Path, daemon: Factory
) -> None:
    d = daemon([veth.b, veth2.b])  # offload: a file:// archive beside the spool
    d.wait_capturing()
    t0 = time.time()
    veth.replay(all_pcap, pps=8000)
    veth2.replay(SMALL, loop=2, pps=500)
    time.sleep(DRAIN)
    assert d.stop() == 0
    handed = d.state()["handed_off_files"]
    off = Offload(d.config, {}).start()
    try:
        off.wait_for("uploaded", lambda: state(d.spool).get("uploaded_files") == handed, timeout=60)
        assert off.stop() == 0
    finally:
        if off.proc is not None and off.proc.poll() is None:
            off.proc.kill()
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 - 60))
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))

    def rollcap(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rollcap", *args, "--config", str(d.config),
             "--since", since, "--until", until],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    for name, want in ((veth.b, PACKETS), (veth2.b, 2 * SMALL_PACKETS)):
        listed = rollcap("list", "--interface", name)
        assert listed.returncode == 0, listed.stderr
        other = veth2.b if name == veth.b else veth.b
        assert name in listed.stdout and other not in listed.stdout
        out = d.tmp / f"{name}.pcap"
        fetched = rollcap("fetch", "--interface", name, "-o", str(out))
        assert fetched.returncode == 0, fetched.stderr
        assert count_packets(out) == want


def test_a_quiet_switch_of_one_interface_leaves_the_others_live_file_alone(
    veth: Veth, veth2: Veth, all_pcap: Path, daemon: Factory
) -> None:
    """Two quiet links: one interface's quiet-link switch must not take the
    other's live file for a finished one (its header not flushed yet, the
    hand-off deleted it under the running tcpdump, whose packets were then
    lost). Each interface gets a coverage marker per idle period instead."""
    d = daemon([veth.b, veth2.b], rotate_seconds=10)
    d.wait_capturing()
    # both idle for two periods: each interface switched twice (an interface
    # whose live file was taken never switched again) and left two markers
    d.wait_for("two quiet switches on each interface",
               lambda s: all(d.log_text().count(f"(quiet link) on {i} ") >= 2
                             for i in (veth.b, veth2.b)), timeout=60)  # fmt: skip
    for i in (veth.b, veth2.b):
        assert len([m for m in d.markers() if m.name.endswith(f"_{i}.pcap")]) >= 2
    veth2.replay(SMALL, pps=200)
    veth.replay(SMALL, pps=200)
    time.sleep(DRAIN)
    assert d.stop() == 0
    by = _by_iface(d)
    assert _packets(by[veth.b]) == SMALL_PACKETS and _packets(by[veth2.b]) == SMALL_PACKETS
