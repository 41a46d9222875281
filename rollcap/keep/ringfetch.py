"""`rollcap fetch --local`: this host's ring as the source of a fetch.

The finished files of the spool's ready/ stand in for bucket objects, so the
fetch's window cut, filter and merge (rollcap.retrieve.fetch) are the bucket
fetch's own. ready/ belongs to the capture user: every file is opened through
the directory's fd with O_NOFOLLOW, must be a regular file with one link and
an expected owner, and at most the size listed is copied (the ring may drop
or a writer may grow a file meanwhile: the copy is the file as listed).
Read-only: nothing in the spool is changed. Root and group rollcap may read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rollcap.keep import pins
from rollcap.offload.vet import expected_owners
from rollcap.retrieve.catalog import HANDOVER, Capture
from rollcap.spool.fs import BadEntry, Dir
from rollcap.spool.readyname import ReadyName
from rollcap.storage.base import SizeMismatch, StorageError
from rollcap.timestamps import NS

# a packet may carry a time a little before its file's name (the switch
# overlap) or after its last write: files this close to the window are read
# too, and the exact cut keeps only the window's packets
_MARGIN_NS = int(HANDOVER.total_seconds()) * NS
_CHUNK = 1 << 20


def ring_captures(ready: Dir, since_ns: int, until_ns: int, iface: str | None = None,
                  hosts: Sequence[str] | None = None) -> list[Capture]:  # fmt: skip
    """The files of ready/ that may hold packets of [since_ns, until_ns), oldest
    first, as captures whose key is the file's name."""
    out = []
    for f in pins.held_files(ready):
        n = ReadyName.parse(f.name)
        if n is None or not f.overlaps(since_ns - _MARGIN_NS, until_ns + _MARGIN_NS):
            continue
        if (iface and n.iface != iface) or (hosts and n.host not in hosts):
            continue
        out.append(Capture(key=f.name, size=f.size, host=n.host, iface=n.iface,
                           start=datetime.fromtimestamp(f.start_ns / NS, UTC),
                           first_ns=None, last_ns=None, packets=None,
                           pcap_bytes=f.size, linktype=None))  # fmt: skip
    return out


class RingSource:
    """download() for rollcap.retrieve.fetch, from ready/ (see the module)."""

    def __init__(self, ready: Dir, capture_user: str) -> None:
        self.ready = ready
        self.owners = expected_owners(capture_user, ready)

    def describe(self) -> str:
        return f"the ring in {self.ready.path}"

    def download(self, key: str, dest: Path, *, size: int | None = None) -> None:
        if ReadyName.parse(key) is None:  # only names ring_captures gave
            raise StorageError(f"{key}: not a capture of ready/", code="BadName", permanent=True)
        try:
            fd = self.ready.open(key, self.owners)
        except FileNotFoundError:
            # the ring dropped it (or the offload shipped it) since the listing
            raise StorageError(f"{key}: gone from {self.ready.path}", code="ENOENT") from None
        except BadEntry as e:
            raise StorageError(f"{self.ready.path}/{key}: {e}; not read", code="BadEntry",
                               permanent=True) from None  # fmt: skip
        try:
            have = os.fstat(fd).st_size
            if size is not None and have < size:
                raise SizeMismatch(f"{self.ready.path}/{key}", size, have)
            left = have if size is None else size
            with open(dest, "wb") as out:
                while left > 0:
                    chunk = os.read(fd, min(_CHUNK, left))
                    if not chunk:
                        raise SizeMismatch(f"{self.ready.path}/{key}", size or have, have - left)
                    out.write(chunk)
                    left -= len(chunk)
        finally:
            os.close(fd)
