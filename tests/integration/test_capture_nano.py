"""capture.timestamp_precision = "nano", the whole way: rollcap's capture on a
test veth against a bare `tcpdump --time-stamp-precision=nano -w` on the same
veth at the same time, packet for packet (both taps see the same frames, with
the same kernel stamps), then the offload to a real SeaweedFS, `rollcap list`
and `rollcap fetch` back, cut at the nanosecond and merged with a µs object.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rollcap.spool.readyname import ReadyName
from tests.integration.capture_daemon import CaptureDaemon
from tests.integration.test_offload import Offload, state
from tests.support.archive import write_pcap
from tests.support.cli import run_rollcap
from tests.support.net import Veth, count_packets
from tests.support.seaweedfs import SeaweedFS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PACKETS = 5374  # in all_pcap
NS = 1_000_000_000
NANO_MAGIC = b"\x4d\x3c\xb2\xa1"
Record = tuple[int, bytes]  # (ts_ns, frame bytes and original length)


def records(path: Path) -> list[Record]:
    """Every whole record of a classic pcap, read here without rollcap's code."""
    data = path.read_bytes()
    magics = {b"\xd4\xc3\xb2\xa1": ("<", 1000), b"\x4d\x3c\xb2\xa1": ("<", 1),
              b"\xa1\xb2\xc3\xd4": (">", 1000), b"\xa1\xb2\x3c\x4d": (">", 1)}  # fmt: skip
    endian, scale = magics[data[:4]]
    out, off = [], 24
    while off + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack_from(endian + "IIII", data, off)
        if off + 16 + incl > len(data):
            break
        out.append((sec * NS + frac * scale, data[off + 16 : off + 16 + incl] + orig.to_bytes(4)))
        off += 16 + incl
    return out


def _wait(what: str, pred: Callable[[], bool], timeout: float, log: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}\n{log()[-3000:]}")


