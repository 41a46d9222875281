"""The index as the running daemons write it: real `rollcap capture` and real
`rollcap offload` processes, then `rollcap list --json`.

Earlier the manifest entries passed every test and benchmark that wrote them
by calling the pipeline directly, while the running offload (its storage
wrapped in DeferredStorage) never wrote one. These tests go through the
daemons only.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rollcap.storage import manifest
from tests.integration.capture_daemon import CaptureDaemon
from tests.integration.host_daemons import running
from tests.integration.test_offload import Offload, keys_in, new_bucket
from tests.support.cli import run_rollcap
from tests.support.net import Veth
from tests.support.seaweedfs import SeaweedFS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _stored_and_entries(kind: str, base: Path, seaweedfs: SeaweedFS | None, bucket: str
                        ) -> tuple[set[str], list[manifest.Entry]]:  # fmt: skip
    """Capture object keys, and the entries parsed from the index, as stored."""
    if seaweedfs is not None:
        keys = set(keys_in(seaweedfs, bucket, "caps/"))
        index = keys_in_all(seaweedfs, bucket, manifest.root("caps"))
        prefix = "caps"
    else:
        archive = base / "archive"
        keys = {str(p.relative_to(archive)) for p in archive.rglob("*.pcap.zst")}
        index = [str(p.relative_to(archive)) for p in (archive / manifest.DIR).rglob("*")
                 if p.is_file()]  # fmt: skip
        prefix = ""
    entries = [manifest.parse_key(k, prefix) for k in index]
    assert None not in entries, index
    return keys, [e for e in entries if e is not None]


def keys_in_all(w: SeaweedFS, bucket: str, prefix: str) -> list[str]:
    out: list[str] = []
    for page in w.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return out


def _destination(kind: str, base: Path, seaweedfs: SeaweedFS | None) -> tuple[dict[str, Any],
                                                                            dict[str, str], str]:
    if kind == "file":
        return {"destination": f"file://{base}/archive"}, {}, ""
    assert seaweedfs is not None
    bucket = new_bucket(seaweedfs)
    return {"destination": f"s3://{bucket}/caps", "endpoint_url": seaweedfs.endpoint,
            "region": "us-east-1"}, seaweedfs.env(), bucket  # fmt: skip


def _list_json(config: Path, env: dict[str, str], since: datetime, until: datetime,
               *args: str) -> dict[str, Any]:  # fmt: skip
    p = run_rollcap(config, {**os.environ, "PYTHONPATH": str(REPO), **env}, "list", "--json",
                    "--since", since.isoformat(), "--until", until.isoformat(), *args)  # fmt: skip
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert isinstance(out, dict)
    return out


@pytest.fixture(params=["s3", "file"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_the_running_offload_writes_an_entry_for_every_capture(
    kind: str, veth: Veth, all_pcap: Path, base: Path, request: pytest.FixtureRequest
) -> None:
    """Every capture the daemons stored has a manifest entry, and `rollcap
    list` answers from the entries alone (no host checked by listing)."""
    seaweedfs = request.getfixturevalue("seaweedfs") if kind == "s3" else None
    offload, env, bucket = _destination(kind, base, seaweedfs)
    since = datetime.now(UTC) - timedelta(seconds=5)
    with running(base, veth.b, env, rotate_megabytes=1, hostname="idx1",
                 offload={**offload, "rescan_seconds": 3600}) as host:  # fmt: skip
        veth.replay(all_pcap, loop=3, pps=20000)
        handed = host.drain()
    assert handed >= 3
    keys, entries = _stored_and_entries(kind, base, seaweedfs, bucket)
    assert len(keys) == handed
    assert {e.key for e in entries if e.has_object} == keys  # an entry for every capture
    assert all(e.host == "idx1" and e.iface == veth.b for e in entries)
    out = _list_json(host.capture.config, env, since, datetime.now(UTC) + timedelta(seconds=1))
    assert {c["key"] for c in out["captures"]} == keys
    assert out["coverage"]["source"] == "manifest"
    assert out["coverage"]["hosts_checked_by_listing"] == 0


def test_an_idle_link_is_covered_and_a_stopped_capture_is_a_gap(
    veth: Veth, all_pcap: Path, base: Path, seaweedfs: SeaweedFS
) -> None:
    """Host qa captures a busy and a quiet interface all along; host qb stops
    halfway. `rollcap list` reports a gap for qb alone: qa's idle periods are
    coverage entries (no object, never uploaded), not holes."""
    offload, env, bucket = _destination("s3", base, seaweedfs)
    quiet = Veth.create()
    try:
        common: dict[str, Any] = {"rotate_seconds": 10, "offload": offload}
        qa = CaptureDaemon(base / "qa", [veth.b, quiet.b], hostname="qa", **common)
        qb = CaptureDaemon(base / "qb", veth.b, hostname="qb", **common)
        offs: list[Offload] = []
        try:
            qa.start()
            qb.start()
            qa.wait_capturing()
            qb.wait_capturing()
            for d in (qa, qb):
                offs.append(Offload(d.config, env).start())
            # the window starts after both capture, before the packets that
            # give both hosts a capture in it
            since = datetime.now(UTC).replace(microsecond=0)
            veth.replay(all_pcap, pps=20000)  # both hosts capture it; then veth is idle too
            time.sleep(20)  # both capture (idle) for two rotations
            assert qb.stop() == 0
            time.sleep(30)  # qa goes on alone: qb's window ends in a 30 s gap
            until = datetime.now(UTC).replace(microsecond=0)
            time.sleep(3)
            assert qa.stop() == 0
            for d, o in zip((qa, qb), offs, strict=True):
                o.wait_for("ready/ emptied", lambda d=d: not any((d.spool / "ready").iterdir()),
                           timeout=60)  # fmt: skip
                assert o.stop() == 0
        finally:
            for d in (qa, qb):
                d.kill()
            for o in offs:
                if o.proc is not None and o.proc.poll() is None:
                    o.proc.kill()
    finally:
        quiet.delete()
    entries = [manifest.parse_key(k, "caps")
               for k in keys_in_all(seaweedfs, bucket, manifest.root("caps"))]  # fmt: skip
    coverage = {(e.host, e.iface) for e in entries if e is not None and not e.has_object}
    assert ("qa", quiet.b) in coverage and ("qa", veth.b) in coverage
    # no object for a coverage marker: every object is a capture with packets
    objects = keys_in(seaweedfs, bucket, "caps/")
    assert {e.key for e in entries if e is not None and e.has_object} == set(objects)
    assert all(e.packets > 0 for e in entries if e is not None and e.has_object)
    assert all(e.size == 0 and e.packets == 0 for e in entries if e is not None
               and not e.has_object)  # fmt: skip
    # the window must be settled (capture.rotate_seconds + 2 min) to be judged for gaps
    settled_at = until + timedelta(seconds=10 + 120 + 2)
    while datetime.now(UTC) < settled_at:
        time.sleep(min(5.0, (settled_at - datetime.now(UTC)).total_seconds() + 0.1))
    out = _list_json(qa.config, env, since, until)
    gaps = out["coverage"]["gaps"]
    assert gaps and {g["host"] for g in gaps} == {"qb"}, out["coverage"]
    assert all(g["seconds"] >= 20 for g in gaps), gaps
    assert {c["host"] for c in out["captures"]} == {"qa", "qb"}
