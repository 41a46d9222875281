"""S3 checksums of rollcap's files as the server states them: the full-object
SHA-256 of a single PUT, or the COMPOSITE one of a multipart upload (the
SHA-256 of the part digests, "-N")."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from pathlib import Path

from s3transfer.utils import ChunksizeAdjuster

from rollcap.storage.base import MiB, VerificationError


def composite_sha256(path: Path, part_size: int) -> tuple[str, str]:
    """S3's COMPOSITE checksum of a multipart object with parts of part_size
    (base64 of the SHA-256 of the concatenated part digests, "-<parts>") and, from
    the same read, the hex SHA-256 of the whole file."""
    outer = hashlib.sha256()
    whole = hashlib.sha256()
    parts = 0
    with path.open("rb", buffering=0) as f:
        while True:
            h = hashlib.sha256()
            left = part_size
            while left:
                b = f.read(min(left, 4 * MiB))
                if not b:
                    break
                h.update(b)
                whole.update(b)
                left -= len(b)
            if left == part_size:
                break
            outer.update(h.digest())
            parts += 1
            if left:
                break
    return f"{base64.b64encode(outer.digest()).decode()}-{parts}", whole.hexdigest()


def composite_from_parts(digests: Sequence[bytes]) -> str:
    """The COMPOSITE checksum from part digests computed elsewhere."""
    outer = hashlib.sha256(b"".join(digests)).digest()
    return f"{base64.b64encode(outer).decode()}-{len(digests)}"


def expected_checksum(local: Path | None, size: int, sha256: str, part_sha256: Sequence[bytes],
                      stored: str, part_size: int) -> str | None:  # fmt: skip
    """The checksum the server would state for local's bytes in the form of
    ``stored`` (full-object, or COMPOSITE "-N"); None if that form cannot be
    rebuilt (another part size than ours, and no local file to read)."""
    if "-" not in stored:
        return base64.b64encode(bytes.fromhex(sha256)).decode()
    part = ChunksizeAdjuster().adjust_chunksize(part_size, size)
    parts = -(-size // part)
    if stored.rsplit("-", 1)[1] != str(parts):
        return None
    if part == part_size and len(part_sha256) == parts:
        return composite_from_parts(part_sha256)  # hashed as it was written
    if local is None:  # streamed: no file to read the parts from
        return None
    composite, whole = composite_sha256(local, part)
    if whole != sha256:
        raise VerificationError(f"{local}: SHA-256 {whole}, expected {sha256}")
    return composite
