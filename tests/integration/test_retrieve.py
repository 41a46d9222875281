"""`rollcap list` / `rollcap fetch` end to end, against SeaweedFS and a file:// archive.

The archive holds three simulated hosts over three UTC days: rotations every
ten minutes with a file per host that runs past midnight, packets of the
test real captures re-timestamped every 2 s (interleaved between hosts),
stored with the offload's own put_file and metadata. One object carries no
packet metadata (as if copied in by hand). The fetched pcap must hold exactly
the expected packets: count (by capinfos) and every timestamp, in order.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rollcap.config.schema import OffloadConfig
from rollcap.storage import Storage, open_storage
from tests.support.archive import NS, make_object, ns, read_frames, read_timestamps, sha256, utc
from tests.support.cli import run_into_closed_pipe
from tests.support.net import count_packets
from tests.support.seaweedfs import SeaweedFS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HOSTS = ("web1", "web2", "db1")
PERIOD = 600  # s between rotations
STEP = 2 * NS  # between packets of one host


@dataclass
class Obj:
    key: str
    host: str
    stamps: list[int]
    arp: list[bool]  # per packet: is it an ARP frame (for the BPF check)


@dataclass
class Archive:
    config: Path
    env: dict[str, str]
    objects: list[Obj]
    storage: Storage

    def expected(self, since: datetime, until: datetime, hosts: tuple[str, ...] = HOSTS,
                 arp_only: bool = False) -> list[int]:  # fmt: skip
        return sorted(
            t
            for o in self.objects
            if o.host in hosts
            for t, a in zip(o.stamps, o.arp, strict=True)
            if ns(since) <= t < ns(until) and (a or not arp_only)
        )


def _schedule() -> Iterator[tuple[str, datetime, int, bool]]:
    """(host, file start, seq, with packet metadata) of every stored file."""
    for hi, host in enumerate(HOSTS):
        # 25th 23:18+hi min .. 26th 00:4x: one file per host spans midnight
        first = utc(2026, 11, 25, 23, 18 + hi)
        for seq in range(9):
            yield (
                host,
                first + timedelta(seconds=PERIOD * seq),
                seq,
                not (host == "db1" and seq == 4),
            )
    # a later day for web2 only
    for seq in range(3):
        yield "web2", utc(2026, 11, 27, 12, 0) + timedelta(seconds=PERIOD * seq), 100 + seq, True


def _populate(storage: Storage, tmp: Path, frames: list[tuple[bytes, int]]) -> list[Obj]:
    objs = []
    cursor = 0
    for n, (host, start, seq, with_meta) in enumerate(_schedule()):
        offset = HOSTS.index(host) * 333_333_000  # interleave hosts; whole µs (pcap stores µs)
        count = PERIOD * NS // STEP  # one packet every 2 s for the whole period
        stamps = [ns(start) + NS + offset + i * STEP for i in range(count)]
        chosen = [frames[(cursor + i) % len(frames)] for i in range(count)]
        cursor += count
        compression = ("zstd", "gzip", "none")[n % 3]
        local, key, md = make_object(tmp, prefix=storage.key_prefix, host=host, iface="eth0",
                                     start=start, seq=seq, stamps=stamps, frames=chosen,
                                     compression=compression, with_metadata=with_meta)  # fmt: skip
        storage.put_file(local, key, size=local.stat().st_size, sha256=sha256(local), metadata=md)
        objs.append(Obj(key, host, stamps, [f[0][12:14] == b"\x08\x06" for f in chosen]))
    return objs


def _write_config(path: Path, offload: dict[str, str]) -> Path:
    body = "[offload]\n" + "".join(f'{k} = "{v}"\n' for k, v in offload.items())
    path.write_text(body)
    return path


@pytest.fixture(scope="module")
def frames(all_pcap: Path) -> list[tuple[bytes, int]]:
    return read_frames(all_pcap)


@pytest.fixture(scope="module", params=["s3", "file"])
def archive(request: pytest.FixtureRequest, seaweedfs: SeaweedFS,
            tmp_path_factory: pytest.TempPathFactory,
            frames: list[tuple[bytes, int]]) -> Iterator[Archive]:  # fmt: skip
    tmp = tmp_path_factory.mktemp(f"retrieve-{request.param}")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("CREDENTIALS_DIRECTORY", None)
    if request.param == "s3":
        bucket = f"rt-{uuid.uuid4().hex[:12]}"
        seaweedfs.client().create_bucket(Bucket=bucket)
        offload = {
            "destination": f"s3://{bucket}/caps",
            "endpoint_url": seaweedfs.endpoint,
            "region": "us-east-1",
        }
        env.update(seaweedfs.env())
    else:
        offload = {"destination": f"file://{tmp / 'archive'}"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        storage = open_storage(OffloadConfig(**offload))  # type: ignore[arg-type]
        objs = _populate(storage, tmp, frames)
        yield Archive(_write_config(tmp / "rollcap.toml", offload), env, objs, storage)
        storage.close()


def rollcap(
    a: Archive, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollcap", *args, "--config", str(a.config)],
        cwd=REPO, env=env or a.env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _fetch(a: Archive, out: Path, since: datetime, until: datetime, *extra: str) -> list[int]:
    p = rollcap(a, "fetch", "--since", since.isoformat(), "--until", until.isoformat(),
                "-o", str(out), *extra)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout == ""  # fetch writes nothing to stdout; the summary goes to stderr
    assert "wrote" in p.stderr
    assert "\r" not in p.stderr  # no progress bar when stderr is not a terminal
    return read_timestamps(out)


def test_window_cutting_files_across_midnight_and_hosts(archive: Archive, tmp_path: Path) -> None:
    since = utc(2026, 11, 25, 23, 55, 30)
    until = utc(2026, 11, 26, 0, 12, 10, 500000)
    out = tmp_path / "midnight.pcap"
    got = _fetch(archive, out, since, until)
    expected = archive.expected(since, until)
    assert len(expected) > 1000
    assert got == expected  # every packet, every timestamp, in order
    assert count_packets(out) == len(expected)
    assert {
        o.host for o in archive.objects if any(ns(since) <= t < ns(until) for t in o.stamps)
    } == set(HOSTS)


def test_one_host_window_inside_the_object_without_metadata(
    archive: Archive, tmp_path: Path
) -> None:
    # db1's file seq 4 has no packet metadata: found by its key, filtered by packet time
    db1 = [o for o in archive.objects if o.host == "db1"]
    since_ns = db1[4].stamps[10]
    since = utc(1970, 1, 1) + timedelta(microseconds=since_ns // 1000)
    until = since + timedelta(seconds=61)
    got = _fetch(archive, tmp_path / "db1.pcap", since, until, "--host", "db1")
    assert got == archive.expected(since, until, ("db1",)) and len(got) == 31


def test_hosts_and_bpf_filter(archive: Archive, tmp_path: Path) -> None:
    since, until = utc(2026, 11, 25, 23, 30), utc(2026, 11, 26, 0, 30)
    got = _fetch(archive, tmp_path / "arp.pcap", since, until, "--host", "web1,db1",
                 "--filter", "arp")  # fmt: skip
    expected = archive.expected(since, until, ("web1", "db1"), arp_only=True)
    assert 0 < len(expected) == len(got)
    assert got == expected


def test_list_json_and_table(archive: Archive) -> None:
    since, until = utc(2026, 11, 26, 0, 0), utc(2026, 11, 26, 0, 5)
    p = rollcap(archive, "list", "--since", "2026-11-26T00:00:00Z", "--until",
                "2026-11-26T01:05:00+01:00", "--json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    rows = doc["captures"]
    assert doc["coverage"]["hosts_seen"] == 3 and doc["coverage"]["hosts_without_capture"] == []
    expected = [o.key for o in archive.objects
                if any(ns(since) <= t < ns(until) for t in o.stamps)]  # fmt: skip
    assert sorted(r["key"] for r in rows) == sorted(expected) and len(rows) == 3
    # the file opened 23:58 on the 25th (previous day's prefix) is among them
    assert any("/2026/11/25/" in r["key"] for r in rows)
    # db1's file opened 00:00 has no packet metadata: listed by its key, packets unknown
    assert sorted(str(r["packets"]) for r in rows) == ["300", "300", "None"]
    assert all(r["iface"] == "eth0" for r in rows)
    p = rollcap(archive, "list", "--since", "2026-11-26T00:00:00Z", "--until",
                "2026-11-26T00:05:00Z", "--host", "web2")  # fmt: skip
    assert p.returncode == 0, p.stderr
    lines = [line for line in p.stdout.splitlines() if not line.startswith("#")]
    assert "# coverage " in p.stdout  # the summary follows the table
    assert lines[0].split() == ["KEY", "HOST", "IFACE", "FIRST", "(UTC)", "LAST", "(UTC)",
                                "PACKETS", "SIZE"]  # fmt: skip
    assert len(lines) == 2 and " web2 " in lines[1] and " 300 " in lines[1]


def test_nothing_in_window_says_where_it_looked(archive: Archive, tmp_path: Path) -> None:
    out = tmp_path / "none.pcap"
    p = rollcap(archive, "fetch", "--since", "2026-11-28T10:00Z", "--until", "2026-11-28T11:00Z",
                "-o", str(out))  # fmt: skip
    assert p.returncode == 1
    msg = p.stderr.strip()
    assert "no captures between 2026-11-28T10:00:00Z and 2026-11-28T11:00:00Z" in msg
    assert "hosts db1, web1, web2" in msg and "2026-11-27 to 2026-11-28" in msg
    assert not out.exists()


def test_a_miss_names_the_hosts_and_interfaces_there_are(archive: Archive) -> None:
    window = ["--since", "2026-11-26T00:00Z", "--until", "2026-11-26T00:10Z"]
    p = rollcap(archive, "list", *window, "-H", "nosuch")
    assert p.returncode == 1
    where = archive.storage.describe()
    assert p.stderr.splitlines()[-1] == (
        f"rollcap: no host 'nosuch' in {where}; hosts seen: db1, web1, web2"
    )
    p = rollcap(archive, "list", *window, "-i", "eth9")
    assert p.returncode == 1
    assert p.stderr.splitlines()[-1] == (
        "rollcap: no captures on interface 'eth9' between 2026-11-26T00:00:00Z and "
        f"2026-11-26T00:10:00Z in {where}; interfaces with captures then: eth0"
    )


def test_hold_on_a_file_archive_is_refused_once_up_front(archive: Archive) -> None:
    if not archive.storage.describe().startswith("file://"):
        pytest.skip("S3: test_destination_commands holds for real")
    p = rollcap(archive, "hold", "--since", "2026-11-26T00:00Z", "--until", "2026-11-26T01:00Z")
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr == (
        f"rollcap: hold: {archive.storage.describe()} has no legal holds; they need an S3 "
        "destination whose bucket has Object Lock (offload.destination)\n"
    )


def test_usage_errors_are_one_line(archive: Archive, tmp_path: Path) -> None:
    p = rollcap(archive, "list", "--since", "yesterday-ish")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "--since:" in p.stderr
    p = rollcap(archive, "fetch", "--since", "-1h", "--until", "2026-99-01", "-o",
                str(tmp_path / "x.pcap"))  # fmt: skip
    assert p.returncode == 2 and "--until:" in p.stderr
    p = rollcap(archive, "fetch", "--since", "2026-11-26T00:00Z", "--until", "2026-11-26T00:01Z",
                "--filter", "tcp and (", "-o", str(tmp_path / "x.pcap"))  # fmt: skip
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "--filter" in p.stderr
    assert not (tmp_path / "x.pcap").exists()


def test_access_denied_names_the_s3_code(archive: Archive, tmp_path: Path) -> None:
    if not archive.storage.key_prefix:
        pytest.skip("file:// has no credentials")
    env = {**archive.env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    p = rollcap(archive, "fetch", "--since", "2026-11-26T00:00Z", "--until", "2026-11-26T00:01Z",
                "-o", str(tmp_path / "x.pcap"), env=env)  # fmt: skip
    assert p.returncode == 1
    assert p.stderr.startswith("rollcap: access denied listing s3://")
    assert "SignatureDoesNotMatch" in p.stderr and p.stderr.count("\n") == 1
    assert not (tmp_path / "x.pcap").exists()


BUSY = 1100  # objects of one host and day: more than one listing page (1000)


@pytest.fixture(scope="module")
def busy(archive: Archive, tmp_path_factory: pytest.TempPathFactory) -> list[Obj]:
    """One host rotating every 60 s for 1100 minutes of 2026-11-20 (2 packets per file)."""
    from concurrent.futures import ThreadPoolExecutor

    tmp = tmp_path_factory.mktemp("busy")
    frame = [(bytes.fromhex("ffffffffffff020000000001") + b"\x08\x00" + b"\x00" * 46, 60)]

    def one(i: int) -> Obj:
        start = utc(2026, 11, 20, 0, 0) + timedelta(minutes=i)
        stamps = [ns(start) + NS, ns(start) + 30 * NS]
        local, key, md = make_object(tmp, prefix=archive.storage.key_prefix, host="busy",
                                     iface="eth0", start=start, seq=i, stamps=stamps,
                                     frames=frame)  # fmt: skip
        archive.storage.put_file(local, key, size=local.stat().st_size, sha256=sha256(local),
                                 metadata=md)  # fmt: skip
        local.unlink()
        return Obj(key, "busy", stamps, [False, False])

    with pytest.MonkeyPatch.context() as mp:
        for k, v in archive.env.items():
            mp.setenv(k, v)
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(one, range(BUSY)))


def test_pagination_over_more_than_a_page(
    archive: Archive, busy: list[Obj], tmp_path: Path
) -> None:
    since, until = utc(2026, 11, 20, 0, 0), utc(2026, 11, 21, 0, 0)
    p = rollcap(
        archive, "list", "--since", since.isoformat(), "--until", until.isoformat(), "--json"
    )  # no --host: hosts are discovered, and only "busy" has objects that day
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)["captures"]
    assert [r["key"] for r in rows] == [o.key for o in busy]  # all 1100, in time order
    if archive.storage.key_prefix:  # S3: the day's listing really spans several pages
        s3: Any = archive.storage
        page = s3.client.list_objects_v2(Bucket=s3.bucket, Prefix=busy[0].key.rsplit("/", 1)[0])
        assert page["IsTruncated"] and page["KeyCount"] < BUSY
    out = tmp_path / "busy.pcap"
    # a window cutting the first and last file: drops 1 packet at each end
    cut_since, cut_until = (
        since + timedelta(seconds=2),
        since + timedelta(minutes=BUSY - 1, seconds=2),
    )
    got = _fetch(archive, out, cut_since, cut_until, "--host", "busy", "--jobs", "8")
    expected = sorted(t for o in busy for t in o.stamps if ns(cut_since) <= t < ns(cut_until))
    assert len(expected) == 2 * BUSY - 2
    assert got == expected


def test_progress_bar_on_a_terminal(archive: Archive, tmp_path: Path) -> None:
    import pty
    import threading

    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                b = os.read(master, 65536)
            except OSError:  # EIO once the child closed its end
                return
            if not b:
                return
            chunks.append(b)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    out = tmp_path / "tty.pcap"
    p = subprocess.run(
        [sys.executable, "-m", "rollcap", "fetch", "--config", str(archive.config), "--since",
         "2026-11-25T23:00Z", "--until", "2026-11-26T02:00Z", "-o", str(out)],
        cwd=REPO, env=archive.env, stdout=subprocess.PIPE, stderr=slave, timeout=300,
    )  # fmt: skip
    os.close(slave)
    reader.join(30)
    os.close(master)
    text = b"".join(chunks).decode()
    assert p.returncode == 0 and p.stdout == b""
    n = len(archive.expected(utc(2026, 11, 25, 23), utc(2026, 11, 26, 2)))
    assert f"\rfetch [{'#' * 30}] 27/27 objects" in text
    assert re.search(
        rf"wrote {re.escape(str(out))}: {n} packets \([\d.]+ [kM]B\) from 27 objects "
        rf"\([\d.]+ [kM]B downloaded\)",
        text,
    )


def test_sigterm_mid_fetch_leaves_nothing_behind(
    archive: Archive, busy: list[Obj], tmp_path: Path
) -> None:
    import signal
    import time

    out = tmp_path / "term.pcap"
    p = subprocess.Popen(
        [sys.executable, "-m", "rollcap", "fetch", "--config", str(archive.config), "--since",
         "2026-11-20T00:00Z", "--until", "2026-11-21T00:00Z", "--jobs", "1", "-o", str(out)],
        cwd=REPO, env=archive.env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".rollcap-fetch-*/0000*")):  # downloads under way
        assert p.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    p.send_signal(signal.SIGTERM)
    assert p.wait(60) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []  # no output, no temp directory


def _fetch_argv(a: Archive, since: datetime, until: datetime, *extra: str) -> list[str]:
    return [sys.executable, "-m", "rollcap", "fetch", "--config", str(a.config), "--since",
            since.isoformat(), "--until", until.isoformat(), *extra]  # fmt: skip


def test_fetch_to_stdout_pipes_into_tcpdump(archive: Archive, tmp_path: Path) -> None:
    """`rollcap fetch -o - | tcpdump -r -`: a valid pcap on stdout, the summary on stderr."""
    since, until = utc(2026, 11, 25, 23, 55, 30), utc(2026, 11, 26, 0, 12, 10)
    expected = archive.expected(since, until)
    out = tmp_path / "via-tcpdump.pcap"
    fetch_p = subprocess.Popen(
        _fetch_argv(archive, since, until, "-o", "-"),
        cwd=REPO, env=archive.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert fetch_p.stdout is not None
    tcpdump = subprocess.run(["tcpdump", "-r", "-", "-w", str(out)], stdin=fetch_p.stdout,
                             capture_output=True, timeout=300)  # fmt: skip
    fetch_p.stdout.close()
    err = fetch_p.stderr.read().decode() if fetch_p.stderr else ""
    assert fetch_p.wait(60) == 0, err
    assert tcpdump.returncode == 0, tcpdump.stderr
    assert f"wrote stdout: {len(expected)} packets" in err
    assert read_timestamps(out) == expected
    assert list(tmp_path.iterdir()) == [out]  # no temp directory next to anything


@pytest.mark.parametrize("args", [["list"], ["list", "--json"], ["fetch", "-o", "-"]])
def test_a_closed_pipe_ends_quietly_with_141(archive: Archive, args: list[str]) -> None:
    """`rollcap list | head`, `fetch -o - | head -c 100` whose reader has gone: no
    traceback, nothing on stderr, 141 (128 + SIGPIPE) like any Unix tool."""
    since, until = utc(2026, 11, 26, 0, 0), utc(2026, 11, 26, 0, 5)
    p = run_into_closed_pipe(archive.config, archive.env, *args, "--since", since.isoformat(),
                             "--until", until.isoformat())  # fmt: skip
    assert (p.returncode, p.stderr) == (141, "")


def test_fetch_to_a_link_to_stdout_keeps_the_link(archive: Archive, tmp_path: Path) -> None:
    """-o /dev/stdout (here: a link of ours to /proc/self/fd/1) is stdout, never replaced."""
    since, until = utc(2026, 11, 26, 0, 0), utc(2026, 11, 26, 0, 5)
    link = tmp_path / "stdout-link"
    link.symlink_to("/proc/self/fd/1")
    p = subprocess.run(_fetch_argv(archive, since, until, "-o", str(link)), cwd=REPO,
                       env=archive.env, capture_output=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert link.is_symlink()
    assert p.stdout[:4] == b"\xd4\xc3\xb2\xa1" and len(p.stdout) > 24


def test_fetch_refuses_existing_files_links_and_fifos(archive: Archive, tmp_path: Path) -> None:
    since, until = utc(2026, 11, 26, 0, 0), utc(2026, 11, 26, 0, 5)
    existing = tmp_path / "existing.pcap"
    existing.write_bytes(b"earlier evidence")
    link = tmp_path / "link.pcap"
    link.symlink_to(existing)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target, why in ((existing, "exists; pass --force"), (link, "symbolic link"),
                        (fifo, "FIFO"), (tmp_path, "directory")):  # fmt: skip
        p = rollcap(archive, "fetch", "--since", since.isoformat(), "--until", until.isoformat(),
                    "-o", str(target))  # fmt: skip
        assert p.returncode == 2 and why in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert existing.read_bytes() == b"earlier evidence" and link.is_symlink()
    p = rollcap(archive, "fetch", "--since", since.isoformat(), "--until", until.isoformat(),
                "-o", str(existing), "--force")  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert read_timestamps(existing) == archive.expected(since, until)


def test_list_works_with_a_typo_in_the_config(archive: Archive, tmp_path: Path) -> None:
    """The daemons run on an earlier config: list warns and uses the file's valid keys."""
    broken = tmp_path / "broken.toml"
    broken.write_text(archive.config.read_text() + "[capture]\nrotate_seconds = 0\n")
    p = subprocess.run(
        [sys.executable, "-m", "rollcap", "list", "--config", str(broken), "--since",
         "2026-11-26T00:00:00Z", "--until", "2026-11-26T00:05:00Z", "--json"],
        cwd=REPO, env=archive.env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "warning:" in p.stderr and "rotate_seconds" in p.stderr
    assert len(json.loads(p.stdout)["captures"]) == 3
