"""The flight recorder end to end: real `rollcap capture` on a veth pair, real
`rollcap keep`, real `rollcap offload` (offload.mode = "on-demand") against
SeaweedFS.

A window of traffic is kept, then the ring turns over three times under a
10 MB budget while the keep is pinned. The offload starts only after that:
the pin alone keeps the files (as when the offload is down or slow). Then
exactly the kept files go to the bucket, with the keep's id and reason in
their metadata and index entries, every packet of the window with them, and
the pin is released; the rest of the ring stays local.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

from rollcap.keep import pins
from rollcap.pcapfile import GLOBAL_HEADER_LEN
from rollcap.spool.fs import Dir
from tests.integration.capture_daemon import REPO, CaptureDaemon
from tests.integration.test_capture import BUDGET, FILE_MAX, _decided, _replay_and_sample
from tests.integration.test_offload import Offload, decompress, keys_in, new_bucket
from tests.support.net import Veth, count_packets
from tests.support.seaweedfs import SeaweedFS

pytestmark = pytest.mark.integration

PACKETS = 5374  # in all_pcap, about 1.2 MB
REASON = "INC-42 flight recorder"


def _rollcap(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollcap", *args, "--config", str(config)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _wait_clock(t: float) -> None:
    """Until the wall clock passes t (a window's end is a wall-clock time)."""
    while time.time() < t:
        time.sleep(min(0.05, max(0.0, t - time.time())))


def _held(spool: Path) -> set[str]:
    """The files of ready/ the pins hold, as capture and offload see them."""
    with Dir(spool / "keep") as d:
        keeps = pins.PinReader().read(d)
    with Dir(spool / "ready") as r:
        return set(pins.covered(pins.held_files(r), keeps))


def _packets_in(data: bytes, since: float, until: float) -> int:
    """Records of a classic little-endian µs pcap with since <= ts < until."""
    n, off = 0, GLOBAL_HEADER_LEN
    while off + 16 <= len(data):
        sec, usec, incl = (int.from_bytes(data[off + i : off + i + 4], "little") for i in (0, 4, 8))
        if since <= sec + usec / 1e6 < until:
            n += 1
        off += 16 + incl
    return n


def test_on_demand_ships_exactly_the_kept_window_while_the_ring_turns(
    veth: Veth, all_pcap: Path, base: Path, seaweedfs: SeaweedFS
) -> None:
    bucket = new_bucket(seaweedfs)
    cap = CaptureDaemon(
        base, veth.b, rotate_megabytes=1, hostname="ring1",
        spool={"max_megabytes": 10, "min_free_percent": 0},
        offload={"destination": f"s3://{bucket}/caps", "endpoint_url": seaweedfs.endpoint,
                 "region": "us-east-1", "mode": "on-demand"},
    )  # fmt: skip
    off: Offload | None = None
    try:
        cap.start()
        cap.wait_capturing()
        # before the window: traffic the keep must not ship
        veth.replay(all_pcap, loop=1, pps=10000)
        assert _rollcap(cap.config, "rotate").returncode == 0
        # names have whole seconds: the window starts a second after the cut
        _wait_clock(int(time.time()) + 1.05)
        t_since = time.time()
        veth.replay(all_pcap, loop=1, pps=10000)  # the window's traffic
        t_until = max(time.time() + 1.5, t_since + 2)  # tcpdump's last block is in
        # filed a second after the end: the file capture cuts next starts after it
        _wait_clock(t_until + 1.1)
        handed = cap.state().get("handed_off_files", 0)
        t0 = time.monotonic()
        r = _rollcap(cap.config, "keep", "--since", f"@{t_since:.6f}", "--until",
                     f"@{t_until:.6f}", "--reason", REASON, "--json")  # fmt: skip
        command_seconds = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        keep_id = out["id"]
        assert out["files"] >= 1 and out["unheld"] == [] and not out["repeated"]
        assert (cap.spool / "keep" / f"{keep_id}.json").is_file()  # durable when it returned
        # the window ended inside the live file: capture cuts it
        cap.wait_for(
            "the window's end cut and handed off",
            lambda s: f"keep {keep_id}: its window ended" in cap.log_text()
            and (s.get("last_rotate") or {}).get("at", 0) >= t_until
            and s.get("handed_off_files", 0) > handed,  # the cut file is in ready/
            timeout=30,
        )
        pinned = _held(cap.spool)
        assert pinned, "the keep holds no file"
        sizes = {n: (cap.spool / "ready" / n).stat().st_size for n in pinned}
        # the ring as `list --local` shows it: the window's files, kept by this keep
        r = _rollcap(cap.config, "list", "--local", "--since", f"@{t_since:.6f}", "--until",
                     f"@{t_until:.6f}", "--json")  # fmt: skip
        assert r.returncode == 0, r.stderr
        listed = json.loads(r.stdout)
        assert {f["name"] for f in listed} == pinned
        assert {f["keep_id"] for f in listed} == {keep_id}
        assert sum(sizes.values()) <= 3_000_000  # keep.pinned_percent = 30 of 10 MB

        # the ring turns over three times with the keep pinned, and no offload
        peak = _replay_and_sample(veth, all_pcap, cap.spool, loops=26, pps=10000,
                                  usage=_decided)  # fmt: skip
        st = cap.state()
        assert st["dropped_bytes"] >= 2 * BUDGET, st  # turned over (plus what the ring holds)
        assert peak <= BUDGET + FILE_MAX, f"spool reached {peak} bytes"
        lost = [n for n in pinned if not (cap.spool / "ready" / n).exists()]
        assert lost == [], f"pinned files dropped: {lost}"
        assert st["ring"]["keeps"] == 1 and st["ring"]["pinned_bytes"] >= sum(sizes.values())
        assert st["ring"]["lookback_seconds"] > 0 and st["ring"]["projected_seconds"] > 0
        assert "ring turned: dropped" in cap.log_text()

        off = Offload(cap.config, seaweedfs.env()).start()
        off.wait_for("the keep released", lambda: not (cap.spool / "keep" / f"{keep_id}.json")
                     .exists(), timeout=120)  # fmt: skip
        assert f"keep {keep_id} released" in off.text()
        local = {p.name for p in (cap.spool / "ready").iterdir()}
        assert not (pinned & local) and len(local) >= 5  # the rest of the ring stays here
    finally:
        cap.kill()
        if off is not None and off.proc is not None and off.proc.poll() is None:
            off.stop()

    c = seaweedfs.client()
    keys = keys_in(seaweedfs, bucket)
    assert len(keys) == len(pinned), (keys, pinned)
    window = shipped = 0
    for key in keys:
        obj = c.get_object(Bucket=bucket, Key=key)
        assert obj["Metadata"]["rollcap-keep-id"] == keep_id
        assert unquote(obj["Metadata"]["rollcap-keep-reason"]) == REASON
        data = decompress(obj["Body"].read(), key)
        window += _packets_in(data, t_since, t_until)
        shipped += _packets_in(data, 0, 2**32)
    # every packet of the window arrived, and nothing else: no traffic ran between
    # the cuts before and after the window and its edges
    assert (window, shipped) == (PACKETS, PACKETS)
    index = [o["Key"] for o in c.list_objects_v2(Bucket=bucket, Prefix="caps/_index/manifest")
             .get("Contents", [])]  # fmt: skip
    assert index
    for k in index:
        body = json.loads(gzip.decompress(c.get_object(Bucket=bucket, Key=k)["Body"].read()))
        assert (body["keep_id"], body["keep_reason"]) == (keep_id, REASON)
    # the keep's record beside the index, in the host's own index scope
    rec = json.loads(c.get_object(Bucket=bucket, Key=f"caps/_index/keeps/v1/ring1~{keep_id}.json"
                                  )["Body"].read())  # fmt: skip
    assert rec["objects"] == sorted(keys) and rec["keep"]["reason"] == REASON
    print(f"\ntrigger to durable pin: {out['durable_seconds'] * 1000:.1f} ms in the submit, "
          f"{command_seconds * 1000:.0f} ms for the whole `rollcap keep` process")
    assert sum(count_packets(cap.spool / "ready" / n) for n in local) > 0


def test_continuous_keep_of_stored_captures_is_a_record_beside_them(
    veth: Veth, all_pcap: Path, base: Path, seaweedfs: SeaweedFS
) -> None:
    """offload.mode = continuous: the window was uploaded already; a keep then
    rewrites nothing and writes the record naming those objects."""
    bucket = new_bucket(seaweedfs)
    cap = CaptureDaemon(
        base, veth.b, rotate_megabytes=1, hostname="ring2",
        offload={"destination": f"s3://{bucket}/caps", "endpoint_url": seaweedfs.endpoint,
                 "region": "us-east-1"},
    )  # fmt: skip
    off: Offload | None = None
    try:
        cap.start()
        cap.wait_capturing()
        off = Offload(cap.config, seaweedfs.env()).start()
        t_since = time.time()
        veth.replay(all_pcap, loop=2, pps=10000)
        assert _rollcap(cap.config, "rotate").returncode == 0
        t_until = time.time()
        off.wait_for("the window uploaded", lambda: not any(
            p.stat().st_size > GLOBAL_HEADER_LEN for p in (cap.spool / "ready").iterdir()),
            timeout=60)  # fmt: skip
        before = {k: seaweedfs.client().head_object(Bucket=bucket, Key=k)["ETag"]
                  for k in keys_in(seaweedfs, bucket)}  # fmt: skip
        assert before
        r = _rollcap(cap.config, "keep", "--since", f"@{t_since:.6f}", "--until",
                     f"@{t_until:.6f}", "--reason", REASON, "--json")  # fmt: skip
        assert r.returncode == 0, r.stderr
        keep_id = json.loads(r.stdout)["id"]
        # released once capture has cut past the window (its next file, here a rotate)
        assert _rollcap(cap.config, "rotate").returncode in (0, 1)
        off.wait_for("the keep released", lambda: not (cap.spool / "keep" / f"{keep_id}.json")
                     .exists(), timeout=60)  # fmt: skip
    finally:
        cap.kill()
        if off is not None and off.proc is not None and off.proc.poll() is None:
            off.stop()
    c = seaweedfs.client()
    rec = json.loads(c.get_object(Bucket=bucket, Key=f"caps/_index/keeps/v1/ring2~{keep_id}.json"
                                  )["Body"].read())  # fmt: skip
    assert set(rec["objects"]) == set(before)
    # never a rewrite: the stored objects are the bytes they were
    assert {k: c.head_object(Bucket=bucket, Key=k)["ETag"] for k in before} == before
