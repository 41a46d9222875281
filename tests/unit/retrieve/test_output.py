"""`fetch -o`: which paths are refused, stdout under its names, the summary line."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from rollcap.commands.fetch import summary
from rollcap.config.schema import DEFAULT_KEY_TEMPLATE as T
from rollcap.errors import RollcapError, UsageError
from rollcap.retrieve.catalog import find_captures
from rollcap.retrieve.fetch import FetchResult, fetch
from rollcap.retrieve.output import Output, place, resolve_output
from tests.support.archive import NS, MemoryStorage, make_object, ns, utc
from tests.support.fetchstore import FRAMES


@pytest.fixture
def not_a_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "isatty", lambda fd: False)


@pytest.mark.parametrize("name", ["-", "/dev/stdout", "/proc/self/fd/1", "/dev/fd/1"])
def test_stdout_names_mean_stdout(name: str, not_a_tty: None) -> None:
    out = resolve_output(name)
    assert out.is_stdout and out.describe() == "stdout"


def test_stdout_on_a_terminal_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "isatty", lambda fd: True)
    with pytest.raises(UsageError, match="stdout is a terminal") as e:
        resolve_output("-")
    assert e.value.exit_code == 2


def test_a_link_to_stdout_is_stdout(tmp_path: Path, not_a_tty: None) -> None:
    link = tmp_path / "out"
    link.symlink_to("/proc/self/fd/1")
    assert resolve_output(str(link)).is_stdout
    assert link.is_symlink()  # and nothing replaced it


def test_refused_kinds_exit_2(tmp_path: Path) -> None:
    target = tmp_path / "target.pcap"
    target.write_bytes(b"keep")
    link = tmp_path / "link.pcap"
    link.symlink_to(target)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cases = {
        str(link): "symbolic link",
        str(tmp_path): "a directory",
        "/dev/null": "a device",
        str(fifo): "a FIFO",
    }
    for path, why in cases.items():
        for force in (False, True):
            with pytest.raises(UsageError, match=why) as e:
                resolve_output(path, force=force)
            assert e.value.exit_code == 2
    assert target.read_bytes() == b"keep" and link.is_symlink()


def test_existing_file_needs_force(tmp_path: Path) -> None:
    f = tmp_path / "x.pcap"
    f.write_bytes(b"old")
    with pytest.raises(UsageError, match="exists; pass --force") as e:
        resolve_output(str(f))
    assert e.value.exit_code == 2
    assert resolve_output(str(f), force=True).path == f
    assert resolve_output(str(tmp_path / "new.pcap")).path == tmp_path / "new.pcap"
    with pytest.raises(RollcapError, match="does not exist"):
        resolve_output(str(tmp_path / "no" / "x.pcap"))


def test_place_never_clobbers_without_force(tmp_path: Path) -> None:
    out = tmp_path / "x.pcap"
    checked = resolve_output(str(out))
    out.write_bytes(b"appeared meanwhile")
    tmp = tmp_path / "tmp"
    tmp.write_bytes(b"new")
    with pytest.raises(UsageError, match="appeared meanwhile"):
        place(tmp, checked)
    assert out.read_bytes() == b"appeared meanwhile"
    place(tmp, Output(out, force=True))
    assert out.read_bytes() == b"new" and not tmp.exists()


def test_fetch_streams_to_stdout_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = MemoryStorage()
    start = utc(2026, 11, 26, 10)
    local, key, md = make_object(tmp_path, prefix="caps", host="a", iface="eth0", start=start,
                                 seq=0, stamps=[ns(start) + i * NS for i in range(20)],
                                 frames=FRAMES, compression="zstd")  # fmt: skip
    st.put_file(local, key, size=local.stat().st_size, sha256="", metadata=md)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmpdir"))
    (tmp_path / "tmpdir").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    until = utc(2026, 11, 26, 11)
    caps, _ = find_captures(st, template=T, prefix="caps", since=start, until=until)
    sink = io.BytesIO()
    r = fetch(st, caps, since=start, until=until, output=Output(None), stdout=sink)
    data = sink.getvalue()
    assert data[:4] == b"\xd4\xc3\xb2\xa1" and r.packets == 20
    assert r.pcap_bytes == len(data) == 24 + sum(16 + len(FRAMES[i % 2][0]) for i in range(20))
    assert list((tmp_path / "tmpdir").iterdir()) == []


def test_summary_counts_and_sizes() -> None:
    r = FetchResult(Output(Path("/tmp/x.pcap")), packets=1, objects=1, pcap_bytes=2_500_000,
                    downloaded_bytes=900_000)  # fmt: skip
    line = summary(r, ["web1"])
    assert line == ("wrote /tmp/x.pcap: 1 packet (2.5 MB) from 1 object "
                    "(900.0 kB downloaded) of web1")  # fmt: skip
    r = FetchResult(Output(None), packets=3, objects=2, pcap_bytes=10, downloaded_bytes=5)
    assert summary(r, ["a", "b"]).startswith("wrote stdout: 3 packets (10 B) from 2 objects")
