"""POSIX ACLs of a directory, read and pruned through its xattrs (no setfacl needed).

The kernel's format of system.posix_acl_access / _default: a little-endian u32
version (2), then entries of (u16 tag, u16 perm, u32 id); the id counts for
named users and groups only. Setting an ACL that a mode can express makes the
kernel drop the xattr and set the mode instead (posix_acl_update_mode).
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass

VERSION = 2
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
WRITE = 0x02
XATTRS = ("system.posix_acl_access", "system.posix_acl_default")
_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")


@dataclass(frozen=True)
class AclEntry:
    tag: int
    perm: int
    id: int = 0xFFFFFFFF  # ACL_UNDEFINED_ID: owner, owning group, mask, other


def parse(data: bytes) -> list[AclEntry]:
    """ValueError when data is not a version-2 ACL."""
    if len(data) < _HEADER.size or (len(data) - _HEADER.size) % _ENTRY.size:
        raise ValueError(f"not a POSIX ACL ({len(data)} bytes)")
    if _HEADER.unpack_from(data)[0] != VERSION:
        raise ValueError(f"POSIX ACL version {_HEADER.unpack_from(data)[0]}, not {VERSION}")
    return [AclEntry(*e) for e in _ENTRY.iter_unpack(data[_HEADER.size :])]


def serialize(entries: list[AclEntry]) -> bytes:
    return _HEADER.pack(VERSION) + b"".join(_ENTRY.pack(e.tag, e.perm, e.id) for e in entries)


def read(path: str, xattr: str = XATTRS[0]) -> list[AclEntry]:
    """The entries of one ACL; [] when the file has none (or its filesystem no ACLs)."""
    try:
        return parse(os.getxattr(path, xattr, follow_symlinks=False))
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.EOPNOTSUPP):
            return []
        raise


def writers(entries: list[AclEntry], uids: set[int], gids: set[int]) -> list[AclEntry]:
    """The named entries that give one of uids or gids write permission."""
    return [
        e
        for e in entries
        if e.perm & WRITE
        and ((e.tag == USER and e.id in uids) or (e.tag == GROUP and e.id in gids))
    ]


def without(entries: list[AclEntry], drop: list[AclEntry]) -> list[AclEntry]:
    """entries minus drop, with the mask recomputed as setfacl -x does (the union of
    the group class), or gone when no named entry is left."""
    kept = [e for e in entries if e not in drop and e.tag != MASK]
    named = [e for e in kept if e.tag in (USER, GROUP)]
    if named:
        union = 0
        for e in kept:
            if e.tag in (USER, GROUP, GROUP_OBJ):
                union |= e.perm
        kept.append(AclEntry(MASK, union))
    return sorted(kept, key=lambda e: (e.tag, e.id))


def remove_writers(path: str, uids: set[int], gids: set[int]) -> list[str]:
    """Remove the entries giving uids/gids write access from both ACLs of path
    (a directory; never followed if a link); what was removed, as setfacl shows it."""
    removed: list[str] = []
    for xattr in XATTRS:
        entries = read(path, xattr)
        drop = writers(entries, uids, gids)
        if not drop:
            continue
        rest = without(entries, drop)
        if xattr.endswith("default") and not [e for e in rest if e.tag in (USER, GROUP)]:
            os.removexattr(path, xattr, follow_symlinks=False)  # the umask rules again
        else:
            os.setxattr(path, xattr, serialize(rest), follow_symlinks=False)
        prefix = "default:" if xattr.endswith("default") else ""
        removed += [f"{prefix}{'user' if e.tag == USER else 'group'}:{e.id}" for e in drop]
    return removed
