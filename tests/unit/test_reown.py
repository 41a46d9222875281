"""rollcap.reown: postinst's re-owning of /var/lib/rollcap by directory fds, never
through a link the tree's unprivileged owner may have put there."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from rollcap.reown import archive_mode, main, private_mode, reown

ROLLCAP, GID, OTHER = 4201, 4200, 4202
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root (CI runs as root)")


def _st(p: Path) -> tuple[int, int, int]:
    st = os.lstat(p)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def test_modes_are_chmods_g_plus_rX_o_minus_rwx_and_go_minus_rwx() -> None:
    assert archive_mode(stat.S_IFREG | 0o604) == 0o640
    assert archive_mode(stat.S_IFREG | 0o700) == 0o750  # X: executable stays so
    assert archive_mode(stat.S_IFDIR | 0o707) == 0o750
    assert private_mode(stat.S_IFDIR | 0o2775) == 0o2700
    assert private_mode(stat.S_IFREG | 0o644) == 0o600


@needs_root
def test_only_roots_dirs_and_single_files_change_and_no_link_is_followed(tmp_path: Path,
                                                                          ) -> None:  # fmt: skip
    top = tmp_path / "lib"
    (top / "archive" / "h" / "2026").mkdir(parents=True)
    cap = top / "archive" / "h" / "2026" / "a.pcap.zst"
    cap.write_bytes(b"x")
    cap.chmod(0o604)
    outside_dir = tmp_path / "etc"
    outside_dir.mkdir(mode=0o755)
    secret = outside_dir / "shadow"
    secret.write_bytes(b"s")
    secret.chmod(0o600)
    # what the tree's owner can plant: links to root's files, a hard link, a FIFO,
    # a file of its own
    (top / "archive" / "h" / "swapped").symlink_to(outside_dir)
    (top / "archive" / "link").symlink_to(secret)
    os.link(secret, top / "archive" / "hard")
    os.mkfifo(top / "archive" / "fifo", 0o600)
    mine = top / "archive" / "mine"
    mine.write_bytes(b"m")
    os.chown(mine, OTHER, OTHER)
    mine.chmod(0o666)
    before = {p: _st(p) for p in (secret, outside_dir, mine, top / "archive" / "fifo")}
    changed, problems = reown(str(top), ROLLCAP, GID, archive_mode, only_uid=0)
    assert problems == []
    assert changed == 5  # lib, archive, h, 2026, a.pcap.zst
    for d in (top, top / "archive", top / "archive" / "h", top / "archive" / "h" / "2026"):
        assert _st(d)[:2] == (ROLLCAP, GID) and _st(d)[2] & 0o057 == 0o050, d
    assert _st(cap) == (ROLLCAP, GID, 0o640)
    assert {p: _st(p) for p in before} == before  # links not followed, others' untouched
    assert secret.read_bytes() == b"s"


@needs_root
def test_all_to_root_and_private(tmp_path: Path) -> None:
    top = tmp_path / "lib"
    (top / "archive").mkdir(parents=True)
    f = top / "archive" / "a.pcap"
    f.write_bytes(b"x")
    for p in (top, top / "archive", f):
        os.chown(p, ROLLCAP, GID)
    f.chmod(0o640)
    changed, problems = reown(str(top), 0, 0, private_mode)
    assert (changed, problems) == (3, [])
    assert _st(f) == (0, 0, 0o600) and _st(top / "archive")[:2] == (0, 0)


def test_bad_arguments_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["/var/lib/rollcap", "rollcap", "--from-root", "archive"]) == 2
    assert "usage:" in capsys.readouterr().err
