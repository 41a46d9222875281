"""A compromised host against another host's evidence, on a real IAM evaluator.

SeaweedFS 4.x evaluates IAM user policies (its embedded IAM API: users,
access keys, PutUserPolicy) with resource patterns, ${aws:username} and the
s3:prefix condition. Each host gets exactly the policy `rollcap
check-destination --policy` prints (one for the fleet), the analyst the
`--role reader` one. web2 then plants forged, hiding and oversized index
entries for web1; `list`, `fetch` and `hold` of web1 must give exactly web1's
real packets and objects, and report what they refused. The same attack with
unscoped credentials shows what the scoping prevents. SeaweedFS does not
evaluate the write-once conditions: hosts get the policy printed with
--no-write-once-condition, and a test shows what the default one does there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from rollcap.config.schema import OffloadConfig
from rollcap.spool.readyname import ReadyName
from rollcap.storage import manifest, open_storage
from rollcap.storage.base import META, StorageError
from tests.support.archive import (
    NS,
    make_object,
    ns,
    read_frames,
    read_timestamps,
    sha256,
    utc,
    write_pcap,
)
from tests.support.cli import run_rollcap
from tests.support.seaweedfs import SeaweedFS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
T0 = utc(2026, 11, 26, 12, 0, 0)
WINDOW = ["--since", "2026-11-26T12:00:00Z", "--until", "2026-11-26T12:30:00Z"]
FRAMES = read_frames(REPO / "tests" / "data" / "pcaps" / "ssh.pcap")


@pytest.fixture(scope="module")
def iam_seaweedfs() -> Iterator[SeaweedFS]:
    """A SeaweedFS whose embedded IAM API accepts users and policies."""
    w = SeaweedFS(extra_args=["-s3.iam.readOnly=false"]).start()
    try:
        yield w
    finally:
        w.cleanup()


@dataclass
class World:
    sw: SeaweedFS
    bucket: str
    tmp: Path
    creds: dict[str, tuple[str, str]]  # user -> (access key, secret)

    def config(self, host: str = "web1") -> Path:
        p = self.tmp / f"rollcap-{host}.toml"
        p.write_text(
            f'[capture]\nhostname = "{host}"\n[offload]\n'
            f'destination = "s3://{self.bucket}/caps"\nendpoint_url = "{self.sw.endpoint}"\n'
            'region = "us-east-1"\n'
        )
        return p

    def env(self, user: str) -> dict[str, str]:
        key, secret = self.creds[user]
        env = {**os.environ, "PYTHONPATH": str(REPO), "AWS_ACCESS_KEY_ID": key,
               "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
        env.pop("CREDENTIALS_DIRECTORY", None)
        return env

    def s3(self, user: str) -> Any:
        key, secret = self.creds[user]
        return boto3.client("s3", endpoint_url=self.sw.endpoint, aws_access_key_id=key,
                            aws_secret_access_key=secret, region_name="us-east-1")  # fmt: skip

    @contextmanager
    def storage(self, user: str, host: str) -> Iterator[Any]:
        offload = OffloadConfig(destination=f"s3://{self.bucket}/caps",
                                endpoint_url=self.sw.endpoint, region="us-east-1")  # fmt: skip
        with pytest.MonkeyPatch.context() as mp:
            for k, v in self.env(user).items():
                mp.setenv(k, v)
            store = open_storage(offload, host)
            try:
                yield store
            finally:
                store.close()

    def rollcap(self, user: str, *args: str) -> Any:
        return run_rollcap(self.config(), self.env(user), *args)


def _policy(world: World, *args: str) -> str:
    p = run_rollcap(world.config(), {**os.environ, "PYTHONPATH": str(REPO)},
                    "check-destination", "--policy", *args)  # fmt: skip
    assert p.returncode == 0, p.stderr
    return _for_seaweedfs("\n".join(ln for ln in p.stdout.splitlines() if not ln.startswith("#")))


# SeaweedFS 4.48 refuses a policy naming an action it does not know:
# s3:ListBucketMultipartUploads (its validator rejects the name, yet its
# evaluator allows ListMultipartUploads only to s3:List* or s3:PutObject on the
# bucket: measured) and s3:GetEncryptionConfiguration (check-destination then
# only warns). The test grants s3:PutObject on the bucket ARN itself, which
# names no key; every other statement is evaluated as printed, and the test
# would see any key write that this let through.
_SEAWEEDFS_NAMES = {"s3:ListBucketMultipartUploads": "s3:PutObject"}
# SeaweedFS 4.48 does not evaluate s3:if-none-match nor s3:ObjectCreationOperation
# (measured: a statement conditioned on either matches no request), so the
# default write-once host policy denies it every write
# (test_the_write_once_policy_on_seaweedfs_...): hosts get the policy without it.
SEAWEEDFS_HOST = ("--no-write-once-condition",)
_SEAWEEDFS_UNKNOWN = {"s3:GetEncryptionConfiguration"}


def _for_seaweedfs(text: str) -> str:
    policy = json.loads(text)
    for st in policy["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        st["Action"] = [_SEAWEEDFS_NAMES.get(a, a) for a in actions if a not in _SEAWEEDFS_UNKNOWN]
    return json.dumps(policy)


def _world(sw: SeaweedFS, tmp: Path, scoped: bool) -> World:
    bucket = f"trust-{uuid.uuid4().hex[:10]}"
    sw.client().create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    admin = (sw.access_key, sw.secret_key)
    world = World(sw, bucket, tmp, {"admin": admin})
    if not scoped:  # every identity has the admin's rights
        world.creds |= {"web1": admin, "web2": admin, "analyst": admin}
        return world
    host_policy = _policy(world, *SEAWEEDFS_HOST)  # one policy, the same for both hosts
    reader_policy = _policy(world, "--role", "reader")
    for user, policy in (("web1", host_policy), ("web2", host_policy),
                         ("analyst", reader_policy)):  # fmt: skip
        _user(world, user, policy)
    return world


def _user(world: World, user: str, policy: str) -> None:
    """An IAM user named as the host (the analyst: one per bucket) with this policy."""
    sw = world.sw
    iam = boto3.client("iam", endpoint_url=sw.endpoint, aws_access_key_id=sw.access_key,
                       aws_secret_access_key=sw.secret_key, region_name="us-east-1")  # fmt: skip
    tag = world.bucket[-6:]
    name = user if user != "analyst" else f"analyst-{tag}"
    with contextlib.suppress(ClientError):  # the module's other world created it
        iam.create_user(UserName=name)
    k = iam.create_access_key(UserName=name)["AccessKey"]
    world.creds[user] = (k["AccessKeyId"], k["SecretAccessKey"])
    iam.put_user_policy(UserName=name, PolicyName=f"rollcap-{tag}", PolicyDocument=policy)


def _store(world: World, user: str, host: str, minutes: int, seq: int, packets: int,
           meta_host: str | None = None, entry: bool = True) -> tuple[str, list[int]]:  # fmt: skip
    """An object as the offload stores it, with its manifest entries (as `user`)."""
    start = T0 + timedelta(minutes=minutes)
    stamps = [ns(start) + i * NS for i in range(1, packets + 1)]
    work = world.tmp / f"{user}-{host}-{seq}"
    work.mkdir()
    local, key, md = make_object(work, prefix="caps", host=host, iface="eth0", start=start,
                                 seq=seq, stamps=stamps, frames=FRAMES)  # fmt: skip
    if meta_host:
        md[META["host"]] = meta_host
    with world.storage(user, host) as store:
        store.put_file(local, key, size=local.stat().st_size, sha256=sha256(local), metadata=md)
        if entry:
            manifest.write_entries(store, _entry(key, host, md, local.stat().st_size), "caps")
    return key, stamps


def _entry(key: str, host: str, md: dict[str, str], size: int = 0, **over: Any
           ) -> manifest.Entry:  # fmt: skip
    first = int(md[META["first_ts"]].replace(".", "")) * 1000
    last = int(md[META["last_ts"]].replace(".", "")) * 1000
    fields: dict[str, Any] = dict(
        key=key, host=host, iface="eth0", opened=utc(2026, 11, 26, 12, 0, 0),
        closed_ts=math.ceil(last / NS), first_ns=first, last_ns=last,
        packets=int(md[META["packets"]]), pcap_bytes=int(md[META["pcap_bytes"]]), size=size or 1,
        linktype=1,
    )  # fmt: skip
    fields.update(over)
    return manifest.Entry(**fields)


def _put_entry(world: World, user: str, e: manifest.Entry) -> str:
    """One forged entry, written as `user` straight through S3; its key, or
    the error code."""
    key = manifest.entry_keys(e, "caps")[0]
    try:
        world.s3(user).put_object(Bucket=world.bucket, Key=key, Body=manifest.entry_body(e))
    except ClientError as err:
        return str(err.response["Error"]["Code"])
    return key


def _attack(world: World, real_key: str) -> dict[str, str]:
    """web2 against web1. Returns what each attempt got (a key or an error code)."""
    head = world.s3("admin").head_object(Bucket=world.bucket, Key=real_key)
    md = {k.lower(): v for k, v in head["Metadata"].items()}
    real = _entry(real_key, "web1", md, int(head["ContentLength"]),
                  opened=T0 + timedelta(minutes=10))  # fmt: skip
    got: dict[str, str] = {}
    # web2's own object (5 packets), its metadata saying web1
    own_key, _ = _store(world, "web2", "web2", 12, 90, 5, meta_host="web1", entry=False)
    five = dataclasses.replace(real, key=own_key, packets=5)
    got["relabel"] = _put_entry(world, "web2", five)  # web1~ entry naming web2's object
    got["hide"] = _put_entry(world, "web2", _entry(real_key, "web1", md, 24, packets=0,
                                                  opened=real.opened))  # fmt: skip
    huge = {"size": 10**15, "pcap_bytes": 10**15, "opened": real.opened}
    got["oversize"] = _put_entry(world, "web2", _entry(real_key, "web1", md, **huge))
    # the same claims under web2's own name (what its policy lets it write)
    got["hide-as-web2"] = _put_entry(world, "web2", _entry(real_key, "web2", md, 24, packets=0,
                                                          opened=real.opened))  # fmt: skip
    got["oversize-as-web2"] = _put_entry(world, "web2", _entry(real_key, "web2", md, **huge))
    # a capture of its own making, stored as web1's
    try:
        fake_key, _ = _store(world, "web2", "web1", 15, 91, 5)
        got["plant-object"] = fake_key
    except StorageError as e:
        got["plant-object"] = e.code or str(e)
    return got


def _offload(world: World, user: str, host: str, captures: list[tuple[int, int]]) -> None:
    """A real `rollcap offload` with `user`'s credentials stores captures of
    ``host`` (minutes after T0, packets)."""
    spool = world.tmp / f"spool-{world.bucket}-{host}"
    for d in ("work", "ready", "quarantine", "tmp", "state"):
        (spool / d).mkdir(parents=True)
    for seq, (minutes, packets) in enumerate(captures, 1):
        start = T0 + timedelta(minutes=minutes)
        stamps = [ns(start) + i * NS for i in range(1, packets + 1)]
        recs = [(ts, *FRAMES[i % len(FRAMES)]) for i, ts in enumerate(stamps)]
        tmp = write_pcap(spool / "tmp" / f"x{seq}.pcap", recs)
        os.utime(tmp, (stamps[-1] / NS + 1, stamps[-1] / NS + 1))  # closed after its last packet
        tmp.rename(spool / "ready" / ReadyName(start, seq, host, "eth0").format())
    cfg = world.tmp / f"offload-{world.bucket}-{host}.toml"
    cfg.write_text(
        f'[capture]\nhostname = "{host}"\n[spool]\ndirectory = "{spool}"\n[offload]\n'
        f'destination = "s3://{world.bucket}/caps"\nendpoint_url = "{world.sw.endpoint}"\n'
        'region = "us-east-1"\n[metrics]\ntextfile_directory = ""\n'
    )
    env = world.env(user)
    env.pop("NOTIFY_SOCKET", None)
    log = world.tmp / f"offload-{world.bucket}-{host}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "rollcap", "offload", "--config", str(cfg)],
                                cwd=REPO, env=env, stdout=out, stderr=out,
                                start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while _uploaded(spool) < len(captures):  # stored and verified
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    assert not any((spool / "quarantine").iterdir()), log.read_text()


def _uploaded(spool: Path) -> int:
    try:
        return int(json.loads((spool / "state" / "offload.json").read_text())["uploaded_files"])
    except (FileNotFoundError, ValueError, KeyError):
        return 0


def _real(world: World) -> tuple[list[int], str]:
    """web1's two real captures, stored by web1's own offload: their packet
    times, and the key of the second."""
    _offload(world, "web1", "web1", [(0, 7), (10, 9)])
    listed = world.s3("admin").list_objects_v2(Bucket=world.bucket, Prefix="caps/")
    keys = sorted(o["Key"] for o in listed.get("Contents", []) if o["Key"].startswith("caps/web1/"))
    assert len(keys) == 2, keys
    # the offload daemon wrote their manifest entries (checked by the caller)
    stamps = [ns(T0 + timedelta(minutes=m)) + i * NS for m, n in ((0, 7), (10, 9))
              for i in range(1, n + 1)]  # fmt: skip
    return stamps, keys[1]


def _listed(world: World, *args: str) -> dict[str, Any]:
    p = world.rollcap("analyst", "list", *WINDOW, "--json", *args)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)  # type: ignore[no-any-return]


def test_a_host_with_its_printed_policy_cannot_touch_another_hosts_evidence(
    iam_seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    world = _world(iam_seaweedfs, tmp_path, scoped=True)
    # the printed policy is enough for the host's own checks and writes
    chk = world.rollcap("web1", "check-destination")
    assert chk.returncode == 0, chk.stdout + chk.stderr
    assert any(ln.startswith("ok    put index entry") for ln in chk.stdout.splitlines())
    # a host policy without the index statement: the probe names what is missing
    old = json.loads(_policy(world, *SEAWEEDFS_HOST))
    old["Statement"] = [st for st in old["Statement"] if st["Sid"] != "RollcapOwnIndexEntries"]
    _user(world, "web3", json.dumps(old))
    chk3 = run_rollcap(world.config("web3"), world.env("web3"), "check-destination")
    assert chk3.returncode == 1
    fails = [ln for ln in chk3.stdout.splitlines() if ln.startswith("FAIL")]
    assert len(fails) == 1 and "put index entry" in fails[0], chk3.stdout
    assert "needs s3:PutObject on caps/_index/*/web3~*" in fails[0], fails
    assert "check-destination failed: put index entry" in chk3.stderr

    want, real_key = _real(world)
    real_keys = {o["key"] for o in _listed(world, "--host", "web1")["captures"]}
    assert len(real_keys) == 2 and real_key in real_keys
    # the offload wrote its entries with its policy
    slot = manifest.host_prefix("caps", T0, "web1")
    entries = world.s3("admin").list_objects_v2(Bucket=world.bucket, Prefix=slot)
    assert entries.get("KeyCount") == 1, entries

    got = _attack(world, real_key)
    # what IAM refused: entries named for web1, objects below web1/
    assert got["relabel"] == got["hide"] == got["oversize"] == "AccessDenied", got
    assert got["plant-object"] == "AccessDenied", got
    # what it let web2 write, and readers refuse
    assert got["hide-as-web2"].startswith("caps/_index/") and got["oversize-as-web2"], got

    one = _listed(world, "--host", "web1")
    assert {o["key"] for o in one["captures"]} == real_keys
    assert {o["host"] for o in one["captures"]} == {"web1"}
    every = _listed(world)
    assert {o["key"] for o in every["captures"]} == real_keys  # web2's 5 packets: not web1's
    rejected = every["coverage"]["rejected"]
    named = {r["entry"] for r in rejected}
    assert {got["hide-as-web2"], got["oversize-as-web2"]} <= named, rejected
    by_entry = {r["entry"]: r["reason"] for r in rejected}
    assert "not under web2's prefix" in by_entry[got["hide-as-web2"]], rejected
    assert "not under web2's prefix" in by_entry[got["oversize-as-web2"]], rejected
    # web2's own object, its metadata saying web1: reported, shown as nobody's
    mislabelled = [e for e, why in by_entry.items() if "metadata names host web1" in why]
    assert len(mislabelled) == 1 and mislabelled[0].startswith("caps/web2/"), rejected
    text = world.rollcap("analyst", "list", *WINDOW)
    assert "# rejected: " + got["hide-as-web2"] in text.stdout, text.stdout

    _fetch_and_hold_see_only_web1(world, want, real_keys)

    # the requester writes keep requests, and touches no evidence
    _user(world, "ops", _policy(world, "--role", "requester"))
    ops = world.s3("ops")
    ops.put_object(Bucket=world.bucket, Key="caps/_requests/INC-42.json", Body=b"{}")
    b, off = world.bucket, {"Status": "OFF"}
    for deny in (
        lambda: ops.put_object(Bucket=b, Key=real_key, Body=b"x"),
        lambda: ops.get_object(Bucket=b, Key=real_key),
        lambda: ops.put_object_legal_hold(Bucket=b, Key=real_key, LegalHold=off),
    ):
        with pytest.raises(ClientError, match="AccessDenied"):
            deny()


def test_the_write_once_policy_on_seaweedfs_denies_every_write_and_check_destination_says_why(
    iam_seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    """What SeaweedFS can and cannot prove about write-once: it ignores the
    condition keys, so the default policy there allows no write at all (not
    even a conditional one), and check-destination names the way out; the
    policy without them lets a host overwrite its own capture, the gap that the
    condition closes on AWS (unit-tested against the JSON only)."""
    world = _world(iam_seaweedfs, tmp_path, scoped=True)
    _user(world, "web4", _policy(world))  # the default, write-once
    c4 = world.s3("web4")
    b = world.bucket
    for put in (
        lambda: c4.put_object(Bucket=b, Key="caps/web4/a", Body=b"x", IfNoneMatch="*"),
        lambda: c4.put_object(Bucket=b, Key="caps/web4/b", Body=b"x"),
        lambda: c4.create_multipart_upload(Bucket=b, Key="caps/web4/c"),
    ):
        with pytest.raises(ClientError, match="AccessDenied"):
            put()
    chk = run_rollcap(world.config("web4"), world.env("web4"), "check-destination")
    assert chk.returncode == 1
    fails = [ln for ln in chk.stdout.splitlines() if ln.startswith("FAIL")]
    assert fails and all("--no-write-once-condition" in ln for ln in fails), chk.stdout
    assert any(ln.startswith("FAIL  put ") for ln in fails), chk.stdout
    # without the condition: web1 can replace its own past capture
    c1 = world.s3("web1")
    c1.put_object(Bucket=b, Key="caps/web1/old", Body=b"evidence", IfNoneMatch="*")
    with pytest.raises(ClientError, match="PreconditionFailed"):  # what the offload sends
        c1.put_object(Bucket=b, Key="caps/web1/old", Body=b"forged", IfNoneMatch="*")
    c1.put_object(Bucket=b, Key="caps/web1/old", Body=b"forged")  # what it may omit
    assert c1.get_object(Bucket=b, Key="caps/web1/old")["Body"].read() == b"forged"


def test_unscoped_credentials_show_what_the_scoping_prevents(
    iam_seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    world = _world(iam_seaweedfs, tmp_path, scoped=False)
    want, real_key = _real(world)
    real_keys = {o["key"] for o in _listed(world, "--host", "web1")["captures"]}
    got = _attack(world, real_key)
    # nothing stops the writes now
    assert all(v.startswith("caps/") for v in got.values()), got
    one = _listed(world, "--host", "web1")
    listed = {o["key"] for o in one["captures"]}
    # readers still refuse the entries they can judge: the relabelled object
    # (not under web1/), the hiding and oversized entries (the object's HEAD
    # disagrees with them)
    named = {r["entry"] for r in one["coverage"]["rejected"]}
    assert {got["relabel"], got["hide"], got["oversize"]} <= named, one["coverage"]
    # but a capture planted below web1/ with an entry of its own is
    # indistinguishable from web1's: this is what the host policy prevents
    assert listed == real_keys | {got["plant-object"]}, listed
    fake = next(o for o in one["captures"] if o["key"] == got["plant-object"])
    assert fake["packets"] == 5
    _fetch_and_hold_see_only_web1(world, want, real_keys, planted=got["plant-object"])


def _fetch_and_hold_see_only_web1(world: World, want: list[int], real_keys: set[str],
                                  planted: str | None = None) -> None:  # fmt: skip
    out = world.tmp / f"web1-{world.bucket}.pcap"
    # --max-bytes: an oversized entry believed would refuse the whole fetch
    f = world.rollcap("analyst", "fetch", *WINDOW, "--host", "web1", "-o", str(out),
                      "--max-bytes", "10M")  # fmt: skip
    assert f.returncode == 0, f.stderr
    got = read_timestamps(out)
    extra = 5 if planted else 0
    assert len(got) == len(want) + extra
    if not planted:
        assert got == [t // 1000 * 1000 for t in want]
    h = world.rollcap("analyst", "hold", *WINDOW, "--host", "web1", "--json")
    assert h.returncode == 0, h.stderr
    held = {o["key"] for o in json.loads(h.stdout) if o["legal_hold"] == "ON"}
    assert held == real_keys | ({planted} if planted else set())


def test_fleet_keeps_under_the_printed_policies(iam_seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    """The requester writes a request and reads the answers; a host reads the
    request and writes its own acknowledgement, never a request nor another
    host's answer (docs/fleet.md, "Who may")."""
    import threading

    from rollcap.keep import fleet
    from rollcap.keep.poller import FleetPoller
    from rollcap.keep.request import KeepOutcome, KeepRequest

    world = _world(iam_seaweedfs, tmp_path, scoped=True)
    _user(world, "ops", _policy(world, "--role", "requester"))
    r = world.rollcap("ops", "keep", "--fleet", *WINDOW, "--reason", "INC-42")
    assert r.returncode == 0, r.stderr
    rid = r.stdout.strip()

    def submit(req: KeepRequest) -> KeepOutcome:
        return KeepOutcome(req.id, 2, 200)

    with world.storage("web1", "web1") as st:  # web1's own credentials, its offload's calls
        FleetPoller(st, "caps", "web1", submit, tmp_path, 60.0, threading.Event()).poll()
    web1_ack = fleet.ack_key("caps", rid, "web1")
    b, web2 = world.bucket, world.s3("web2")
    assert web2.get_object(Bucket=b, Key=fleet.request_key("caps", rid))["Body"].read()
    for key in (web1_ack, fleet.request_key("caps", "PLANTED"), fleet.ack_key("caps", rid, "web3")):
        with pytest.raises(ClientError, match="AccessDenied"):
            web2.put_object(Bucket=b, Key=key, Body=b"{}")
    ops = world.s3("ops")
    with pytest.raises(ClientError, match="AccessDenied"):
        ops.put_object(Bucket=b, Key=fleet.ack_key("caps", rid, "web2"), Body=b"{}")
    # ops reads the answers and, from the index's names, who else there is
    _store(world, "web2", "web2", 0, 1, 5)
    st_ = world.rollcap("ops", "keep", "--status", rid)
    assert st_.returncode == 1, st_.stderr
    assert "web1: 2 files, 200 bytes" in st_.stdout and "not answered: 1 (web2)" in st_.stdout
