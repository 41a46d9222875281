"""rollcap and node_exporter's textfile directory: read-only for every rollcap user.

Root's collectors write into /var/lib/prometheus/node-exporter (Debian's
prometheus-node-exporter-collectors: `apt_info.py | sponge .../apt.prom`, and
sponge writes through a symlink it finds there). A rollcap user that could
plant entries there could make root overwrite any file. So each daemon writes
into a directory of its own (textfile_path) and root publishes a copy in
node_exporter's directory (rollcap.metrics.publish).

0.2 gave the daemon users an ACL there (an `a+` line in tmpfiles.d/rollcap.conf,
which operators were told to copy). grants() finds such grants, in the live
ACL and in every tmpfiles.d file, so that the daemons refuse to start while
one is there; remove_grants() (root) removes the live ones, and remove_planted()
(root) every entry a rollcap user or group owns there (what an exploited daemon
could have planted while 0.2's ACL let it: e.g. `smartmon.prom -> /etc/shadow`).
"""

from __future__ import annotations

import contextlib
import fnmatch
import grp
import os
import pwd
import shlex
import shutil
import stat
from pathlib import Path, PurePosixPath

from rollcap import posixacl
from rollcap.config.schema import NODE_EXPORTER_DIRECTORY, MetricsConfig, RollcapConfig
from rollcap.errors import ConfigError

DAEMONS = ("capture", "offload")
# The package's users and groups (debian/rollcap.sysusers).
PACKAGE_NAMES = ("rollcap-capture", "rollcap")
# systemd-tmpfiles reads these; a file in an earlier one hides one of the same name later.
TMPFILES_DIRS = ("/etc/tmpfiles.d", "/run/tmpfiles.d", "/usr/local/lib/tmpfiles.d",
                 "/usr/lib/tmpfiles.d")  # fmt: skip
# the specifiers a path in a system tmpfiles.d file can start with
_SPECIFIERS = {"%S": "/var/lib", "%t": "/run", "%C": "/var/cache", "%L": "/var/log", "%%": "%"}


def textfile_name(daemon: str) -> str:
    return f"rollcap-{daemon}.prom"


def textfile_path(metrics: MetricsConfig, daemon: str) -> Path | None:
    """Where `daemon` writes its textfile; None when textfiles are off."""
    d = metrics.textfile_directory
    return Path(d) / daemon / textfile_name(daemon) if d else None


def names(cfg: RollcapConfig) -> set[str]:
    """The user and group names rollcap's daemons run as."""
    return {*PACKAGE_NAMES, cfg.spool.group}


def ids(cfg: RollcapConfig) -> tuple[set[int], set[int]]:
    """(uids, gids) of names() that exist on this machine."""
    uids, gids = set(), set()
    for n in names(cfg):
        with contextlib.suppress(KeyError):
            uids.add(pwd.getpwnam(n).pw_uid)
        with contextlib.suppress(KeyError):
            gids.add(grp.getgrnam(n).gr_gid)
    return uids, gids


def _acl_grantees(spec: str, who: set[str], uids: set[int], gids: set[int]) -> list[str]:
    """The entries of a tmpfiles ACL argument ("u:NAME:rwx,g:NAME:rx,...") that give
    one of `who` (or uids/gids) write permission."""
    found = []
    for entry in spec.split(","):
        parts = entry.strip().split(":")
        if parts and parts[0] in ("d", "default"):
            parts = parts[1:]
        if len(parts) != 3 or "w" not in parts[2]:
            continue
        kind, name = parts[0], parts[1]
        numbers = uids if kind in ("u", "user") else gids if kind in ("g", "group") else None
        if numbers is None:
            continue
        if name in who or (name.isdigit() and int(name) in numbers):
            found.append(f"{'user' if kind.startswith('u') else 'group'} {name}")
    return found


def _covers(pattern: str, kind: str, directory: str) -> bool:
    for spec, value in _SPECIFIERS.items():
        pattern = pattern.replace(spec, value)
    target = PurePosixPath(directory)
    if fnmatch.fnmatchcase(str(target), pattern):
        return True
    # A/A+ apply recursively: a line on a parent covers it too
    return kind[0] == "A" and any(fnmatch.fnmatchcase(str(p), pattern) for p in target.parents)


