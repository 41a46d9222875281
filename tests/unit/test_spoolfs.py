"""Spool entries through directory fds: what is refused, and that nothing is followed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from rollcap.spoolfs import BadEntry, Dir

ME = {os.geteuid()}


@pytest.fixture
def d(tmp_path: Path) -> Dir:
    (tmp_path / "spool").mkdir()
    return Dir(tmp_path / "spool")


def test_a_plain_file_of_ours_opens(d: Dir) -> None:
    (d.path / "f").write_bytes(b"abc")
    fd = d.open("f", ME, write=True)
    try:
        assert os.read(fd, 3) == b"abc" and os.get_blocking(fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("plant", "reason"),
    [
        (lambda p, out: p.symlink_to(out), "symbolic link"),
        (lambda p, out: os.link(out, p), "hard link"),
        (lambda p, out: os.mkfifo(p), "FIFO"),  # must not block
        (lambda p, out: p.mkdir(), "directory"),
    ],
)
def test_links_fifos_and_directories_are_refused(
    d: Dir, tmp_path: Path, plant, reason: str
) -> None:  # type: ignore[no-untyped-def]
    outside = tmp_path / "outside"
    outside.write_bytes(b"secret")
    outside.chmod(0o600)
    plant(d.path / "e", outside)
    for write in (False, True):
        with pytest.raises(BadEntry, match=reason):
            d.open("e", ME, write=write)
    assert outside.read_bytes() == b"secret" and stat.S_IMODE(outside.stat().st_mode) == 0o600


def test_a_foreign_owner_is_refused(d: Dir) -> None:
    (d.path / "f").write_bytes(b"x")
    with pytest.raises(BadEntry, match="owned by uid"):
        d.open("f", {os.geteuid() + 1})
    assert d.read_small("missing", ME, 10) is None
    (d.path / "big").write_bytes(b"x" * 11)
    with pytest.raises(BadEntry, match="larger than"):
        d.read_small("big", ME, 10)


def test_atomic_writes_replace_a_planted_link_not_its_target(d: Dir, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"keep")
    (d.path / "state.json").symlink_to(target)
    d.write_atomic("state.json", b"{}", 0o640)
    assert target.read_bytes() == b"keep"
    st = os.lstat(d.path / "state.json")
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
    assert sorted(os.listdir(d.path)) == ["state.json"]  # no temp left behind


def test_temps_never_reuse_a_name_and_unlink_checks_the_inode(d: Dir) -> None:
    fd1, n1 = d.create_temp(".x.", ".tmp")
    fd2, n2 = d.create_temp(".x.", ".tmp")
    os.close(fd1)
    os.close(fd2)
    assert n1 != n2
    st = os.lstat(d.path / n1)
    os.replace(d.path / n2, d.path / n1)  # another inode under the same name
    assert not d.unlink_if_same(n1, st) and (d.path / n1).exists()


def test_remove_entry_never_follows_a_link_into_a_directory(d: Dir, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_bytes(b"x")
    (d.path / "tree").mkdir()
    (d.path / "tree" / "link").symlink_to(elsewhere)
    (d.path / "tree" / "f").write_bytes(b"y")
    d.remove_entry("tree")
    assert (elsewhere / "keep").exists() and not (d.path / "tree").exists()
