"""`rollcap offload` end to end against a real SeaweedFS (and a file:// archive).

Finished captures (real packets from tests/data/pcaps, ReadyName names) are put
into ready/ by the tests; the service runs as a subprocess like under systemd.
Each test uses its own bucket or prefix; tests that stop the server start
their own SeaweedFS.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import signal
import stat
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import zstandard

from rollcap.pcapfile import GLOBAL_HEADER_LEN, RECORD_HEADER_LEN, parse_header
from rollcap.spool.readyname import ReadyName
from rollcap.storage.base import META
from tests.support.net import count_packets
from tests.support.seaweedfs import PROBE_PREFIX, SeaweedFS
from tests.support.stallproxy import StallProxy

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HOST = "testhost"


# -- helpers ----------------------------------------------------------------


def records(pcap: Path) -> tuple[bytes, list[bytes]]:
    data = pcap.read_bytes()
    h = parse_header(data)
    out, off = [], GLOBAL_HEADER_LEN
    while off + RECORD_HEADER_LEN <= len(data):
        incl = struct.unpack_from(h.endian + "I", data, off + 8)[0]
        out.append(data[off : off + RECORD_HEADER_LEN + incl])
        off += RECORD_HEADER_LEN + incl
    return data[:GLOBAL_HEADER_LEN], out


def make_captures(
    all_pcap: Path, ready: Path, starts: list[datetime], *, repeat: int = 1, first_seq: int = 1
) -> list[Path]:
    """One finished capture per start time, each a different slice of real packets
    (repeat > 1 makes big files); returned in time order."""
    header, recs = records(all_pcap)
    files = []
    for i, start in enumerate(starts):
        name = ReadyName(start, first_seq + i, HOST, "veth0").format()
        chunk = recs[(i * 997) % len(recs) :] + recs[: (i * 997) % len(recs)]
        tmp = ready.parent / f".{name}.tmp"
        with tmp.open("wb") as f:
            f.write(header)
            for _ in range(repeat):
                f.write(b"".join(chunk))
        tmp.rename(ready / name)  # atomic hand-off, as capture does
        files.append(ready / name)
    return files


def write_config(path: Path, spool: Path, destination: str, **offload: Any) -> Path:
    lines = [
        "[capture]",
        f'hostname = "{HOST}"',
        "[spool]",
        f'directory = "{spool}"',
        "[offload]",
        f'destination = "{destination}"',
    ]
    for k, v in offload.items():
        lines.append(f"{k} = {json.dumps(v)}")
    lines += ["[metrics]", 'textfile_directory = ""']  # not the machine's node_exporter dir
    path.write_text("\n".join(lines) + "\n")
    return path


class Offload:
    """`python -m rollcap offload` as a subprocess, with its stderr in a file."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.config = config
        self.env = {**os.environ, "PYTHONPATH": str(REPO), **env}
        self.env.pop("NOTIFY_SOCKET", None)
        self.log = config.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Offload:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rollcap", "offload", "--config", str(self.config)],
                cwd=REPO, env=self.env, stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, what: str, pred: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"offload exited ({self.proc.returncode}):\n{self.text()}")
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; log:\n{self.text()[-4000:]}")

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError("offload did not stop on SIGTERM") from None
        return self.proc.returncode

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    s = tmp_path / "spool"
    for d in ("work", "ready", "quarantine", "tmp", "state"):
        (s / d).mkdir(parents=True)
    return s


@pytest.fixture
def procs() -> Iterator[list[Offload]]:
    started: list[Offload] = []
    yield started
    for p in started:
        if p.proc is not None and p.proc.poll() is None:
            os.killpg(p.proc.pid, signal.SIGKILL)
            p.proc.wait(10)


def new_bucket(w: SeaweedFS) -> str:
    name = f"off-{uuid.uuid4().hex[:12]}"
    w.client().create_bucket(Bucket=name)
    return name


def keys_in(w: SeaweedFS, bucket: str, prefix: str = "") -> list[str]:
    """Capture objects (not the manifest entries written beside them, nor a
    readiness probe that a loaded server stored after the harness deleted it)."""
    c = w.client()
    out = []
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [
            o["Key"] for o in page.get("Contents", [])
            if "_index/" not in o["Key"] and not o["Key"].startswith(PROBE_PREFIX)
        ]  # fmt: skip
    return out


def decompress(data: bytes, key: str) -> bytes:
    if key.endswith(".zst"):
        return zstandard.ZstdDecompressor().stream_reader(data).read()
    if key.endswith(".gz"):
        return gzip.decompress(data)
    return data


def state(spool: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((spool / "state" / "offload.json").read_text()))
    except (FileNotFoundError, ValueError):
        return {}


