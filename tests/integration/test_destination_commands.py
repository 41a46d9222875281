"""`rollcap check-destination` and `rollcap hold` as an operator runs them,
against a real SeaweedFS with an Object Lock bucket."""

from __future__ import annotations

import json
import os
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from rollcap.config.schema import OffloadConfig
from rollcap.storage import open_storage
from tests.support.archive import NS, make_object, ns, read_frames, sha256, utc
from tests.support.cli import run_rollcap
from tests.support.seaweedfs import SeaweedFS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HOST = "edge1"


def _config(path: Path, seaweedfs: SeaweedFS, bucket: str, extra: str = "") -> Path:
    path.write_text(
        f'[capture]\nhostname = "{HOST}"\n[offload]\ndestination = "s3://{bucket}/caps"\n'
        f'endpoint_url = "{seaweedfs.endpoint}"\nregion = "us-east-1"\n{extra}'
    )
    return path


def _env(seaweedfs: SeaweedFS, **over: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), **seaweedfs.env(), **over}
    env.pop("CREDENTIALS_DIRECTORY", None)
    return env


def _lock_bucket(seaweedfs: SeaweedFS) -> str:
    name = f"cd-{uuid.uuid4().hex[:12]}"
    seaweedfs.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


ENTERPRISE = (
    'storage_class = "STANDARD_IA"\nsse = "AES256"\ntags = { team = "netops" }\n'
    'object_lock_mode = "GOVERNANCE"\nobject_lock_days = 7\n'
)


def _lines(out: str) -> dict[str, str]:
    """check name -> status, from the check lines."""
    got = {}
    for line in out.splitlines():
        status, _, rest = line.partition(" ")
        if status in ("ok", "FAIL", "warn", "skip"):
            got[rest.strip().split("  ")[0].strip()] = status
    return got


def _policy(out: str) -> dict[str, object]:
    start = out.index("\n{") + 1
    return json.loads(out[start:])  # type: ignore[no-any-return]