class BareTcpdump:
    """tcpdump --time-stamp-precision=nano -w, packet-buffered (-U) so the test
    can wait until its file holds every packet instead of sleeping."""

    def __init__(self, iface: str, out: Path) -> None:
        self.out, self.err = out, out.with_suffix(".err")
        with self.err.open("wb") as err:
            self.proc = subprocess.Popen(
                ["tcpdump", "-n", "-i", iface, "--time-stamp-precision=nano", "-U",
                 "-s", "262144", "-Z", "root", "-w", str(out)],
                stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip

    def text(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_listening(self) -> None:
        _wait("bare tcpdump listening", lambda: "listening on" in self.text(), 30, self.text)

    def packets(self) -> int:
        return len(records(self.out)) if self.out.exists() else 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


def _at(ns: int) -> str:
    """An epoch time expression, exact to the ns."""
    return f"@{ns // NS}.{ns % NS:09d}"


def test_nanosecond_capture_matches_bare_tcpdump_and_fetches_back_to_the_ns(
    veth: Veth, all_pcap: Path, base: Path, seaweedfs: SeaweedFS
) -> None:
    bucket = f"nano-{uuid.uuid4().hex[:12]}"
    seaweedfs.client().create_bucket(Bucket=bucket)
    env = {**os.environ, "PYTHONPATH": str(REPO), **seaweedfs.env()}
    env.pop("CREDENTIALS_DIRECTORY", None)
    cap = CaptureDaemon(
        base, veth.b, timestamp_precision="nano", rotate_megabytes=1, hostname="nano1",
        # the same (empty) filter as the bare tcpdump: both must see every frame
        exclude_offload_traffic=False,
        offload={"destination": f"s3://{bucket}/caps", "endpoint_url": seaweedfs.endpoint,
                 "region": "us-east-1", "rescan_seconds": 3600},
    )  # fmt: skip
    bare = BareTcpdump(veth.b, base / "bare.pcap")
    off: Offload | None = None
    try:
        cap.start()
        cap.wait_capturing()
        bare.wait_listening()
        veth.replay(all_pcap, loop=2, pps=20000)
        _wait("the bare tcpdump has every packet", lambda: bare.packets() >= 2 * PACKETS,
              60, bare.text)  # fmt: skip
        # rollcap's tcpdump got the same frames; its stop waits for the last kernel block
        assert cap.stop() == 0
        bare.stop()

        files = cap.ready_files()
        assert len(files) >= 2  # 2.5 MB in files of 1 MB: hand-offs of ns files
        assert all(p.read_bytes()[:4] == NANO_MAGIC for p in files)
        bare_recs = records(bare.out)
        assert len(bare_recs) == 2 * PACKETS
        ours = [r for p in files for r in records(p)]
        assert Counter(ours) == Counter(bare_recs)  # (ts to the ns, bytes), multisets
        assert any(ts % 1000 for ts, _b in ours)  # real ns stamps, not µs times 1000
        assert sum(count_packets(p) for p in files) == 2 * PACKETS  # capinfos agrees
        by_file = sorted((min(ts for ts, _b in records(f)), max(ts for ts, _b in records(f)))
                         for f in files)  # fmt: skip

        # a µs capture of another host in the same window (an older rollcap, or
        # a host left at "micro"), stored by the same offload
        first_ns = min(ts for ts, _b in bare_recs)
        last_ns = max(ts for ts, _b in bare_recs)
        start = datetime.fromtimestamp(first_ns // NS, UTC)
        micro_name = ReadyName(start, 999, "micro1", veth.b).format()
        micro_path = cap.spool / "ready" / micro_name
        micro_recs = [(ts // 1000 * 1000, b) for ts, b in bare_recs[:100]]
        write_pcap(micro_path, [(ts, b[:-4], int.from_bytes(b[-4:])) for ts, b in micro_recs])
        micro_path.chmod(0o640)
        assert micro_path.read_bytes()[:4] == b"\xd4\xc3\xb2\xa1"

        off = Offload(cap.config, seaweedfs.env()).start()
        off.wait_for("every file stored",
                     lambda: state(cap.spool).get("uploaded_files") == len(files) + 1,
                     timeout=120)  # fmt: skip
        assert off.stop() == 0
        assert list((cap.spool / "ready").iterdir()) == []
    finally:
        cap.kill()
        if bare.proc.poll() is None:
            bare.proc.kill()
        if off is not None and off.proc is not None and off.proc.poll() is None:
            off.proc.kill()

    # list: first/last packet of each object to the ns, from its metadata
    window = ["--since", _at(first_ns), "--until", _at(last_ns + 1)]
    p = run_rollcap(cap.config, env, "list", *window, "--host", "nano1", "--json")
    assert p.returncode == 0, p.stderr
    listed = json.loads(p.stdout)["captures"]
    assert sorted((c["first_ns"], c["last_ns"]) for c in listed) == by_file
    assert all(c["first"].endswith("Z") for c in listed)

    # fetch: a nano pcap with exactly the bare tcpdump's packets
    out = base / "fetched.pcap"
    p = run_rollcap(cap.config, env, "fetch", *window, "--host", "nano1", "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert out.read_bytes()[:4] == NANO_MAGIC
    got = records(out)
    assert Counter(got) == Counter(bare_recs)
    assert [ts for ts, _b in got] == sorted(ts for ts, _b in bare_recs)  # merged in time order

    # --since/--until compare at the ns: cut between two packets 1 ns apart in spirit
    stamps = sorted({ts for ts, _b in bare_recs if ts % 1000})
    cut = stamps[len(stamps) // 2]
    p = run_rollcap(cap.config, env, "fetch", "--since", _at(cut + 1), "--until", _at(last_ns + 1),
                 "--host", "nano1", "-o", str(base / "after.pcap"))  # fmt: skip
    assert p.returncode == 0, p.stderr
    after = records(base / "after.pcap")
    assert Counter(after) == Counter(r for r in bare_recs if r[0] > cut)  # cut itself is out
    p = run_rollcap(cap.config, env, "fetch", "--since", _at(first_ns), "--until", _at(cut),
                 "--host", "nano1", "-o", str(base / "before.pcap"))  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert Counter(records(base / "before.pcap")) == Counter(r for r in bare_recs if r[0] < cut)

    # a merge of the µs and the ns objects is written with ns: µs stamps times 1000
    mixed = base / "mixed.pcap"
    wider = ["--since", _at(first_ns // 1000 * 1000), "--until", _at(last_ns + 1)]
    p = run_rollcap(cap.config, env, "fetch", *wider, "--host", "nano1,micro1", "-o", str(mixed))
    assert p.returncode == 0, p.stderr
    assert mixed.read_bytes()[:4] == NANO_MAGIC
    assert Counter(records(mixed)) == Counter(bare_recs + micro_recs)
    assert count_packets(mixed) == len(bare_recs) + len(micro_recs)


def _us(recs: list[Record]) -> Counter[Record]:
    return Counter((ts // 1000 * 1000, b) for ts, b in recs)


def test_a_reload_from_micro_to_nano_loses_and_duplicates_nothing(
    veth: Veth, all_pcap: Path, base: Path
) -> None:
    """The reload is a make-before-break switch: the old generation writes µs,
    the new one ns, and the packets of the overlap are in both. The overlap
    check (bytes, time within 10 ms) does not depend on the precision."""
    cap = CaptureDaemon(base, veth.b, hostname="nano1", exclude_offload_traffic=False)
    bare = BareTcpdump(veth.b, base / "bare.pcap")
    replay = threading.Thread(target=veth.replay, args=(all_pcap,), kwargs={"pps": 500})
    try:
        cap.start()
        cap.wait_capturing()
        bare.wait_listening()
        replay.start()
        _wait("traffic before the reload", lambda: bare.packets() >= 1000, 30, bare.text)
        cap.reconfigure(timestamp_precision="nano")
        cap.signal(signal.SIGHUP)
        # the old generation's file is handed off once the new tcpdump runs
        cap.wait_for("the switch", lambda s: s.get("handed_off_files", 0) >= 1, timeout=30)
        replay.join()
        _wait("the bare tcpdump has every packet", lambda: bare.packets() >= PACKETS, 60,
              bare.text)  # fmt: skip
        assert cap.stop() == 0
        bare.stop()
    finally:
        replay.join()
        cap.kill()
        if bare.proc.poll() is None:
            bare.proc.kill()
    files = cap.ready_files()
    magics = [p.read_bytes()[:4] for p in files]
    assert magics[0] == b"\xd4\xc3\xb2\xa1" and magics[-1] == NANO_MAGIC  # µs, then ns
    bare_recs = records(bare.out)
    assert len(bare_recs) == PACKETS
    ours = [r for p in files for r in records(p)]
    assert _us(ours) == _us(bare_recs)  # every packet exactly once, either precision
    nano_recs = [r for p in files if p.read_bytes()[:4] == NANO_MAGIC for r in records(p)]
    assert nano_recs and not Counter(nano_recs) - Counter(bare_recs)  # exact to the ns
    assert cap.state()["duplicates_removed"] > 0  # the overlap had packets, stripped once
