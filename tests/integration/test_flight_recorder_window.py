"""Exact windows of the flight recorder, against a bare tcpdump on the same veth.

Real `rollcap capture` (offload.mode = "on-demand"), real `rollcap keep`,
`rollcap fetch --local` and `rollcap offload` against SeaweedFS; a plain
`tcpdump -w` on the same interface is the reference. Traffic runs across
both ends of a window that starts in the ring's past and ends in the future
when the keep is made: the ring (`fetch --local`) and the bucket each hold
exactly the reference's packets of the window, cut by timestamp.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Literal

import pytest

from rollcap.pcapfile import GLOBAL_HEADER_LEN, parse_header
from rollcap.timestamps import NS
from tests.integration.capture_daemon import REPO, CaptureDaemon
from tests.integration.test_flight_recorder import _rollcap, _wait_clock
from tests.integration.test_offload import Offload, decompress, keys_in, new_bucket
from tests.support.net import Veth
from tests.support.seaweedfs import SeaweedFS

pytestmark = pytest.mark.integration

Packet = tuple[int, bytes]  # (epoch ns, the frame as captured)


def packets(data: bytes) -> list[Packet]:
    """The records of a classic pcap (µs or ns), read here without rollcap's reader."""
    h = parse_header(data[:GLOBAL_HEADER_LEN])
    order: Literal["little", "big"] = "little" if h.endian == "<" else "big"
    scale = NS // h.ts_per_second
    out, off = [], GLOBAL_HEADER_LEN
    while off + 16 <= len(data):
        sec, frac, incl = (int.from_bytes(data[off + i : off + i + 4], order) for i in (0, 4, 8))
        out.append((sec * NS + frac * scale, data[off + 16 : off + 16 + incl]))
        off += 16 + incl
    return out


def cut(pkts: list[Packet], since_ns: int, until_ns: int) -> Counter[Packet]:
    return Counter(p for p in pkts if since_ns <= p[0] < until_ns)


def diff(got: Counter[Packet], want: Counter[Packet]) -> tuple[int, int]:
    """(missing, extra) packets of got against want."""
    return sum((want - got).values()), sum((got - want).values())


def test_a_window_from_the_past_into_the_future_is_exactly_tcpdumps(
    veth: Veth, all_pcap: Path, base: Path, seaweedfs: SeaweedFS
) -> None:
    bucket = new_bucket(seaweedfs)
    cap = CaptureDaemon(
        base, veth.b, rotate_megabytes=1, hostname="exact1",
        offload={"destination": f"s3://{bucket}/caps", "endpoint_url": seaweedfs.endpoint,
                 "region": "us-east-1", "mode": "on-demand"},
    )  # fmt: skip
    ref_path = base / "reference.pcap"
    ref = None
    off: Offload | None = None
    try:
        cap.start()
        cap.wait_capturing()
        off = Offload(cap.config, seaweedfs.env()).start()
        ref = subprocess.Popen(["tcpdump", "-i", veth.b, "-U", "-n", "-s", "0", "-Z", "root",
                                "-w", str(ref_path)], stderr=subprocess.PIPE)  # fmt: skip
        assert ref.stderr is not None
        assert b"listening on" in ref.stderr.readline()
        # about 10.7 s of traffic at 2000 packets/s: across both ends of the window
        sender = threading.Thread(target=veth.replay, args=(all_pcap,),
                                  kwargs={"loop": 4, "pps": 2000})  # fmt: skip
        t0 = time.time()
        sender.start()
        _wait_clock(t0 + 3)
        t_since, t_until = t0 + 1.5, t0 + 5.5  # 1.5 s of the past, 2.5 s of the future
        r = _rollcap(cap.config, "keep", "--since", f"@{t_since:.6f}", "--until",
                     f"@{t_until:.6f}", "--reason", "exact window", "--json")  # fmt: skip
        assert r.returncode == 0, r.stderr
        keep_id = json.loads(r.stdout)["id"]
        off.wait_for("the keep released", lambda: not (cap.spool / "keep" / f"{keep_id}.json")
                     .exists(), timeout=120)  # fmt: skip
        in_bucket = time.time() - t_until  # every object verified: the pin goes last
        sender.join(timeout=60)
        t_end = time.time()
        # the last file into ready/: the ring's part after the window is read below
        assert _rollcap(cap.config, "rotate").returncode == 0
        cap.wait_for("the last file cut", lambda s: (s.get("last_rotate") or {})
                     .get("at", 0) >= t_end, timeout=30)  # fmt: skip
        ref.send_signal(signal.SIGINT)
        ref.wait(timeout=10)
    finally:
        if ref is not None and ref.poll() is None:
            ref.kill()
        cap.kill()
        if off is not None and off.proc is not None and off.proc.poll() is None:
            off.stop()
    reference = packets(ref_path.read_bytes())
    since_ns, until_ns = int(t_since * NS), int(t_until * NS)
    want = cut(reference, since_ns, until_ns)
    assert sum(want.values()) > 7000 and len(reference) > sum(want.values()) + 7000

    # the bucket: exactly the window's packets (the files' other packets cut away)
    c = seaweedfs.client()
    shipped: list[Packet] = []
    for key in keys_in(seaweedfs, bucket, "caps/"):
        shipped += packets(decompress(c.get_object(Bucket=bucket, Key=key)["Body"].read(), key))
    assert diff(cut(shipped, since_ns, until_ns), want) == (0, 0)
    assert len(shipped) < len(reference)  # only the kept files went

    # the ring, read on the host after the window (not kept: still local), to the packet;
    # the window starts inside the ring's oldest file (the cut file before it was shipped)
    oldest = min(packets(p.read_bytes())[0][0] for p in (cap.spool / "ready").iterdir())
    ring_since, ring_until = oldest / NS + 0.5, t_end - 1.0
    want = cut(reference, int(ring_since * NS), int(ring_until * NS))
    assert sum(want.values()) > 2000
    out = base / "local.pcap"
    window = ["--since", f"@{ring_since:.6f}", "--until", f"@{ring_until:.6f}"]
    r = _rollcap(cap.config, "fetch", "--local", *window, "-i", veth.b, "-w", str(out))
    assert r.returncode == 0, r.stderr
    assert diff(Counter(packets(out.read_bytes())), want) == (0, 0)
    # a filter, as tcpdump's: the window's UDP packets only
    r = _rollcap(cap.config, "fetch", "--local", *window, "-w", str(base / "udp.pcap"), "udp")
    assert r.returncode == 0, r.stderr
    udp = packets((base / "udp.pcap").read_bytes())
    assert 0 < len(udp) < sum(want.values()) and Counter(udp) <= want
    r = _rollcap(cap.config, "fetch", "--local", *window, "-i", "eth9", "-w", str(base / "x"))
    assert r.returncode == 1 and "no captures in" in r.stderr, r.stderr
    # the bucket's list on this host: the ring's part is held locally, not a gap
    r = subprocess.run([sys.executable, "-m", "rollcap", "list", "--config", str(cap.config),
                        "--since", f"@{t_since:.6f}", "--until", f"@{ring_until:.6f}", "--json"],
                       cwd=REPO, capture_output=True, text=True, timeout=60,
                       env={**os.environ, **seaweedfs.env()})  # fmt: skip
    assert r.returncode == 0, r.stderr
    held = json.loads(r.stdout)["coverage"]["held_locally"]
    assert [(h["host"], h["iface"], h["kept_files"]) for h in held] == [("exact1", veth.b, 0)]
    assert held[0]["files"] == len(list((cap.spool / "ready").iterdir()))
    print(f"\nwindow in the bucket {in_bucket:.1f} s after it ended")
