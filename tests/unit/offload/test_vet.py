"""What may be uploaded from ready/, and that refusing never blocks or follows."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rollcap.offload.vet import Refused, Vanished, open_ready
from rollcap.quarantine import enforce_cap, quarantine
from rollcap.spool.fs import Dir
from rollcap.spool.readyname import ReadyName
from tests.support.net import TEST_PCAPS

SRC = sorted(TEST_PCAPS.glob("*.pcap"))[0]
NAME = ReadyName(datetime(2026, 11, 26, 12, 0, tzinfo=UTC), 1, "h", "eth0").format()
ME = {os.geteuid()}


def _copy(p: Path) -> Path:
    p.write_bytes(SRC.read_bytes())
    return p


def test_a_good_capture_opens(tmp_path: Path) -> None:
    p = tmp_path / NAME
    p.write_bytes(SRC.read_bytes())
    o = open_ready(Dir(p.parent), p.name, ME)
    try:
        assert o.name.seq == 1 and o.size == SRC.stat().st_size
        assert os.read(o.fd, 4) == SRC.read_bytes()[24:28]  # positioned after the header
    finally:
        o.close()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.symlink_to(SRC), "symbolic link"),
        (lambda p: os.link(_copy(p.with_name("elsewhere")), p), "hard link"),
        (lambda p: os.mkfifo(p), "FIFO"),  # must not block
        (lambda p: p.mkdir(), "directory"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(b"\x7fELF" + b"\0" * 40), "not a pcap file"),
        (lambda p: p.write_bytes(SRC.read_bytes()[:20]), "shorter than a pcap header"),
        (lambda p: p.write_bytes(b"\x0a\x0d\x0d\x0a" + b"\0" * 40), "pcapng"),
    ],
)
def test_refusals(tmp_path: Path, make, reason: str) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / NAME
    make(p)
    with pytest.raises(Refused, match=reason):
        open_ready(Dir(p.parent), p.name, ME)


def test_bad_name_and_foreign_owner(tmp_path: Path) -> None:
    p = tmp_path / "capture.pcap"
    p.write_bytes(SRC.read_bytes())
    with pytest.raises(Refused, match="not a rollcap capture name"):
        open_ready(Dir(p.parent), p.name, ME)
    q = tmp_path / NAME
    q.write_bytes(SRC.read_bytes())
    with pytest.raises(Refused, match="owned by uid"):
        open_ready(Dir(q.parent), q.name, {os.geteuid() + 1})


def test_a_vanished_file(tmp_path: Path) -> None:
    with pytest.raises(Vanished):
        open_ready(Dir(tmp_path), NAME, ME)


def test_quarantine_keeps_both_on_name_clash(tmp_path: Path) -> None:
    ready, q = tmp_path / "ready", tmp_path / "q"
    ready.mkdir()
    q.mkdir()
    for i in range(2):
        (ready / "x").write_text(str(i))
        quarantine(Dir(ready), "x", Dir(q), f"reason {i}")
    assert (q / "x").read_text() == "0" and (q / "x.1").read_text() == "1"
    assert "reason 1" in (q / "x.1.reason").read_text()


def test_quarantine_cap_removes_the_oldest_first(tmp_path: Path) -> None:
    q = tmp_path / "q"
    q.mkdir()
    for i in range(5):
        (q / f"f{i}").write_bytes(b"x" * 1000)
        (q / f"f{i}.reason").write_text("r")
        os.utime(q / f"f{i}", (1_800_000_000 + i, 1_800_000_000 + i))
    (q / "d").mkdir()  # a planted directory tree goes too, never followed
    (q / "d" / "inner").write_bytes(b"y" * 10)
    os.utime(q / "d", (1_700_000_000, 1_700_000_000))
    (q / "link").symlink_to(SRC)
    os.utime(q / "link", (1_700_000_000, 1_700_000_000), follow_symlinks=False)
    removed = enforce_cap(Dir(q), 2500)
    assert [r.name for r in removed][-3:] == ["f0", "f1", "f2"]
    assert {"d", "link"} <= {r.name for r in removed}
    assert sorted(p.name for p in q.iterdir()) == ["f3", "f3.reason", "f4", "f4.reason"]
    assert SRC.exists()