def test_check_destination_passes_for_an_enterprise_bucket(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    bucket = _lock_bucket(seaweedfs)
    cfg = _config(tmp_path / "rollcap.toml", seaweedfs, bucket, ENTERPRISE)
    p = run_rollcap(cfg, _env(seaweedfs), "check-destination")
    assert p.returncode == 0, p.stdout + p.stderr
    got = _lines(p.stdout)
    for name in ("credentials", "bucket", "list", "head", "put", "abort multipart",
                 "list uploads", "storage class", "encryption", "put tagging", "get tagging",
                 "put retention", "get retention", "bucket object lock"):  # fmt: skip
        assert got.get(name) == "ok", (name, p.stdout)
    assert "all checks passed" in p.stderr
    # nothing left behind by the probes
    c = seaweedfs.client()
    assert c.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert c.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    policy = _policy(p.stdout)
    statements = policy["Statement"]
    assert isinstance(statements, list)
    objects = statements[0]
    assert objects["Resource"] == f"arn:aws:s3:::{bucket}/caps/${{aws:username}}/*"
    assert "s3:DeleteObject" not in json.dumps(policy)
    assert "s3:BypassGovernanceRetention" not in json.dumps(policy)
    assert {"s3:PutObjectTagging", "s3:PutObjectRetention"} <= set(objects["Action"])
    entries = f"arn:aws:s3:::{bucket}/caps/_index/*/${{aws:username}}~*"
    assert statements[1]["Resource"] == entries
    # s3:PutObject on both, write-once (storage.s3.policy; unit-tested)
    create, steps = statements[2], statements[3]
    assert create["Action"] == steps["Action"] == "s3:PutObject"
    assert create["Resource"] == steps["Resource"] == [objects["Resource"], entries]
    # hosts read fleet keep requests (and list them) too: nothing else of the bucket
    by_sid = {st["Sid"]: st for st in statements}
    requests = f"arn:aws:s3:::{bucket}/caps/_requests/*"
    assert by_sid["RollcapReadKeepRequests"]["Resource"] == requests
    listing = by_sid["RollcapListOwnPrefix"]
    assert listing["Condition"] == {
        "StringLike": {"s3:prefix": ["caps/${aws:username}/*", "caps/_requests/*"]}
    }
    assert got.get("put index entry") == "ok", p.stdout


@pytest.mark.parametrize(
    ("over", "code"),
    [
        ({"AWS_SECRET_ACCESS_KEY": "wrong-secret"}, "SignatureDoesNotMatch"),
        ({"AWS_ACCESS_KEY_ID": "nobody"}, "InvalidAccessKeyId"),
    ],
)
def test_check_destination_names_wrong_credentials(
    seaweedfs: SeaweedFS, tmp_path: Path, over: dict[str, str], code: str
) -> None:
    bucket = _lock_bucket(seaweedfs)
    cfg = _config(tmp_path / "rollcap.toml", seaweedfs, bucket)
    p = run_rollcap(cfg, _env(seaweedfs, **over), "check-destination")
    assert p.returncode == 1, p.stdout + p.stderr
    fail = [line for line in p.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fail) == 1 and "credentials" in fail[0] and code in fail[0], p.stdout
    if code == "SignatureDoesNotMatch":
        assert "secret access key does not belong to access key" in fail[0]
    assert "check-destination failed: credentials" in p.stderr
    assert "wrong-secret" not in p.stdout + p.stderr  # the secret is never echoed


def test_check_destination_fails_object_lock_on_a_bucket_without_it(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    bucket = f"cd-{uuid.uuid4().hex[:12]}"
    seaweedfs.client().create_bucket(Bucket=bucket)
    cfg = _config(tmp_path / "rollcap.toml", seaweedfs, bucket,
                  'object_lock_mode = "COMPLIANCE"\nobject_lock_days = 1\n')  # fmt: skip
    p = run_rollcap(cfg, _env(seaweedfs), "check-destination")
    assert p.returncode == 1
    got = _lines(p.stdout)
    assert got["bucket object lock"] == "FAIL" and got["put retention"] == "FAIL", p.stdout
    assert got["put"] == "ok"
    assert "has no Object Lock" in p.stdout
    assert "check-destination failed: put retention, bucket object lock" in p.stderr


def test_check_destination_policy_only_needs_no_server(tmp_path: Path) -> None:
    cfg = tmp_path / "rollcap.toml"
    cfg.write_text(
        f'[capture]\nhostname = "{HOST}"\n[offload]\ndestination = "s3://b-1/p"\n'
        'endpoint_url = "http://127.0.0.1:9"\nsse = "aws:kms"\n'
        'sse_kms_key_id = "arn:aws:kms:eu-west-1:111122223333:key/abc"\n'
    )
    p = run_rollcap(cfg, {**os.environ, "PYTHONPATH": str(REPO)}, "check-destination",
                    "--policy", "--host-variable", "none")  # fmt: skip
    assert p.returncode == 0, p.stderr
    policy = json.dumps(_policy(p.stdout))
    assert "arn:aws:s3:::b-1/p/edge1/*" in policy
    assert "arn:aws:kms:eu-west-1:111122223333:key/abc" in policy


def test_hold_holds_exactly_what_list_shows(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    bucket = _lock_bucket(seaweedfs)
    offload = OffloadConfig(
        destination=f"s3://{bucket}/caps", endpoint_url=seaweedfs.endpoint, region="us-east-1"
    )
    env = _env(seaweedfs)
    frames = read_frames(REPO / "tests" / "data" / "pcaps" / "ssh.pcap")
    t0 = utc(2026, 11, 26, 12, 0, 0)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in seaweedfs.env().items():
            mp.setenv(k, v)
        store = open_storage(offload)
        seq = 0
        for host in ("edge1", "edge2"):
            for iface in ("eth0", "eth1"):
                for minutes in (0, 10, 20, 30):
                    seq += 1
                    start = t0 + timedelta(minutes=minutes)
                    stamps = [ns(start) + i * NS for i in range(1, 60)]
                    local, key, md = make_object(
                        tmp_path, prefix=store.key_prefix, host=host, iface=iface, start=start,
                        seq=seq, stamps=stamps, frames=frames,
                    )  # fmt: skip
                    store.put_file(local, key, size=local.stat().st_size, sha256=sha256(local),
                                   metadata=md)  # fmt: skip
        store.close()
    cfg = _config(tmp_path / "rollcap.toml", seaweedfs, bucket)
    window = ["--since", "2026-11-26T12:05:00Z", "--until", "2026-11-26T12:25:00Z",
              "--host", "edge1", "--interface", "eth1"]  # fmt: skip
    listed = run_rollcap(cfg, env, "list", *window, "--json")
    assert listed.returncode == 0, listed.stderr
    want = [o["key"] for o in json.loads(listed.stdout)["captures"]]
    assert len(want) == 2  # the 12:10 and 12:20 files of edge1/eth1
    held = run_rollcap(cfg, env, "hold", *window, "--json")
    assert held.returncode == 0, held.stderr
    out = json.loads(held.stdout)
    assert [o["key"] for o in out] == want
    assert all(o["legal_hold"] == "ON" and o["error"] is None for o in out)
    c = seaweedfs.client()
    every = [o["Key"] for o in c.list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(every) == 16

    def hold_of(key: str) -> str:
        try:
            return str(c.get_object_legal_hold(Bucket=bucket, Key=key)["LegalHold"]["Status"])
        except c.exceptions.ClientError:
            return "OFF"

    assert {k for k in every if hold_of(k) == "ON"} == set(want)
    # a held object cannot be deleted, even by a version delete
    version = c.head_object(Bucket=bucket, Key=want[0])["VersionId"]
    with pytest.raises(c.exceptions.ClientError):
        c.delete_object(Bucket=bucket, Key=want[0], VersionId=version)
    text = run_rollcap(cfg, env, "hold", *window)
    assert text.returncode == 0 and text.stdout.splitlines() == [f"held {k}" for k in want]
    released = run_rollcap(cfg, env, "hold", *window, "--release")
    assert released.returncode == 0, released.stderr
    assert released.stdout.splitlines() == [f"released {k}" for k in want]
    assert {k for k in every if hold_of(k) == "ON"} == set()


def test_hold_on_a_bucket_without_object_lock_names_every_object(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    bucket = f"cd-{uuid.uuid4().hex[:12]}"
    seaweedfs.client().create_bucket(Bucket=bucket)
    frames = read_frames(REPO / "tests" / "data" / "pcaps" / "ssh.pcap")
    start = utc(2026, 11, 26, 12, 0, 0)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in seaweedfs.env().items():
            mp.setenv(k, v)
        store = open_storage(OffloadConfig(
            destination=f"s3://{bucket}/caps", endpoint_url=seaweedfs.endpoint,
            region="us-east-1",
        ))  # fmt: skip
        local, key, md = make_object(tmp_path, prefix="caps", host="edge1", iface="eth0",
                                     start=start, seq=1, stamps=[ns(start) + NS],
                                     frames=frames)  # fmt: skip
        store.put_file(local, key, size=local.stat().st_size, sha256=sha256(local), metadata=md)
        store.close()
    cfg = _config(tmp_path / "rollcap.toml", seaweedfs, bucket)
    p = run_rollcap(cfg, _env(seaweedfs), "hold", "--since", "2026-11-26T11:00:00Z",
                "--until", "2026-11-26T13:00:00Z")  # fmt: skip
    assert p.returncode == 1
    assert f"not held: {key}" in p.stderr and "Object Lock" in p.stderr, p.stderr


def test_check_destination_of_a_local_archive(tmp_path: Path) -> None:
    cfg = tmp_path / "rollcap.toml"
    ro = tmp_path / "ro"
    ro.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cfg.write_text(f'[offload]\ndestination = "file://{tmp_path}/archive"\n')
    p = run_rollcap(cfg, env, "check-destination")
    assert p.returncode == 0 and "ok    archive" in p.stdout, p.stdout + p.stderr
    (ro / "archive").write_text("not a directory")
    cfg.write_text(f'[offload]\ndestination = "file://{ro}/archive"\n')
    p = run_rollcap(cfg, env, "check-destination")
    assert p.returncode == 1 and "FAIL  archive" in p.stdout, p.stdout + p.stderr
    assert "check-destination failed: archive" in p.stderr
