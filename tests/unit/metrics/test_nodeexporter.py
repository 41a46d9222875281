"""rollcap.metrics.nodeexporter and rollcap.posixacl: no rollcap user may write into
node_exporter's textfile directory (root's collectors write there through
symlinks); root links the daemons' own files into it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from rollcap import posixacl
from rollcap.config.load import parse_config
from rollcap.errors import ConfigError
from rollcap.metrics import nodeexporter
from rollcap.posixacl import GROUP, GROUP_OBJ, MASK, OTHER, USER, USER_OBJ, AclEntry

NX = "/var/lib/prometheus/node-exporter"
# the line 0.2 shipped in tmpfiles.d/rollcap.conf, which operators copied to /etc
LINE_0_2 = f"a+ {NX} - - - - user:rollcap-capture:rwx,group:rollcap:rwx\n"


def _tmpfiles(tmp_path: Path, text: str, name: str = "rollcap.conf") -> tuple[str, ...]:
    d = tmp_path / "tmpfiles.d"
    d.mkdir(exist_ok=True)
    (d / name).write_text(text)
    return (str(d),)


def test_the_0_2_tmpfiles_line_is_found_with_file_and_line(tmp_path: Path) -> None:
    dirs = _tmpfiles(tmp_path, "# spool\nd /var/spool/rollcap 0751 root rollcap -\n" + LINE_0_2)
    found = nodeexporter.tmpfiles_grants(parse_config(""), NX, dirs)
    conf = f"{dirs[0]}/rollcap.conf:3"
    assert found == [f"{conf} gives user rollcap-capture", f"{conf} gives group rollcap"]


@pytest.mark.parametrize(
    "line",
    ["A+ /var/lib/prometheus - - - - u:rollcap:rwX\n",  # recursive, on a parent
     "a %S/prometheus/node-exporter - - - - d:g:rollcap-capture:rwx\n",  # specifier, default
     "a+ /var/lib/prometheus/node-* - - - - g:rollcap:w\n"],  # a glob
)  # fmt: skip
def test_other_spellings_of_a_grant_are_found(tmp_path: Path, line: str) -> None:
    dirs = _tmpfiles(tmp_path, line, "site.conf")
    assert len(nodeexporter.tmpfiles_grants(parse_config(""), NX, dirs)) == 1


@pytest.mark.parametrize(
    "line",
    [f"a+ {NX} - - - - user:rollcap-capture:r-x,group:rollcap:rx\n",  # read only
     f"a+ {NX} - - - - user:prometheus:rwx\n",  # not a rollcap user
     "a+ /var/spool/other - - - - user:rollcap-capture:rwx\n",  # elsewhere
     "a+ /var/lib/prometheus - - - - user:rollcap-capture:rwx\n",  # not recursive
     f"d {NX} 0755 root root -\n", f"# {LINE_0_2}"],
)  # fmt: skip
def test_lines_that_grant_no_rollcap_write_are_ignored(tmp_path: Path, line: str) -> None:
    dirs = _tmpfiles(tmp_path, line, "site.conf")
    assert nodeexporter.tmpfiles_grants(parse_config(""), NX, dirs) == []


def test_an_earlier_directory_hides_a_file_of_the_same_name(tmp_path: Path) -> None:
    etc, usr = tmp_path / "etc", tmp_path / "usr"
    etc.mkdir(), usr.mkdir()
    (etc / "rollcap.conf").write_text("d /var/spool/rollcap 0751 root rollcap -\n")
    (usr / "rollcap.conf").write_text(LINE_0_2)
    assert nodeexporter.tmpfiles_grants(parse_config(""), NX, (str(etc), str(usr))) == []


def test_a_grant_stops_the_start_with_one_line_each(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-node-exporter")  # no live ACL to read
    dirs = _tmpfiles(tmp_path, LINE_0_2.replace(NX, missing))
    with pytest.raises(ConfigError) as e:
        nodeexporter.check_no_grants(parse_config(""), missing, dirs)
    assert len(e.value.problems) == 2
    first = e.value.problems[0]
    assert first.startswith(f"{dirs[0]}/rollcap.conf:1 gives user rollcap-capture write access")
    assert "delete that line" in first and "\n" not in first
    (Path(dirs[0]) / "rollcap.conf").write_text("d /var/spool/rollcap 0751 root rollcap -\n")
    nodeexporter.check_no_grants(parse_config(""), missing, dirs)


# -- POSIX ACLs -------------------------------------------------------------------

GRANTED = [AclEntry(USER_OBJ, 7), AclEntry(USER, 7, 990), AclEntry(GROUP_OBJ, 5),
           AclEntry(GROUP, 7, 991), AclEntry(GROUP, 5, 992), AclEntry(MASK, 7),
           AclEntry(OTHER, 5)]  # fmt: skip


def test_acl_round_trip_and_writers() -> None:
    assert posixacl.parse(posixacl.serialize(GRANTED)) == GRANTED
    assert posixacl.writers(GRANTED, {990}, {991, 992}) == [GRANTED[1], GRANTED[3]]
    with pytest.raises(ValueError):
        posixacl.parse(b"\x01\x00\x00\x00")


def test_removing_entries_recomputes_the_mask_or_drops_it() -> None:
    rest = posixacl.without(GRANTED, [GRANTED[1], GRANTED[3]])
    assert rest == [AclEntry(USER_OBJ, 7), AclEntry(GROUP_OBJ, 5), AclEntry(GROUP, 5, 992),
                    AclEntry(MASK, 5), AclEntry(OTHER, 5)]  # fmt: skip
    assert posixacl.without(GRANTED, [GRANTED[1], GRANTED[3], GRANTED[4]]) == [
        AclEntry(USER_OBJ, 7), AclEntry(GROUP_OBJ, 5), AclEntry(OTHER, 5)]  # fmt: skip


@pytest.mark.skipif(os.geteuid() != 0, reason="setting another uid's ACL entry needs root")
def test_remove_writers_leaves_the_directory_as_the_mode_says(tmp_path: Path) -> None:
    d = tmp_path / "node-exporter"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    try:
        os.setxattr(d, posixacl.XATTRS[0], posixacl.serialize(GRANTED))
    except OSError as e:
        pytest.skip(f"no POSIX ACLs on {tmp_path}: {e}")
    assert stat.S_IMODE(d.stat().st_mode) == 0o775  # the mask shows as group bits
    removed = posixacl.remove_writers(str(d), {990}, {991})
    assert removed == ["user:990", "group:991"]
    left = [AclEntry(USER_OBJ, 7), AclEntry(GROUP_OBJ, 5), AclEntry(GROUP, 5, 992),
            AclEntry(MASK, 5), AclEntry(OTHER, 5)]  # fmt: skip
    assert posixacl.read(str(d)) == left
    assert stat.S_IMODE(d.stat().st_mode) == 0o755
    assert posixacl.remove_writers(str(d), {990}, {991}) == []


# -- entries planted while 0.2's ACL let the daemon users write -----------------------

DAEMON_UID, DAEMON_GID, OTHER_ID = 4242, 4343, 4444


@pytest.mark.skipif(os.geteuid() != 0, reason="planting as another uid needs root")
def test_every_entry_a_rollcap_user_or_group_owns_is_removed_and_nothing_else(
    tmp_path: Path,
) -> None:
    nx = tmp_path / "node-exporter"
    nx.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")

    def plant(name: str, uid: int, gid: int) -> Path:
        p = nx / name
        os.lchown(p, uid, gid)
        return p

    (nx / "smartmon.prom").symlink_to(victim)
    plant("smartmon.prom", DAEMON_UID, DAEMON_UID)  # a symlink for root's collector
    (nx / "apt.prom").symlink_to("/nonexistent/dangling")
    plant("apt.prom", OTHER_ID, DAEMON_GID)  # by group alone
    os.mkfifo(nx / "fifo.prom")
    plant("fifo.prom", DAEMON_UID, DAEMON_GID)
    (nx / "rollcap-capture.prom").write_text("rollcap_capture_up 1\n")  # 0.2's file
    plant("rollcap-capture.prom", DAEMON_UID, DAEMON_GID)
    (nx / "d.prom").mkdir()
    (nx / "d.prom" / "inner").symlink_to(victim)
    plant("d.prom/inner", DAEMON_UID, DAEMON_GID)
    plant("d.prom", DAEMON_UID, DAEMON_GID)
    (nx / "line\nbreak.prom").write_text("")
    plant("line\nbreak.prom", DAEMON_UID, DAEMON_GID)
    # kept: root's (whatever its group), another user's
    (nx / "node.prom").write_text("root 1\n")
    plant("node.prom", 0, DAEMON_GID)
    (nx / "rollcap-offload.prom").symlink_to(victim)  # root's own link
    (nx / "other.prom").write_text("other 1\n")
    plant("other.prom", OTHER_ID, OTHER_ID)

    removed = nodeexporter.remove_owned(str(nx), {DAEMON_UID}, {DAEMON_GID})
    assert removed == [
        f"{nx}/apt.prom (symlink -> /nonexistent/dangling, uid {OTHER_ID} gid {DAEMON_GID})",
        f"{nx}/d.prom (directory, uid {DAEMON_UID} gid {DAEMON_GID})",
        f"{nx}/fifo.prom (FIFO, uid {DAEMON_UID} gid {DAEMON_GID})",
        f"{nx}/'line\\nbreak.prom' (file, uid {DAEMON_UID} gid {DAEMON_GID})",
        f"{nx}/rollcap-capture.prom (file, uid {DAEMON_UID} gid {DAEMON_GID})",
        f"{nx}/smartmon.prom (symlink -> {victim}, uid {DAEMON_UID} gid {DAEMON_UID})",
    ]
    assert sorted(os.listdir(nx)) == ["node.prom", "other.prom", "rollcap-offload.prom"]
    assert victim.read_text() == "root's file\n"
    assert nodeexporter.remove_owned(str(nx), {DAEMON_UID}, {DAEMON_GID}) == []
    assert nodeexporter.remove_owned(str(tmp_path / "absent"), {DAEMON_UID}, set()) == []
