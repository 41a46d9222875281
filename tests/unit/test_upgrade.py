"""The upgrade from 0.1.0 keeps every spool file and gives it to the new owners,
without following what tcpdump's user may have left in work/, nor adopting
what rollcap (the offload user, who can write state/, ready/ and quarantine/)
may have planted there."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from rollcap.spool import Spool
from rollcap.upgrade import COUNTERS, migrate

# Owners by number (root can chown to any): the capture user, 0.1.0's tcpdump
# user, and rollcap, who may plant entries while the upgrade runs.
CAPTURE, OLD_TCPDUMP, ROLLCAP = 4101, 4102, 4103
GID = 4100
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root (CI runs as root)")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root (CI runs as root)")
def test_old_spool_files_move_to_the_new_owners(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    spool = Spool.at(tmp_path / "spool")
    for d in ("work", "ready", "quarantine", "tmp", "state"):
        (spool.root / d).mkdir(parents=True)
    (spool.state / "capture-counters.json").write_text('{"generation": 7, "seq": 42}')
    (spool.state / "capture.json").write_text("{}")
    (spool.state / "offload.json").write_text("{}")
    live = spool.work / "g000007-20261126T120000-eth0.pcap"
    live.write_bytes(b"\xd4\xc3\xb2\xa1" + b"\0" * 40)
    live.chmod(0o660)
    ready = spool.ready / "20261126T120000Z-000042_h_eth0.pcap"
    ready.write_bytes(b"x" * 100)
    ready.chmod(0o640)
    outside = tmp_path / "outside"
    outside.write_bytes(b"secret")
    outside.chmod(0o600)
    (spool.work / "g000008-20261126T120001-eth0.pcap").symlink_to(outside)
    done = migrate(spool, nobody.pw_uid, nobody.pw_gid)
    assert done, "nothing reported"
    assert (spool.capture_state / "capture-counters.json").read_text().startswith('{"gen')
    assert not (spool.state / "capture.json").exists()
    assert (spool.state / "offload.json").exists()  # offload's own: untouched
    for p in (live, ready, spool.capture_state / "capture-counters.json"):
        st = p.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (
            nobody.pw_uid, nobody.pw_gid, 0o640
        ), p  # fmt: skip
    ost = outside.stat()
    assert (ost.st_uid, stat.S_IMODE(ost.st_mode), outside.read_bytes()) == (0, 0o600, b"secret")
    again = migrate(spool, nobody.pw_uid, nobody.pw_gid)  # idempotent: only what it left
    assert again == ["work/g000008-20261126T120001-eth0.pcap: a symbolic link (never "
                     "followed): left as it is"]  # fmt: skip


def _spool(tmp_path: Path) -> Spool:
    spool = Spool.at(tmp_path / "spool")
    for d in ("work", "ready", "quarantine", "tmp", "state"):
        (spool.root / d).mkdir(parents=True)
    return spool


def _owned(p: Path, uid: int, data: bytes = b"\xd4\xc3\xb2\xa1" + b"\0" * 40) -> Path:
    p.write_bytes(data)
    os.chown(p, uid, GID)
    return p


def _plant(kind: str, p: Path, outside: Path) -> None:
    """One planted shape at p: what rollcap or tcpdump's user can make there."""
    if kind == "symlink":
        p.symlink_to(outside)
    elif kind == "directory":
        p.mkdir()
        os.chown(p, ROLLCAP, GID)
    elif kind == "hardlink":
        os.link(outside, p)
    elif kind == "fifo":
        os.mkfifo(p)
        os.chown(p, ROLLCAP, GID, follow_symlinks=False)
    else:  # a plain file of the wrong owner: rollcap's
        _owned(p, ROLLCAP, b'{"generation": 999999, "seq": 1}')


SHAPES = ["symlink", "directory", "hardlink", "fifo", "wrong owner"]


@needs_root
@pytest.mark.parametrize("kind", SHAPES)
def test_planted_counters_are_never_moved_into_capture(tmp_path: Path, kind: str) -> None:
    """state/ is rollcap's: what is there under the counters' name is not adopted."""
    spool = _spool(tmp_path)
    outside = _owned(tmp_path / "outside", 0, b'{"generation": 5, "seq": 5}')
    outside.chmod(0o600)
    _plant(kind, spool.state / COUNTERS, outside)
    done = migrate(spool, CAPTURE, GID, {OLD_TCPDUMP})
    assert not (spool.capture_state / COUNTERS).exists()
    assert list(spool.capture_state.iterdir()) == []
    assert [ln for ln in done if COUNTERS in ln and "not used" in ln], done
    planted = spool.state / COUNTERS
    assert planted.exists() or planted.is_symlink()  # left as it is, for the operator
    ost = outside.stat()
    assert (ost.st_uid, ost.st_gid, stat.S_IMODE(ost.st_mode)) == (0, GID, 0o600)


