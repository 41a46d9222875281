"""A full spool filesystem never crashes the offload (a real 2 MB tmpfs).

The offload is what frees space, so on ENOSPC it must log, keep going and
retry: the pid in offload.lock, the state file, quarantine reason files and
a file:// archive's temp files all meet a full disk without a crash or a
leftover (the offload writes no copy of a capture into the spool).
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollcap.config.load import validate_data
from rollcap.notify import Notifier
from rollcap.offload.pipeline import Pipeline
from rollcap.offload.service import OffloadService
from rollcap.quarantine import quarantine
from rollcap.spool import Spool
from rollcap.spool.fs import Dir
from rollcap.storage import open_storage
from tests.support.net import TEST_PCAPS

SRC = max(TEST_PCAPS.glob("*.pcap"), key=lambda p: p.stat().st_size)


@pytest.fixture
def tiny_fs(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / f"tiny-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)
    request.addfinalizer(lambda: subprocess.run(["umount", "-l", str(mnt)], check=False))
    return mnt


def fill(path: Path) -> None:
    """Take every free byte (unbuffered, so closing cannot fail again)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                if not os.write(fd, b"\0" * 65536):
                    break
            except OSError as e:
                assert e.errno == errno.ENOSPC
                break
        for size in (4096, 512, 1):  # the last partial page too
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)


@pytest.fixture
def service(tiny_fs: Path) -> Iterator[OffloadService]:
    spool = tiny_fs / "spool"
    for d in ("ready", "quarantine", "tmp", "state", "work"):
        (spool / d).mkdir(parents=True)
    archive = tiny_fs.parent / "archive"
    cfg = validate_data(
        {"spool": {"directory": str(spool)}, "offload": {"destination": f"file://{archive}"}}
    )
    svc = OffloadService(cfg, open_storage(cfg.offload), Notifier())
    yield svc
    if svc.watcher._observer.is_alive():
        svc.watcher.stop()
    svc.uploads.executor.shutdown()


def test_first_start_on_a_full_disk_runs_without_the_pid_then_writes_it(
    service: OffloadService, tiny_fs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ballast = tiny_fs / "ballast"
    fill(ballast)
    lock = service.spool.state / "offload.lock"
    with caplog.at_level(logging.INFO, logger="rollcap.offload"):
        service.prepare()  # used to die with ENOSPC writing the pid
        assert lock.exists() and lock.read_bytes() == b""
        assert any("no space left" in r.getMessage() for r in caplog.records)
        # the flock holds anyway: a second offload is refused
        import fcntl

        fd = os.open(lock, os.O_RDONLY)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
        service._publish()  # state file: fails quietly, leaves no temp file
        assert not (service.spool.state / "offload.json").exists()
        assert [p.name for p in service.spool.state.iterdir()] == ["offload.lock"]
        ballast.unlink()  # uploads freed space
        service._publish()
    assert lock.read_text() == f"{os.getpid()}\n"
    assert (service.spool.state / "offload.json").exists()


def test_a_full_spool_does_not_stop_the_pipeline(service: OffloadService,
                                                 tiny_fs: Path) -> None:  # fmt: skip
    """The offload writes no copy of a capture into the spool (it compresses
    straight into the destination), so a full spool is drained, not stuck."""
    name = "20261126T120000Z-000001_h_eth0.pcap"
    (service.spool.ready / name).write_bytes(SRC.read_bytes()[:1_000_000])
    fill(tiny_fs / "ballast")
    service.uploads.pipeline.owners = {os.getuid()}
    out = service.uploads.pipeline.process(name)
    assert out.kind == "uploaded", out
    assert list(service.spool.tmp.iterdir()) == []
    assert not (service.spool.ready / name).exists()  # stored, verified, freed


def test_a_full_archive_fails_the_file_cleanly_and_keeps_it(
    tiny_fs: Path, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    for d in ("ready", "quarantine", "tmp", "state", "work"):
        (spool / d).mkdir(parents=True)
    archive = tiny_fs / "archive"
    cfg = validate_data({
        "spool": {"directory": str(spool)},
        "offload": {"destination": f"file://{archive}", "compression": "none"},
    })  # fmt: skip
    storage = open_storage(cfg.offload)
    storage.check()  # makes its temp dir while there is room
    name = "20261126T120000Z-000001_h_eth0.pcap"
    (spool / "ready" / name).write_bytes(SRC.read_bytes()[:1_000_000])
    fill(tiny_fs / "ballast")
    out = Pipeline(cfg, Spool.at(spool), storage, {os.getuid()}, threading.Event()).process(name)
    assert out.kind == "failed" and "No space left" in out.message, out
    assert out.dest_error is not None and out.dest_error.code == "ENOSPC"  # the archive's
    assert list((archive / ".rollcap-tmp").iterdir()) == []  # no partial temp file
    assert (spool / "ready" / name).exists()  # kept for the retry


def test_quarantine_on_a_full_disk_moves_the_file_without_a_half_reason(tiny_fs: Path) -> None:
    ready, quar = tiny_fs / "ready", tiny_fs / "quarantine"
    ready.mkdir()
    quar.mkdir()
    bad = ready / "bad.pcap"
    bad.write_bytes(b"x" * 100)
    fill(tiny_fs / "ballast")
    dest = quar / quarantine(Dir(ready), bad.name, Dir(quar), "not a pcap " * 1000)
    assert dest.exists() and not bad.exists()
    reason = Path(f"{dest}.reason")
    assert not reason.exists() or reason.read_text().endswith("\n")
