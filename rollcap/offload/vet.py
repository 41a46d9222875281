"""Decide whether a file in ready/ may be uploaded, and open it safely.

Never follows a symlink (lstat, then O_NOFOLLOW), never opens a FIFO or a
device (O_NONBLOCK as a second guard), and checks the inode did not change
between lstat and open. Anything refused is quarantined by the caller.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from rollcap.naming import ReadyName
from rollcap.pcapfile import GLOBAL_HEADER_LEN, NotPcapError, PcapHeader, parse_header


class Refused(Exception):
    """The file must not be uploaded; the message is the quarantine reason."""


class Vanished(Exception):
    """The file disappeared before it could be opened (capture dropped it)."""


@dataclass
class Opened:
    fd: int
    name: ReadyName
    header: PcapHeader
    header_bytes: bytes
    size: int
    st: os.stat_result

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def expected_owners(capture_user: str) -> set[int]:
    """root, the capture user (tcpdump -Z) and ourselves."""
    owners = {0, os.geteuid()}
    with contextlib.suppress(KeyError):
        owners.add(pwd.getpwnam(capture_user).pw_uid)
    return owners


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def open_ready(path: Path, owners: set[int]) -> Opened:
    """Open a ready/ file for upload or raise Refused / Vanished."""
    name = ReadyName.parse(path.name)
    if name is None:
        raise Refused("not a rollcap capture name (YYYYmmddTHHMMSSZ-SEQ_host_iface.pcap)")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise Vanished() from None
    if stat.S_ISLNK(st.st_mode):
        raise Refused("a symbolic link (never followed)")
    if not stat.S_ISREG(st.st_mode):
        raise Refused(f"{_kind(st.st_mode)}, not a regular file")
    if st.st_uid not in owners:
        raise Refused(f"owned by uid {st.st_uid}, not by root or the capture user")
    if st.st_size == 0:
        raise Refused("empty (0 bytes)")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise Vanished() from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise Refused("a symbolic link (never followed)") from None
        if e.errno == errno.EACCES:
            raise Refused("not readable by the offload user (check spool.group)") from None
        raise
    try:
        fst = os.fstat(fd)
        if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(fst.st_mode):
            raise Refused("replaced while being opened")
        header_bytes = os.read(fd, GLOBAL_HEADER_LEN)
        try:
            header = parse_header(header_bytes)
        except NotPcapError as e:
            raise Refused(str(e)) from None
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return Opened(fd, name, header, header_bytes, fst.st_size, fst)
