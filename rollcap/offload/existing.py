"""The key is taken (a 412 to our conditional write, or found by HEAD): is it
this file, stored before a crash, or something else that must never be
overwritten?

The destination's own checksum of the stored bytes decides where it states
one (S3 HEAD with ChecksumMode=ENABLED; the data itself for file://), not
rollcap's metadata alone: metadata with our SHA-256 on other bytes is a
damaged upload, not a stored file.
"""

from __future__ import annotations

from dataclasses import dataclass

from rollcap.offload.compress import Compressed
from rollcap.storage.base import META, ObjectInfo


@dataclass(frozen=True)
class Verdict:
    stored: bool  # the object holds this capture: the local file may go
    reason: str = ""  # why not (a quarantine reason naming the key)


def same_pcap(meta: dict[str, str], c: Compressed) -> bool:
    """The stored object holds this pcap, compressed differently (another level
    or codec): same CRC-32, size and packet count of the uncompressed pcap."""
    got = (meta.get(META["pcap_crc32"]), meta.get(META["pcap_bytes"]), meta.get(META["packets"]))
    return got == (c.pcap_crc32, str(c.pcap_bytes), str(c.packets))


def judge(existing: ObjectInfo, c: Compressed, *, same_bytes: bool | None, where: str) -> Verdict:
    """``same_bytes``: Storage.same_bytes() (None: the destination states no
    checksum we can compare, so size and metadata decide, as before)."""
    key, size, sha256 = existing.key, c.size, c.sha256
    if same_bytes:
        return Verdict(True)
    ours = existing.sha256 == sha256
    if ours and (same_bytes is False or existing.size != size):
        what = (
            f"{existing.size} bytes instead of {size}"
            if existing.size != size
            else f"the server's checksum {existing.checksum} of other bytes"
        )
        return Verdict(False, (
            f"{key} already exists at {where} with this file's sha256 but {what} (a damaged "
            "upload); never overwritten"
        ))  # fmt: skip
    if ours and existing.size == size:
        return Verdict(True)  # no server checksum: the metadata is all there is
    if same_pcap(existing.metadata, c):
        return Verdict(True)  # the same capture, compressed differently
    return Verdict(False, (
        f"{key} already exists at {where} with different content (sha256 "
        f"{existing.sha256 or 'unknown'}); never overwritten"
    ))  # fmt: skip
