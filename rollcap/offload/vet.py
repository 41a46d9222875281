"""Decide whether a file in ready/ may be uploaded, and open it safely.

Through ready/'s directory fd (rollcap.spool.fs): never follows a symlink, never
opens a FIFO or a device for real (O_NONBLOCK), and requires of the open fd a
regular file with one link and the capture user as its owner. Anything refused
is quarantined by the caller.
"""

from __future__ import annotations

import contextlib
import os
import pwd
from dataclasses import dataclass

from rollcap.pcapfile import GLOBAL_HEADER_LEN, NotPcapError, PcapHeader, parse_header
from rollcap.spool.fs import BadEntry, Dir
from rollcap.spool.readyname import ReadyName


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


def expected_owners(capture_user: str, ready: Dir | None = None) -> set[int]:
    """Who may own a file in ready/: ready/'s own owner (the packaged capture user,
    rollcap-capture), root and capture.user (a capture started as root, by hand)."""
    owners = {0}
    with contextlib.suppress(KeyError):
        owners.add(pwd.getpwnam(capture_user).pw_uid)
    if ready is not None:
        owners.add(ready.owner())
    return owners


def open_ready(ready: Dir, name: str, owners: set[int]) -> Opened:
    """Open ready/name for upload or raise Refused / Vanished."""
    parsed = ReadyName.parse(name)
    if parsed is None:
        raise Refused("not a rollcap capture name (YYYYmmddTHHMMSSZ-SEQ_host_iface.pcap)")
    try:
        fd = ready.open(name, owners)
    except FileNotFoundError:
        raise Vanished() from None
    except BadEntry as e:
        raise Refused(str(e)) from None
    try:
        fst = os.fstat(fd)
        if fst.st_size == 0:
            raise Refused("empty (0 bytes)")
        header_bytes = os.read(fd, GLOBAL_HEADER_LEN)
        try:
            header = parse_header(header_bytes)
        except NotPcapError as e:
            raise Refused(str(e)) from None
    except BaseException:
        os.close(fd)
        raise
    return Opened(fd, parsed, header, header_bytes, fst.st_size, fst)