def tmpfiles_grants(cfg: RollcapConfig, directory: str = NODE_EXPORTER_DIRECTORY,
                    dirs: tuple[str, ...] = TMPFILES_DIRS) -> list[str]:  # fmt: skip
    """One line per tmpfiles.d line that gives a rollcap user or group write access
    to directory through an ACL (types a, a+, A, A+), as FILE:LINE: WHO."""
    who = names(cfg)
    uids, gids = ids(cfg)
    seen: set[str] = set()
    found = []
    for d in dirs:
        try:
            entries = sorted(os.listdir(d))
        except OSError:
            continue
        for name in entries:
            if not name.endswith(".conf") or name in seen:
                continue
            seen.add(name)
            path = os.path.join(d, name)
            try:
                text = Path(path).read_text(errors="replace")
            except OSError:
                continue  # /dev/null masks a file: a symlink that reads as ""
            for n, line in enumerate(text.splitlines(), 1):
                try:
                    fields = shlex.split(line, comments=True)
                except ValueError:
                    fields = line.split()
                if len(fields) < 7 or fields[0][0] not in "aA":
                    continue
                if not _covers(fields[1], fields[0], directory):
                    continue
                for grantee in _acl_grantees(fields[6], who, uids, gids):
                    found.append(f"{path}:{n} gives {grantee}")
    return found


def acl_grants(cfg: RollcapConfig, directory: str = NODE_EXPORTER_DIRECTORY) -> list[str]:
    """The live ACL entries of directory that let a rollcap user or group write there."""
    uids, gids = ids(cfg)
    found = []
    for xattr in posixacl.XATTRS:
        try:
            entries = posixacl.read(directory, xattr)
        except (OSError, ValueError):
            continue  # missing directory (no node_exporter): nothing granted
        for e in posixacl.writers(entries, uids, gids):
            kind = "user" if e.tag == posixacl.USER else "group"
            found.append(f"{kind} {e.id}" + (" (default ACL)" if xattr.endswith("default") else ""))
    return found


def check_no_grants(cfg: RollcapConfig, directory: str = NODE_EXPORTER_DIRECTORY,
                    dirs: tuple[str, ...] = TMPFILES_DIRS) -> None:  # fmt: skip
    """ConfigError, one line per grant, while a rollcap user may write into
    node_exporter's directory or a tmpfiles.d line would let it again."""
    why = f"node_exporter's {directory}, where root's collectors write (docs/metrics.md)"
    problems = [
        f"{where} write access to {why}: delete that line, then restart rollcap"
        for where in tmpfiles_grants(cfg, directory, dirs)
    ]
    problems += [
        f"the ACL of {directory} gives {who} write access to {why}: run `setfacl -x` for "
        "it, or restart rollcap with systemctl (its ExecStartPre= removes it)"
        for who in acl_grants(cfg, directory)
    ]
    if problems:
        raise ConfigError(problems)


def remove_grants(cfg: RollcapConfig, directory: str = NODE_EXPORTER_DIRECTORY) -> list[str]:
    """(root) Remove the live ACL entries giving rollcap write access; what went."""
    uids, gids = ids(cfg)
    try:
        return posixacl.remove_writers(directory, uids, gids)
    except FileNotFoundError:
        return []


def _shown(name: str) -> str:
    return name if name.isprintable() else repr(name)


def remove_owned(directory: str, uids: set[int], gids: set[int]) -> list[str]:
    """(root) Remove every entry of directory whose owner (lstat: a symlink itself)
    is one of uids, or whose group is one of gids unless root owns it; a directory
    with its contents. One line per entry removed. All through a directory fd:
    nothing is followed."""
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    removed = []
    try:
        for name in sorted(os.listdir(dfd)):
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if st.st_uid == 0 or not (st.st_uid in uids or st.st_gid in gids):
                continue
            what = (
                f"symlink -> {_shown(os.readlink(name, dir_fd=dfd))}"
                if stat.S_ISLNK(st.st_mode)
                else _KINDS.get(stat.S_IFMT(st.st_mode), "entry")
            )
            try:
                if stat.S_ISDIR(st.st_mode):
                    shutil.rmtree(name, dir_fd=dfd)  # fd-based: follows no symlink
                else:
                    os.unlink(name, dir_fd=dfd)
            except FileNotFoundError:
                continue
            removed.append(f"{directory}/{_shown(name)} ({what}, uid {st.st_uid} gid {st.st_gid})")
    finally:
        os.close(dfd)
    return removed


_KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "directory", stat.S_IFIFO: "FIFO",
          stat.S_IFSOCK: "socket", stat.S_IFCHR: "device", stat.S_IFBLK: "device"}  # fmt: skip


def remove_planted(cfg: RollcapConfig, directory: str = NODE_EXPORTER_DIRECTORY) -> list[str]:
    """(root) remove_owned() for the rollcap users and groups: after remove_grants(),
    none of them may write there, so whatever they own there was planted (or is
    0.2's textfile); root's collectors would write through such a symlink."""
    uids, gids = ids(cfg)
    return remove_owned(directory, uids, gids)
