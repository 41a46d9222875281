"""Spool entries through directory fds: what is refused, and that nothing is followed."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollcap.spool import fs as spoolfs
from rollcap.spool.fs import OVERSIZED, BadEntry, Dir, Oversized, tree_bytes

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


# ------------------------------------------------------------- bounded walks


@pytest.fixture(autouse=True)
def forget_oversized() -> Iterator[None]:
    OVERSIZED.clear()
    yield
    OVERSIZED.clear()


def _deep(top: Path, levels: int, file_bytes: int = 10) -> None:
    """top/d/d/.../d, levels deep, a file of file_bytes in each (by fd: the path
    would be longer than PATH_MAX)."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            f = os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
            os.write(f, b"x" * file_bytes)
            os.close(f)
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _lines(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if name in r.getMessage()]


def test_a_deep_planted_tree_ends_the_walk_logged_once(d: Dir, caplog: pytest.LogCaptureFixture,
                                                        ) -> None:  # fmt: skip
    """1,200 levels raised RecursionError (or EMFILE) in the budget's walk."""
    (d.path / "capture.pcap").write_bytes(b"p" * 1000)
    _deep(d.path / "deep", 1200)
    try:
        _walk_deep(d, caplog)
    finally:  # pytest's own cleanup (shutil.rmtree, Python 3.11) would recurse
        subprocess.run(["rm", "-rf", str(d.path / "deep")], check=True)


def _walk_deep(d: Dir, caplog: pytest.LogCaptureFixture) -> None:
    before = _fds()
    with caplog.at_level(logging.WARNING, "rollcap.spoolfs"):
        first = tree_bytes(d.path)
        # levels 0..MAX_DEPTH-1 walked, 10 bytes each: the rest is not counted
        assert first == 1000 + 10 * spoolfs.MAX_DEPTH
        assert tree_bytes(d.path) == first  # every loop: the same, not walked again
        with pytest.raises(Oversized):
            d.remove_entry("deep")  # left for the operator
    assert _fds() == before
    lines = _lines(caplog, "deep")
    assert len(lines) == 1 and f"deeper than {spoolfs.MAX_DEPTH} directory levels" in lines[0]
    assert (d.path / "deep" / "d" / "f").exists()


def test_a_wide_planted_tree_is_walked_once(d: Dir, caplog: pytest.LogCaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(spoolfs, "MAX_DIR_ENTRIES", 50)  # the same rule, a smaller tree
    wide = d.path / "wide" / "sub"
    wide.mkdir(parents=True)
    for i in range(51):
        (wide / f"f{i}").write_bytes(b"x")
    with caplog.at_level(logging.WARNING, "rollcap.spoolfs"):
        first = tree_bytes(d.path)
        (wide / "f0").write_bytes(b"y" * 10_000)  # not seen: the tree is not walked again
        assert tree_bytes(d.path) == first <= 50
    lines = _lines(caplog, "wide")
    assert len(lines) == 1, lines
    assert "a directory tree with a directory of more than 50 entries" in lines[0]


def test_many_entries_in_all_end_the_walk(d: Dir, caplog: pytest.LogCaptureFixture,
                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(spoolfs, "MAX_TREE_ENTRIES", 100)
    for i in range(12):
        sub = d.path / "bushy" / f"s{i}"
        sub.mkdir(parents=True)
        for j in range(10):
            (sub / f"f{j}").write_bytes(b"x")
    with caplog.at_level(logging.WARNING, "rollcap.spoolfs"):
        assert tree_bytes(d.path) < 120
    assert "a directory tree of more than 100 entries in all" in _lines(caplog, "bushy")[0]


def test_trees_within_the_caps_are_counted_and_removed_whole(d: Dir) -> None:
    _deep(d.path / "ok", spoolfs.MAX_DEPTH - 1)
    assert tree_bytes(d.path) == 10 * (spoolfs.MAX_DEPTH - 1)
    before = _fds()
    d.remove_entry("ok")
    assert not (d.path / "ok").exists() and _fds() == before
    assert list(d.path.iterdir()) == []


def test_a_renamed_oversized_tree_is_looked_at_again(d: Dir, caplog: pytest.LogCaptureFixture,
                                                     ) -> None:  # fmt: skip
    """Moved into quarantine/: one more line, naming where it is now."""
    _deep(d.path / "deep", spoolfs.MAX_DEPTH + 1)
    (d.path / "q").mkdir()
    with caplog.at_level(logging.WARNING, "rollcap.spoolfs"):
        tree_bytes(d.path)
        os.rename(d.path / "deep", d.path / "q" / "deep")
        tree_bytes(d.path / "q")
        tree_bytes(d.path / "q")
    lines = _lines(caplog, "deep")
    assert len(lines) == 2 and "/q/deep:" in lines[1], lines
