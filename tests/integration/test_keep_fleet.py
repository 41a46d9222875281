"""A fleet keep through the bucket, answered by real `rollcap offload` daemons.

Four hosts share one SeaweedFS bucket and prefix, each with its own spool and
config (capture.hostname). web1 (continuous) stored the whole window; web2
and web3 are flight recorders (offload.mode = "on-demand", answering through
their rings' pins): web2's ring holds the window and ships exactly its files,
web3's holds only files from after it (it turned over and no longer holds
the window); web4 stored its
captures earlier and is stopped, so the fleet index knows it but it cannot
answer. `rollcap keep --fleet --host 'web*'` writes one request; the three
running daemons find it at their next poll and acknowledge it; `rollcap keep
--status ID` names web1 and web2 as shipped, web3 as holding nothing (the
whole window not held) and web4 as not answered. A restarted daemon does not
answer again, and a hostile request object beside it changes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rollcap.keep import fleet
from rollcap.keep.shipping import record_key
from rollcap.spool import Spool
from rollcap.spool.readyname import ReadyName
from tests.support.archive import write_pcap
from tests.support.seaweedfs import SeaweedFS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PREFIX = "fk"
PERIOD = 600
DAY = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SINCE, UNTIL = DAY + timedelta(minutes=10), DAY + timedelta(minutes=40)
NS = 1_000_000_000
FRAME = bytes.fromhex("ffffffffffff020000000001080045000014000100004001f96c7f0000017f000001")
POLL = 1  # keep_poll_seconds: the test waits on conditions, short polls keep it quick


def _fill(spool: Spool, host: str, first: datetime, files: int, offset: int) -> None:
    """Finished captures in ready/, as capture hands them off (10 packets each)."""
    for d in spool.all_dirs():
        d.mkdir(parents=True, exist_ok=True)
    for k in range(files):
        start = first + timedelta(seconds=offset + k * PERIOD)
        t0 = int(start.timestamp()) * NS
        recs = [(t0 + (j + 1) * PERIOD * NS // 11, FRAME, len(FRAME)) for j in range(10)]
        name = ReadyName(start, k + 1, host, "eth0").format()
        tmp = write_pcap(spool.tmp / name, recs)
        closed = start.timestamp() + PERIOD + 0.2
        os.utime(tmp, (closed, closed))
        tmp.rename(spool.ready / name)
    # capture's published state, as its daemon writes it: nothing of lo is left in
    # work/ (no capture runs here; the files above are its hand-off). The offload
    # releases a keep only once every interface's work_since passed the window's end.
    (spool.capture_state / "capture.json").write_text(
        json.dumps({"interfaces": {"lo": {"work_since": time.time()}}}))


class Host:
    def __init__(self, base: Path, name: str, w: SeaweedFS, bucket: str,
                 on_demand: bool = False) -> None:  # fmt: skip
        self.name = name
        self.dir = base / name
        self.dir.mkdir()
        self.spool = Spool.at(self.dir / "spool")
        self.config = self.dir / "rollcap.toml"
        self.config.write_text(
            f'[capture]\ninterface = "lo"\nhostname = "{name}"\nrotate_seconds = {PERIOD}\n'
            f'[spool]\ndirectory = "{self.spool.root}"\nmax_megabytes = 100000\n'
            'group = "root"\n' + ('on_full = "drop-oldest"\n' if on_demand else "")
            + f'[offload]\ndestination = "s3://{bucket}/{PREFIX}"\nendpoint_url = "{w.endpoint}"\n'
            f'region = "us-east-1"\nrescan_seconds = 2\nkeep_poll_seconds = {POLL}\n'
            + ('mode = "on-demand"\n' if on_demand else "")
            + '[metrics]\ntextfile_directory = ""\n[log]\nlevel = "info"\n'
        )
        self.log = self.dir / "offload.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        with self.log.open("ab") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rollcap", "offload", "--config", str(self.config)],
                cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def stop(self) -> int | None:
        p = self.proc
        if p is None:
            return None
        if p.poll() is None:
            os.killpg(p.pid, 15)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                p.wait(10)
        self.proc = None
        return p.returncode

    def state(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.spool.state / "offload.json").read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def polls(self) -> int:
        return int(self.state().get("fleet_keep", {}).get("polls", 0))


def _wait(what: str, cond: Callable[[], bool], hosts: list[Host], timeout: float = 90) -> float:
    t0 = time.monotonic()
    while not cond():
        dead = [h.name for h in hosts if h.proc is not None and h.proc.poll() is not None]
        if dead or time.monotonic() - t0 > timeout:
            logs = {h.name: h.log.read_text()[-2000:] for h in hosts}
            raise AssertionError(f"waiting for {what} (exited: {dead}): {logs}")
        time.sleep(0.1)
    return time.monotonic() - t0


@pytest.fixture
def hosts(seaweedfs: SeaweedFS, tmp_path: Path) -> Iterator[tuple[list[Host], dict[str, str]]]:
    bucket = f"fk-{uuid.uuid4().hex[:12]}"
    seaweedfs.client().create_bucket(Bucket=bucket)
    env = {**os.environ, **seaweedfs.env(), "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    env.pop("NOTIFY_SOCKET", None)
    env.pop("CREDENTIALS_DIRECTORY", None)
    # web2 and web3 are flight recorders (on demand): their answers are their rings' pins
    hs = [Host(tmp_path, n, seaweedfs, bucket, on_demand=n in ("web2", "web3"))
          for n in ("web1", "web2", "web3", "web4")]  # fmt: skip
    try:
        yield hs, env
    finally:
        for h in hs:
            h.stop()


def _rollcap(host: Host, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollcap", *args, "--config", str(host.config)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_three_daemons_answer_a_fleet_keep_and_status_tells_them_apart(
    hosts: tuple[list[Host], dict[str, str]], seaweedfs: SeaweedFS,
) -> None:
    hs, env = hosts
    web1, web2, web3, web4 = hs
    _fill(web1.spool, "web1", DAY, 6, 3)
    _fill(web2.spool, "web2", DAY, 6, 17)
    # 13:00-14:00: its ring turned over since and no longer holds the window
    _fill(web3.spool, "web3", DAY + timedelta(hours=1), 6, 5)
    _fill(web4.spool, "web4", DAY, 6, 29)
    for h in hs:
        h.start(env)
    stored = [web1, web4]
    _wait("every file stored", lambda: all(h.state().get("uploaded_files") == 6 for h in stored),
          hs)  # fmt: skip
    for h in (web2, web3):
        _wait(f"{h.name} running", lambda h=h: h.state().get("state") == "running", hs)  # type: ignore[misc]
    assert not _objects(seaweedfs, web2, f"{PREFIX}/web2/")  # a ring: nothing shipped unasked
    assert web4.stop() == 0  # known from the index, not running: it cannot answer

    # the request: one object, written by the requester's CLI
    t0 = time.monotonic()
    r = _rollcap(web1, env, "keep", "--fleet", "--host", "web*", "--since",
                 "2026-11-26T12:10:00Z", "--until", "2026-11-26T12:40:00Z",
                 "--reason", "INC-42")  # fmt: skip
    assert r.returncode == 0, r.stderr
    rid = r.stdout.split()[-1]
    assert fleet.request_key(PREFIX, rid) in {
        o["Key"] for o in seaweedfs.client().list_objects_v2(
            Bucket=_bucket(web1), Prefix=f"{PREFIX}/_requests/").get("Contents", [])
    }  # fmt: skip
    running = [web1, web2, web3]
    acks = {h.name: fleet.ack_key(PREFIX, rid, h.name) for h in running}
    client = seaweedfs.client()

    def answered() -> bool:
        got = client.list_objects_v2(Bucket=_bucket(web1), Prefix=fleet.acks_prefix(PREFIX, rid))
        return {o["Key"] for o in got.get("Contents", [])} == set(acks.values())

    _wait("an acknowledgement from each running host", answered, running)
    print(f"\nfleet request -> 3 acknowledgements: {time.monotonic() - t0:.2f} s "
          f"(keep_poll_seconds = {POLL}, with the CLI's own start)")  # fmt: skip

    st = _rollcap(web1, env, "keep", "--status", rid, "--json")
    assert st.returncode == 1, st.stderr  # 1: a host has not answered (web4)
    assert "1 host(s) have not answered yet" in st.stderr
    got = json.loads(st.stdout)
    by_host = {a["host"]: a for a in got["acks"]}
    window = (int(SINCE.timestamp()) * NS, int(UNTIL.timestamp()) * NS)
    # web1, web2: the files open at 12:00, 12:10, 12:20 and 12:30 cover the window
    for h in ("web1", "web2"):
        assert (by_host[h]["state"], by_host[h]["files"], by_host[h]["unheld"]) == (
            "shipped", 4, []), by_host[h]
        assert by_host[h]["bytes"] > 0
    assert (by_host["web3"]["state"], by_host["web3"]["files"]) == ("nothing-held", 0)
    assert by_host["web3"]["unheld"] == [list(window)]
    assert got["not_answered"] == ["web4"]
    # web1 (continuous) marked its stored window as evidence: a keep record naming them
    record = record_key(PREFIX, "web1", rid)
    _wait("web1's keep record", lambda: bool(_objects(seaweedfs, web1, record)), hs)
    named = json.loads(client.get_object(Bucket=_bucket(web1), Key=record)["Body"].read())
    assert len([k for k in json.dumps(named).split('"') if k.startswith(f"{PREFIX}/web1/")]) == 4
    # web2's ring shipped the window's four files, and kept the two after it
    _wait("web2's window in the bucket",
          lambda: len(_objects(seaweedfs, web2, f"{PREFIX}/web2/")) == 4, hs)  # fmt: skip
    for key in _objects(seaweedfs, web2, f"{PREFIX}/web2/"):  # traced to the request
        meta = client.head_object(Bucket=_bucket(web2), Key=key)["Metadata"]
        assert (meta["rollcap-keep-id"], meta["rollcap-keep-reason"]) == (rid, "INC-42")
    assert sorted(p.name[:15] for p in web2.spool.ready.iterdir()) == [
        "20261126T124017", "20261126T125017"]
    text = _rollcap(web1, env, "keep", "--status", rid)
    assert text.returncode == 1, text.stderr
    for line in ("shipped: 2", "held nothing: 1",
                 "web3: 0 files, 0 bytes; not held: 2026-11-26T12:10:00Z..2026-11-26T12:40:00Z",
                 "not answered: 1 (web4)"):  # fmt: skip
        assert line in text.stdout, text.stdout

    # a restart answers nothing twice; a hostile request beside it is one log line
    first = client.get_object(Bucket=_bucket(web1), Key=acks["web1"])["Body"].read()
    client.put_object(Bucket=_bucket(web1), Key=f"{PREFIX}/_requests/EVIL.json",
                      Body=json.dumps({"id": "EVIL", "prefix": "web2/"}).encode())  # fmt: skip
    assert web1.stop() == 0
    web1.start(env)
    # the poll that refuses EVIL has passed over INC-42 (one pass over the listing)
    _wait("the restarted daemon's poll", lambda: "EVIL.json" in web1.log.read_text(), [web1])
    log = web1.log.read_text()
    assert log.count(f"fleet keep {rid} (INC-42): shipped") == 1, log
    assert log.count("fleet keep request ignored") == 1
    assert "EVIL.json: prefix: Extra inputs are not permitted" in log
    assert client.get_object(Bucket=_bucket(web1), Key=acks["web1"])["Body"].read() == first
    assert web1.proc is not None and web1.proc.poll() is None  # still running


def _objects(w: SeaweedFS, h: Host, prefix: str) -> list[str]:
    got = w.client().list_objects_v2(Bucket=_bucket(h), Prefix=prefix)
    return [o["Key"] for o in got.get("Contents", [])]


def _bucket(h: Host) -> str:
    text = h.config.read_text()
    return text.split("s3://", 1)[1].split("/", 1)[0]