def upload_lines(text: str) -> list[dict[str, str]]:
    """The [k=v ...] fields of each 'uploaded' log line (stderr format outside systemd,
    at log.level = "debug")."""
    out = []
    for line in text.splitlines():
        if " uploaded " in line and "[" in line:
            fields = line.rsplit("[", 1)[1].rstrip("]")
            out.append(dict(re.findall(r"(\w+)=(\S+(?: at \S+)?)", fields)))
    return out


def wait_for_multipart(p: Offload, client: Any, bucket: str) -> None:
    p.wait_for(
        "a multipart upload in progress",
        lambda: bool(client.list_multipart_uploads(Bucket=bucket).get("Uploads")),
    )


T0 = datetime(2026, 11, 30, 23, 50, 0, tzinfo=UTC)


# -- tests ------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["zstd", "gzip", "none"])
def test_uploads_verify_and_come_back_identical(
    seaweedfs: SeaweedFS, all_pcap: Path, spool: Path, tmp_path: Path, procs: list[Offload],
    codec: str,
) -> None:  # fmt: skip
    bucket = new_bucket(seaweedfs)
    # across a month boundary: keys must still sort in time order
    starts = [T0 + timedelta(minutes=5 * i) for i in range(5)]
    files = make_captures(all_pcap, spool / "ready", starts, first_seq=98)
    sources = {f.name: f.read_bytes() for f in files}
    cfg = write_config(
        tmp_path / "rollcap.toml", spool, f"s3://{bucket}/caps",
        endpoint_url=seaweedfs.endpoint, region="us-east-1", compression=codec, concurrency=3,
    )  # fmt: skip
    with cfg.open("a") as f:  # a terminal shows the journal's fields at debug
        f.write('[log]\nlevel = "debug"\n')
    p = Offload(cfg, seaweedfs.env()).start()
    procs.append(p)
    p.wait_for("ready/ drained", lambda: not any((spool / "ready").iterdir()))
    p.wait_for("state file", lambda: state(spool).get("uploaded_files") == 5)
    assert p.stop() == 0

    keys = keys_in(seaweedfs, bucket)
    assert len(keys) == 5
    by_name = {f.name: k for f, k in zip(sorted(files), keys, strict=True)}
    # keys sorted == time sorted (file names are in time order)
    assert keys == sorted(keys)
    assert [ReadyName.parse(n).start for n in by_name] == starts  # type: ignore[union-attr]
    ext = {"zstd": ".pcap.zst", "gzip": ".pcap.gz", "none": ".pcap"}[codec]
    c = seaweedfs.client()
    for name, key in by_name.items():
        assert key.startswith(f"caps/{HOST}/20") and key.endswith(ext)
        obj = c.get_object(Bucket=bucket, Key=key)
        body = obj["Body"].read()
        assert decompress(body, key) == sources[name]  # byte-identical
        meta = obj["Metadata"]
        assert int(meta[META["pcap_bytes"]]) == len(sources[name])
        assert meta[META["host"]] == HOST and meta[META["iface"]] == "veth0"
        assert meta[META["compression"]] == codec
        # capinfos opens the stored object directly and agrees on the packet count
        local = tmp_path / key.rsplit("/", 1)[1]
        local.write_bytes(body)
        assert count_packets(local) == int(meta[META["packets"]]) == 5374
    assert list((spool / "tmp").iterdir()) == []
    lines = upload_lines(p.text())
    assert len(lines) == 5
    for ln in lines:
        assert {"file", "key", "bytes_in", "bytes_out", "seconds", "attempt", "packets"} <= set(ln)
    st = state(spool)
    assert st["backlog_files"] == 0 and st["uploaded_files"] == 5
    assert st["uploaded_bytes_in"] == sum(len(b) for b in sources.values())
    assert st["quarantined"] == 0 and st["state"] == "stopped"


def test_a_file_arriving_later_is_picked_up_by_inotify(
    seaweedfs: SeaweedFS, all_pcap: Path, spool: Path, tmp_path: Path, procs: list[Offload]
) -> None:
    bucket = new_bucket(seaweedfs)
    cfg = write_config(
        tmp_path / "rollcap.toml", spool, f"s3://{bucket}/caps",
        endpoint_url=seaweedfs.endpoint, region="us-east-1", rescan_seconds=3600,
    )  # fmt: skip
    p = Offload(cfg, seaweedfs.env()).start()
    procs.append(p)
    p.wait_for("started", lambda: "offload started" in p.text())
    make_captures(all_pcap, spool / "ready", [T0])  # no rescan for an hour: only inotify
    p.wait_for("upload", lambda: len(keys_in(seaweedfs, bucket)) == 1, timeout=30)
    p.wait_for("ready/ drained", lambda: not any((spool / "ready").iterdir()))
    assert p.stop() == 0