@needs_root
def test_root_counters_are_copied_not_moved(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    old = _owned(spool.state / COUNTERS, 0, b'{"generation": 7, "seq": 42}')
    ino = old.stat().st_ino
    held = os.open(old, os.O_RDWR)  # a writer of the old file must not reach the new one
    try:
        assert f"copied state/{COUNTERS} to capture/" in migrate(spool, CAPTURE, GID)
        new = spool.capture_state / COUNTERS
        st = new.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (CAPTURE, GID, 0o640)
        assert st.st_ino != ino and not old.exists()
        os.write(held, b"tampered")
        assert new.read_bytes() == b'{"generation": 7, "seq": 42}'
    finally:
        os.close(held)


@needs_root
@pytest.mark.parametrize("kind", SHAPES)
@pytest.mark.parametrize("area", ["ready", "work", "quarantine"])
def test_planted_spool_entries_are_never_adopted(tmp_path: Path, kind: str, area: str) -> None:
    spool = _spool(tmp_path)
    outside = _owned(tmp_path / "outside", OLD_TCPDUMP)  # tcpdump's own file elsewhere
    outside.chmod(0o600)
    name = "20261126T120000Z-000042_h_eth0.pcap"
    p = spool.root / area / name
    _plant(kind, p, outside)
    before = os.lstat(p)
    done = migrate(spool, CAPTURE, GID, {OLD_TCPDUMP})
    assert done == [f"{area}/{name}: {_why(kind)}: left as it is"], done
    after = os.lstat(p)
    assert (after.st_ino, after.st_uid, after.st_gid) == (before.st_ino, before.st_uid,
                                                          before.st_gid)  # fmt: skip
    ost = outside.stat()
    assert (ost.st_uid, stat.S_IMODE(ost.st_mode)) == (OLD_TCPDUMP, 0o600)


def _why(kind: str) -> str:
    return {
        "symlink": "a symbolic link (never followed)",
        "directory": "a directory, not a regular file",
        "hardlink": "a hard link (2 links): never used through the spool",
        "fifo": "a FIFO, not a regular file",
        "wrong owner": f"owned by uid {ROLLCAP}, not by uid 0 or {OLD_TCPDUMP}",
    }[kind]


@needs_root
def test_old_users_files_are_copied_root_files_reowned(tmp_path: Path) -> None:
    """tcpdump's user may hold its file open for writing: it gets a copy, which
    the old fd never reaches (so does a root file the group may write); root's
    alone (0.1.0's capture, stopped) change in place."""
    spool = _spool(tmp_path)
    theirs = _owned(spool.ready / "20261126T120000Z-000001_h_eth0.pcap", OLD_TCPDUMP,
                    b"\xd4\xc3\xb2\xa1" + b"p" * 3_000_000)  # fmt: skip
    os.utime(theirs, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    roots = _owned(spool.work / "g000001-20261126T120000-eth0.pcap", 0)
    roots.chmod(0o640)
    open_to_group = _owned(spool.quarantine / "x.pcap", 0)  # rollcap may have it open
    open_to_group.chmod(0o660)
    t_ino, r_ino, g_ino = (p.stat().st_ino for p in (theirs, roots, open_to_group))
    held = os.open(theirs, os.O_RDWR)
    try:
        done = migrate(spool, CAPTURE, GID, {OLD_TCPDUMP})
        os.pwrite(held, b"tampered", 0)
    finally:
        os.close(held)
    assert sorted(done) == [f"1 file(s) in {d}/ now rollcap-capture's"
                            for d in ("quarantine", "ready", "work")]  # fmt: skip
    for p, ino, same in ((theirs, t_ino, False), (roots, r_ino, True),
                         (open_to_group, g_ino, False)):  # fmt: skip
        st = p.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (CAPTURE, GID, 0o640), p
        assert (st.st_ino == ino) is same, p
    assert theirs.read_bytes() == b"\xd4\xc3\xb2\xa1" + b"p" * 3_000_000
    assert theirs.stat().st_mtime_ns == 1_000_000_000_000_000_000  # drop-oldest's order
    assert sorted(p.name for p in spool.ready.iterdir()) == [theirs.name]  # no temp left