def test_local_file_is_deleted_only_after_head_verified(
    seaweedfs: SeaweedFS,
    all_pcap: Path,
    spool: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In-process: watch every HEAD; make the server 'lie' about the size once."""
    import threading

    from rollcap.config import load_config
    from rollcap.offload.pipeline import Pipeline
    from rollcap.spool import Spool
    from rollcap.storage import open_storage

    for k, v in seaweedfs.env().items():
        monkeypatch.setenv(k, v)
    bucket = new_bucket(seaweedfs)
    [f] = make_captures(all_pcap, spool / "ready", [T0])
    cfg = load_config(write_config(
        tmp_path / "rollcap.toml", spool, f"s3://{bucket}/caps",
        endpoint_url=seaweedfs.endpoint, region="us-east-1",
    ))  # fmt: skip
    storage = open_storage(cfg.offload)
    seen: list[tuple[str, bool]] = []
    lie = {"once": True}

    def before_head(**kw: Any) -> None:
        seen.append(("head", f.exists()))

    def after_head(parsed: dict[str, Any], **kw: Any) -> None:
        if lie["once"] and "ContentLength" in parsed:
            lie["once"] = False
            parsed["ContentLength"] += 1

    client = storage.client  # type: ignore[attr-defined]
    client.meta.events.register("before-call.s3.HeadObject", before_head)
    client.meta.events.register("after-call.s3.HeadObject", after_head)
    pipe = Pipeline(cfg, Spool.at(spool), storage, {0, os.geteuid()}, threading.Event())

    out = pipe.process(f.name)
    # a conditional PUT (no existence check first), then the verification HEAD,
    # which "lied": file kept
    assert out.kind == "failed" and "size" in out.message
    assert seen == [("head", True)]
    assert f.exists()
    seen.clear()
    out = pipe.process(f.name)  # second attempt: 412, and the object has our checksum
    assert out.kind == "exists", out
    assert seen == [("head", True)]
    assert not f.exists()
    storage.close()


@pytest.mark.parametrize("kind", ["wrong-secret", "unknown-key", "missing-bucket"])
def test_credentials_and_bucket_errors_are_clear_and_files_kept(
    seaweedfs: SeaweedFS, all_pcap: Path, spool: Path, tmp_path: Path, procs: list[Offload],
    kind: str,
) -> None:  # fmt: skip
    bucket = (
        f"missing-{uuid.uuid4().hex[:8]}" if kind == "missing-bucket" else new_bucket(seaweedfs)
    )
    env = seaweedfs.env()
    if kind == "wrong-secret":
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
    elif kind == "unknown-key":
        env["AWS_ACCESS_KEY_ID"] = "nobody"
    code = {"wrong-secret": "SignatureDoesNotMatch", "unknown-key": "InvalidAccessKeyId",
            "missing-bucket": "NoSuchBucket"}[kind]  # fmt: skip
    files = make_captures(all_pcap, spool / "ready", [T0, T0 + timedelta(minutes=1)])
    cfg = write_config(
        tmp_path / "rollcap.toml", spool, f"s3://{bucket}/caps",
        endpoint_url=seaweedfs.endpoint, region="us-east-1", retry_max_seconds=1,
    )  # fmt: skip
    p = Offload(cfg, env).start()
    procs.append(p)
    p.wait_for("the error", lambda: code in p.text())
    # several retries at the 1 s cap happen meanwhile
    p.wait_for("retries", lambda: state(spool).get("state") == "destination-down", timeout=10)
    time.sleep(4)
    assert p.stop() == 0
    errors = [ln for ln in p.text().splitlines() if " error " in ln and code in ln]
    assert len(errors) == 1, p.text()  # one clear error, not one per file per retry
    assert seaweedfs.endpoint in errors[0] and bucket in errors[0]
    assert all(f.exists() for f in files)  # files kept
    assert code in state(spool)["last_error"]


def test_junk_is_quarantined_with_a_reason_and_never_uploaded(
    seaweedfs: SeaweedFS, all_pcap: Path, spool: Path, tmp_path: Path, procs: list[Offload]
) -> None:
    bucket = new_bucket(seaweedfs)
    ready = spool / "ready"
    good = make_captures(all_pcap, ready, [T0])[0]
    name = lambda i: ReadyName(T0 + timedelta(minutes=i), 100 + i, HOST, "veth0").format()  # noqa: E731
    secret = tmp_path / "secret.pcap"
    secret.write_bytes(all_pcap.read_bytes())
    junk: dict[str, str] = {}
    (ready / "notes.txt").write_text("hello")
    junk["notes.txt"] = "not a rollcap capture name"
    (ready / name(1)).symlink_to(secret)
    junk[name(1)] = "symbolic link"
    os.mkfifo(ready / name(2))
    junk[name(2)] = "FIFO"
    (ready / name(3)).mkdir()
    junk[name(3)] = "directory"
    (ready / name(4)).write_bytes(b"")
    junk[name(4)] = "empty"
    (ready / name(5)).write_bytes(b"GIF89a" + b"\0" * 100)
    junk[name(5)] = "not a pcap file"
    (ready / name(6)).write_bytes(all_pcap.read_bytes()[:10])
    junk[name(6)] = "shorter than a pcap header"
    (ready / name(7)).write_bytes(b"\x0a\x0d\x0d\x0a" + b"\0" * 60)
    junk[name(7)] = "pcapng"
    (ready / name(8)).write_bytes(all_pcap.read_bytes())
    os.chown(ready / name(8), 65534, 65534)  # nobody: not root, not the capture user
    junk[name(8)] = "owned by uid 65534"
    cfg = write_config(
        tmp_path / "rollcap.toml", spool, f"s3://{bucket}/caps",
        endpoint_url=seaweedfs.endpoint, region="us-east-1",
    )  # fmt: skip
    p = Offload(cfg, seaweedfs.env()).start()
    procs.append(p)
    p.wait_for("ready/ emptied", lambda: not any(ready.iterdir()), timeout=30)
    p.wait_for("state", lambda: state(spool).get("quarantined") == len(junk))
    assert p.stop() == 0
    assert keys_in(seaweedfs, bucket) == [
        f"caps/{HOST}/2026/11/30/{HOST}-veth0-20261130T235000Z-000001.pcap.zst"
    ]
    assert not good.exists()
    q = spool / "quarantine"
    for n, why in junk.items():
        assert os.path.lexists(q / n), n
        reason = (q / f"{n}.reason").read_text()
        assert why in reason, (n, reason)
        assert why in p.text()
    assert stat.S_ISLNK(os.lstat(q / name(1)).st_mode)  # moved, not followed
    assert secret.read_bytes() == all_pcap.read_bytes()  # the target untouched
    assert stat.S_ISFIFO(os.lstat(q / name(2)).st_mode)


def test_seaweedfs_outage_loses_nothing(
    all_pcap: Path, spool: Path, tmp_path: Path, procs: list[Offload]
) -> None:
    w = SeaweedFS(bucket="outage").start()
    try:
        ready = spool / "ready"
        first = make_captures(all_pcap, ready, [T0 + timedelta(minutes=i) for i in range(3)])
        sources = {f.name: f.read_bytes() for f in first}
        cfg = write_config(
            tmp_path / "rollcap.toml", spool, "s3://outage/caps", endpoint_url=w.endpoint,
            region="us-east-1", retry_max_seconds=2, concurrency=2,
        )  # fmt: skip
        p = Offload(cfg, w.env()).start()
        procs.append(p)
        p.wait_for("first uploads", lambda: len(keys_in(w, "outage")) == 3)
        w.stop()
        more = make_captures(
            all_pcap, ready, [T0 + timedelta(minutes=10 + i) for i in range(4)], first_seq=4
        )
        sources.update({f.name: f.read_bytes() for f in more})
        p.wait_for("the outage noticed", lambda: state(spool).get("state") == "destination-down")
        time.sleep(3)
        assert all(f.exists() for f in more)  # kept while the server is down
        w.start()  # same data dir and ports
        p.wait_for("backlog drained", lambda: not any(ready.iterdir()), timeout=90)
        assert p.stop() == 0
        keys = keys_in(w, "outage")
        assert len(keys) == 7 and keys == sorted(keys)
        c = w.client()
        got = {}
        for k in keys:
            body = c.get_object(Bucket="outage", Key=k)["Body"].read()
            got[k.rsplit("-", 1)[1]] = decompress(body, k)
        want = {f"{ReadyName.parse(n).seq:06d}.pcap.zst": b for n, b in sources.items()}  # type: ignore[union-attr]
        assert got == want
        assert "works again" in p.text()
    finally:
        w.cleanup()


def test_kill9_during_multipart_upload_then_restart(
    seaweedfs: SeaweedFS, all_pcap: Path, spool: Path, tmp_path: Path, procs: list[Offload]
) -> None:
    bucket = new_bucket(seaweedfs)
    ready = spool / "ready"
    # ~60 MB each, stored uncompressed in 5 MiB parts: a long multipart upload
    files = make_captures(all_pcap, ready, [T0, T0 + timedelta(minutes=1)], repeat=45)
    sources = {f.name: f.read_bytes() for f in files}
    cfg = write_config(
        tmp_path / "rollcap.toml", spool, f"s3://{bucket}/caps", endpoint_url=seaweedfs.endpoint,
        region="us-east-1", compression="none", s3_part_megabytes=5, concurrency=1,
    )  # fmt: skip
    c = seaweedfs.client()
    p = Offload(cfg, seaweedfs.env()).start()
    procs.append(p)
    wait_for_multipart(p, c, bucket)
    p.kill9()
    assert c.list_multipart_uploads(Bucket=bucket).get("Uploads"), "the kill came too late"
    done_before = keys_in(seaweedfs, bucket)
    assert len(done_before) < 2  # the interrupted one is not visible
    # streamed: no temp file to leave behind; one an older version left is
    # still removed at start
    assert list((spool / "tmp").iterdir()) == []
    (spool / "tmp" / f"{files[0].name}.0a1b2c3d.part").write_bytes(b"left by an older offload")

    p2 = Offload(cfg, seaweedfs.env()).start()
    procs.append(p2)
    p2.wait_for("drained", lambda: not any(ready.iterdir()), timeout=120)
    assert p2.stop() == 0
    keys = keys_in(seaweedfs, bucket)
    assert len(keys) == 2  # everything arrived, once
    assert c.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # no stale upload
    assert list((spool / "tmp").iterdir()) == []  # stale temp file removed
    for k, f in zip(keys, sorted(files), strict=True):
        assert c.get_object(Bucket=bucket, Key=k)["Body"].read() == sources[f.name]
    assert "incomplete upload" in p2.text() and "stale temp file" in p2.text()


def test_file_archive_with_its_budget(
    all_pcap: Path, spool: Path, tmp_path: Path, procs: list[Offload]
) -> None:
    archive = tmp_path / "archive"
    ready = spool / "ready"
    # 6 files of ~1.2 MB pcap (uncompressed, so sizes are predictable), budget 4 MB
    files = make_captures(all_pcap, ready, [T0 + timedelta(minutes=i) for i in range(6)])
    size = files[0].stat().st_size
    cfg = write_config(
        tmp_path / "rollcap.toml", spool, f"file://{archive}", compression="none",
        archive_max_megabytes=4, concurrency=1,
    )  # fmt: skip
    p = Offload(cfg, {}).start()
    procs.append(p)
    p.wait_for("drained", lambda: not any(ready.iterdir()))
    p.wait_for("state", lambda: state(spool).get("uploaded_files") == 6)
    assert p.stop() == 0
    stored = sorted(str(x.relative_to(archive)) for x in archive.rglob("*.pcap") if x.is_file())
    total = sum(x.stat().st_size for x in archive.rglob("*") if x.is_file())
    # each object comes with its sidecar and manifest entries (these test
    # packets are years older than the file names: many slots), all counted
    index = sum(x.stat().st_size for x in (archive / "_index").rglob("*") if x.is_file())
    keep = len(stored)
    assert total <= 4_000_000 < total + size + 400 + index // keep  # removed no more than needed
    assert keep >= 2
    # the newest survive, the oldest were removed (and logged)
    assert [s.rsplit("-", 1)[1] for s in stored] == [f"{i:06d}.pcap" for i in range(7 - keep, 7)]
    assert p.text().count("removed the oldest object") == 6 - keep
    last = archive / stored[-1]
    assert json.loads(Path(f"{last}.meta.json").read_text())["metadata"][META["packets"]] == "5374"


def test_sd_notify_ready_status_and_watchdog(
    all_pcap: Path, spool: Path, tmp_path: Path, procs: list[Offload]
) -> None:
    import socket

    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    make_captures(all_pcap, spool / "ready", [T0])
    cfg = write_config(tmp_path / "rollcap.toml", spool, f"file://{tmp_path}/archive")
    p = Offload(cfg, {})
    p.env.update(NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="1000000")
    p.start()
    procs.append(p)
    msgs: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            msgs.append(sock.recv(4096).decode())
        if sum("WATCHDOG=1" in m for m in msgs) >= 3 and any("backlog 0" in m for m in msgs):
            break
    assert p.stop() == 0
    sock.close()
    ready = [m for m in msgs if "READY=1" in m]
    assert len(ready) == 1 and "STATUS=backlog 1 files" in ready[0], msgs
    assert any(m.startswith("STATUS=backlog 0 files") for m in msgs), msgs
    assert sum("WATCHDOG=1" in m for m in msgs) >= 3  # every WATCHDOG_USEC/2 while idle


def test_an_existing_different_object_is_never_overwritten(
    seaweedfs: SeaweedFS, all_pcap: Path, spool: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import threading

    from rollcap.config import load_config
    from rollcap.offload.pipeline import Pipeline
    from rollcap.spool import Spool
    from rollcap.storage import open_storage

    for k, v in seaweedfs.env().items():
        monkeypatch.setenv(k, v)
    bucket = new_bucket(seaweedfs)
    [f] = make_captures(all_pcap, spool / "ready", [T0])
    key = f"caps/{HOST}/2026/11/30/{HOST}-veth0-20261130T235000Z-000001.pcap.zst"
    seaweedfs.client().put_object(Bucket=bucket, Key=key, Body=b"someone else's object")
    cfg = load_config(write_config(
        tmp_path / "rollcap.toml", spool, f"s3://{bucket}/caps",
        endpoint_url=seaweedfs.endpoint, region="us-east-1",
    ))  # fmt: skip
    storage = open_storage(cfg.offload)
    pipe = Pipeline(cfg, Spool.at(spool), storage, {0, os.geteuid()}, threading.Event())
    out = pipe.process(f.name)
    storage.close()
    assert out.kind == "quarantined"
    body = seaweedfs.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    assert body == b"someone else's object"  # untouched
    reason = (spool / "quarantine" / f"{f.name}.reason").read_text()
    assert key in reason and "different content" in reason
    assert (spool / "quarantine" / f.name).exists()  # the capture is kept


def test_sigterm_during_multipart_upload_stops_cleanly(
    seaweedfs: SeaweedFS, all_pcap: Path, spool: Path, tmp_path: Path, procs: list[Offload]
) -> None:
    bucket = new_bucket(seaweedfs)
    ready = spool / "ready"
    [f] = make_captures(all_pcap, ready, [T0], repeat=45)
    cfg = write_config(
        tmp_path / "rollcap.toml", spool, f"s3://{bucket}/caps", endpoint_url=seaweedfs.endpoint,
        region="us-east-1", compression="none", s3_part_megabytes=5, concurrency=1,
    )  # fmt: skip
    c = seaweedfs.client()
    p = Offload(cfg, seaweedfs.env()).start()
    procs.append(p)
    wait_for_multipart(p, c, bucket)
    t0 = time.monotonic()
    assert p.stop() == 0
    if keys_in(seaweedfs, bucket):
        pytest.skip("the upload finished before SIGTERM arrived")
    assert time.monotonic() - t0 < 20
    assert f.exists()  # kept for the next run
    assert c.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # aborted
    assert list((spool / "tmp").iterdir()) == []
    assert state(spool)["state"] == "stopped" and state(spool)["backlog_files"] == 1


def test_a_second_offload_on_the_same_spool_refuses_to_start(
    spool: Path, tmp_path: Path, procs: list[Offload]
) -> None:
    cfg = write_config(tmp_path / "rollcap.toml", spool, f"file://{tmp_path}/archive")
    first = Offload(cfg, {}).start()
    procs.append(first)
    first.wait_for("started", lambda: "offload started" in first.text())
    second = subprocess.run(
        [sys.executable, "-m", "rollcap", "offload", "--config", str(cfg)],
        cwd=REPO, env=first.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert second.returncode == 1
    assert f"pid {first.proc.pid}" in second.stderr and "already using the spool" in second.stderr  # type: ignore[union-attr]
    assert first.proc.poll() is None  # type: ignore[union-attr]
    assert first.stop() == 0


def test_the_stored_object_is_logged_before_the_local_file_is_deleted(
    all_pcap: Path, spool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """A kill between delete and log line would leave a stored object that no
    journal line names: the line naming file and key must come first."""
    import logging
    import threading

    from rollcap.config import load_config
    from rollcap.offload import pipeline
    from rollcap.spool import Spool
    from rollcap.storage import open_storage

    [f] = make_captures(all_pcap, spool / "ready", [T0])
    cfg = load_config(write_config(tmp_path / "rollcap.toml", spool, f"file://{tmp_path}/arch"))
    storage = open_storage(cfg.offload)
    pipe = pipeline.Pipeline(cfg, Spool.at(spool), storage, {0, os.geteuid()}, threading.Event())
    logged_at_unlink: list[str] = []
    real_unlink = os.unlink

    def unlink(path: Any, *a: Any, **kw: Any) -> None:
        if Path(path).name == f.name:  # by name, through ready/'s fd
            logged_at_unlink.extend(r.getMessage() for r in caplog.records)
        real_unlink(path, *a, **kw)

    monkeypatch.setattr(pipeline.os, "unlink", unlink)
    with caplog.at_level(logging.INFO, logger="rollcap"):
        out = pipe.process(f.name)
    assert out.kind == "uploaded" and not f.exists(), out
    assert any(f.name in m and out.key in m for m in logged_at_unlink), logged_at_unlink


def test_an_existing_object_of_the_wrong_size_is_not_counted_as_stored(
    all_pcap: Path, spool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """An attempt stored a cut-off object (our metadata, fewer bytes) and failed
    its verification: the next attempt must not take it for done and delete
    the only good copy."""
    import threading

    from rollcap.config import load_config
    from rollcap.offload import pipeline
    from rollcap.spool import Spool
    from rollcap.storage import open_storage
    from rollcap.storage.base import VerificationError
    from rollcap.storage.local import LocalStorage

    [f] = make_captures(all_pcap, spool / "ready", [T0])
    pcap = f.read_bytes()
    archive = tmp_path / "arch"
    cfg = load_config(write_config(tmp_path / "rollcap.toml", spool, f"file://{archive}"))
    storage = open_storage(cfg.offload)
    real_put = LocalStorage.put_stream

    def put_cut_off(self: LocalStorage, key: str, *a: Any, **kw: Any) -> Any:
        real_put(self, key, *a, **kw)
        dest = archive / key
        data = dest.read_bytes()
        dest.unlink()
        dest.write_bytes(data[: len(data) // 2])
        raise VerificationError(f"{key}: stored object does not match")

    monkeypatch.setattr(LocalStorage, "put_stream", put_cut_off)
    pipe = pipeline.Pipeline(cfg, Spool.at(spool), storage, {0, os.geteuid()}, threading.Event())
    assert pipe.process(f.name).kind == "failed"
    out = pipe.process(f.name)
    assert out.kind != "exists", out
    kept = [p for p in spool.rglob(f.name) if p.read_bytes() == pcap]
    assert kept, out


def test_sigterm_is_answered_while_the_server_never_answers(
    all_pcap: Path, spool: Path, tmp_path: Path, procs: list[Offload]
) -> None:
    """A gateway that accepts connections and then says nothing: botocore would
    wait 120 s per attempt. The stop must not wait for it."""
    hole = StallProxy()  # no backend: a black hole from the first byte
    try:
        files = make_captures(all_pcap, spool / "ready", [T0, T0 + timedelta(minutes=1)])
        cfg = write_config(
            tmp_path / "rollcap.toml", spool, "s3://nobody-answers/caps",
            endpoint_url=hole.endpoint, region="us-east-1",
        )  # fmt: skip
        p = Offload(cfg, {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}).start()
        procs.append(p)
        p.wait_for("the destination check to reach the server", lambda: hole.requests >= 1)
        time.sleep(1)
        assert p.stop() == 0  # within 30 s, not botocore's 3 x 120 s
        assert all(f.exists() for f in files)
        assert "offload stopped: 2 files left in the spool" in p.text()
    finally:
        hole.close()


def test_a_stop_does_not_wait_for_uploads_the_server_stopped_answering(
    seaweedfs: SeaweedFS, all_pcap: Path, spool: Path, tmp_path: Path, procs: list[Offload]
) -> None:
    """The server goes silent in the middle of multipart uploads: the stop gives
    up on them after its grace time, keeps the files, and the next run (server
    answering again) stores each exactly once with no incomplete upload left."""
    bucket = new_bucket(seaweedfs)
    proxy = StallProxy(("127.0.0.1", seaweedfs.s3_port))
    try:
        files = make_captures(all_pcap, spool / "ready", [T0, T0 + timedelta(minutes=1)], repeat=30)
        cfg = write_config(
            tmp_path / "rollcap.toml", spool, f"s3://{bucket}/caps", endpoint_url=proxy.endpoint,
            region="us-east-1", compression="none", s3_part_megabytes=5, concurrency=2,
        )  # fmt: skip
        c = seaweedfs.client()
        p = Offload(cfg, seaweedfs.env()).start()
        procs.append(p)
        wait_for_multipart(p, c, bucket)
        proxy.hold.set()
        time.sleep(2)
        if keys_in(seaweedfs, bucket):
            pytest.skip("an upload finished before the server went silent")
        assert p.stop() == 0
        assert "did not answer within" in p.text()
        assert all(f.exists() for f in files)
    finally:
        proxy.close()
    cfg2 = write_config(
        tmp_path / "direct.toml", spool, f"s3://{bucket}/caps", endpoint_url=seaweedfs.endpoint,
        region="us-east-1", compression="none", s3_part_megabytes=5,
    )  # fmt: skip
    p2 = Offload(cfg2, seaweedfs.env()).start()
    procs.append(p2)
    p2.wait_for("the backlog to drain", lambda: not any(f.exists() for f in files), timeout=120)
    assert p2.stop() == 0
    assert len(keys_in(seaweedfs, bucket)) == 2
    assert c.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_backlog_is_compressed_fast_then_the_configured_level_returns(
    seaweedfs: SeaweedFS, all_pcap: Path, spool: Path, tmp_path: Path, procs: list[Offload]
) -> None:
    bucket = new_bucket(seaweedfs)
    starts = [T0 + timedelta(minutes=5 * i) for i in range(8)]
    files = make_captures(all_pcap, spool / "ready", starts)
    sources = {f.name: f.read_bytes() for f in files}
    cfg = write_config(
        tmp_path / "rollcap.toml", spool, f"s3://{bucket}/caps",
        endpoint_url=seaweedfs.endpoint, region="us-east-1", concurrency=1,
        compression_fast_backlog=4,
    )  # fmt: skip
    p = Offload(cfg, seaweedfs.env()).start()
    procs.append(p)
    p.wait_for("state file", lambda: state(spool).get("uploaded_files") == 8)
    assert state(spool)["compression_level"] == 3  # drained: the configured level again
    assert p.stop() == 0
    text = p.text()
    fast, slow = text.find("compression level 3 -> 1"), text.find("compression level 1 -> 3")
    assert 0 <= fast < slow, text
    c = seaweedfs.client()
    for key in keys_in(seaweedfs, bucket):
        body = c.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert decompress(body, key) in sources.values()
    assert len(keys_in(seaweedfs, bucket)) == 8


def _file_pipeline(tmp_path: Path, spool: Path, archive: Path) -> Any:
    import threading

    from rollcap.config import load_config
    from rollcap.offload import pipeline
    from rollcap.spool import Spool
    from rollcap.storage import open_storage

    cfg = load_config(write_config(tmp_path / "rollcap.toml", spool, f"file://{archive}"))
    storage = open_storage(cfg.offload)
    return pipeline.Pipeline(cfg, Spool.at(spool), storage, {0, os.geteuid()}, threading.Event())


def test_a_failed_entry_write_keeps_the_local_copy_and_is_retried(
    all_pcap: Path, spool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The object is stored but its manifest entry cannot be written: the file
    stays in ready/ and the destination counts as failing; the next attempt
    finds the object ("exists") and writes the entry before the file goes."""
    from rollcap.storage import StorageError, manifest
    from rollcap.storage.local import LocalStorage

    [f] = make_captures(all_pcap, spool / "ready", [T0])
    archive = tmp_path / "arch"
    pipe = _file_pipeline(tmp_path, spool, archive)
    real = LocalStorage.put_bytes

    def put_fails(self: LocalStorage, key: str, body: bytes, content_type: str) -> None:
        raise StorageError(f"store {key}: Input/output error", code="EIO")

    monkeypatch.setattr(LocalStorage, "put_bytes", put_fails)
    out = pipe.process(f.name)
    assert out.kind == "failed" and out.dest_error is not None and f.exists(), out
    assert not (archive / manifest.DIR).exists()
    monkeypatch.setattr(LocalStorage, "put_bytes", real)
    out = pipe.process(f.name)
    assert out.kind == "exists" and not f.exists(), out
    entries = [o.key for o in pipe.storage.list(manifest.root(""))]
    assert entries and all(manifest.parse_key(k, "").key == out.key for k in entries)


def test_a_coverage_marker_is_filed_as_an_entry_and_never_uploaded(
    spool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A header-only file in ready/ (capture saw no packet in that period)
    becomes a manifest entry with no object; no pcap is stored."""
    from rollcap.storage import manifest
    from rollcap.storage.local import LocalStorage
    from tests.support.pcaps import HEADER

    name = ReadyName(T0, 7, HOST, "veth0").format()
    marker = spool / "ready" / name
    marker.write_bytes(HEADER)
    os.utime(marker, (T0.timestamp() + 602, T0.timestamp() + 602))  # handed off at the cut
    archive = tmp_path / "arch"
    pipe = _file_pipeline(tmp_path, spool, archive)

    def no_upload(*a: Any, **kw: Any) -> Any:
        raise AssertionError("a coverage marker must not be uploaded")

    monkeypatch.setattr(LocalStorage, "put_file", no_upload)
    out = pipe.process(name)
    assert out.kind == "covered" and not marker.exists(), out
    assert list(pipe.storage.list(f"{HOST}/")) == []
    entries = [manifest.parse_key(o.key, "") for o in pipe.storage.list(manifest.root(""))]
    assert entries and all(e is not None and not e.has_object for e in entries)
    e = entries[0]
    assert e is not None and e.span == (T0.timestamp(), T0.timestamp() + 602)
