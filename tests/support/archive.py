"""Stored captures for retrieval tests: real packets, chosen timestamps, real metadata.

Packets come from tests/data/pcaps (read here with a few lines of struct,
independently of rollcap's reader), get the timestamps a test needs, and are
written, compressed and described exactly like the offload stores them.
``MemoryStorage`` is a fake destination for unit tests of pure logic only;
integration tests use the real S3 / file:// implementations.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rollcap.storage.base import META, ObjectInfo, SizeMismatch, Storage, copy_exact
from rollcap.timestamps import to_text

NS = 1_000_000_000


def read_frames(path: Path) -> list[tuple[bytes, int]]:
    """(frame bytes, original length) of every record of a little-endian µs pcap."""
    data = path.read_bytes()
    magic = data[:4]
    assert magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"), f"{path}: not LE pcap"
    off = 24
    out = []
    while off + 16 <= len(data):
        _s, _f, incl, orig = struct.unpack_from("<IIII", data, off)
        out.append((data[off + 16 : off + 16 + incl], orig))
        off += 16 + incl
    return out


def write_pcap(path: Path, frames: list[tuple[int, bytes, int]], *, linktype: int = 1,
               nanos: bool = False) -> Path:  # fmt: skip
    """Classic pcap of (ts_ns, frame, orig_len) records, in the order given."""
    div = 1 if nanos else 1000
    per_s = NS // div
    with open(path, "wb") as f:
        magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
        f.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, 262144, linktype))
        for ts_ns, frame, orig in frames:
            sec, frac = divmod(ts_ns // div, per_s)
            f.write(struct.pack("<IIII", sec, frac, len(frame), orig))
            f.write(frame)
    return path


def read_timestamps(path: Path) -> list[int]:
    """Timestamps (ns) of every record of a classic LE pcap (µs or ns)."""
    data = path.read_bytes()
    nanos = data[:4] == b"\x4d\x3c\xb2\xa1"
    off = 24
    out = []
    while off + 16 <= len(data):
        s, frac, incl, _o = struct.unpack_from("<IIII", data, off)
        out.append(s * NS + (frac if nanos else frac * 1000))
        off += 16 + incl
    return out


def compress(src: Path, kind: str) -> Path:
    """zstd / gzip / none, named like the offload names objects."""
    if kind == "none":
        return src
    if kind == "gzip":
        dest = src.with_name(src.name + ".gz")
        dest.write_bytes(gzip.compress(src.read_bytes()))
        return dest
    import zstandard

    dest = src.with_name(src.name + ".zst")
    dest.write_bytes(zstandard.ZstdCompressor(level=3).compress(src.read_bytes()))
    return dest


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Stored:
    key: str
    timestamps: list[int]  # ns, of the packets inside
    host: str
    iface: str


def make_object(workdir: Path, *, prefix: str, host: str, iface: str, start: datetime, seq: int,
                stamps: list[int], frames: list[tuple[bytes, int]], compression: str = "zstd",
                linktype: int = 1, with_metadata: bool = True, nanos: bool = False
                ) -> tuple[Path, str, dict[str, str]]:  # fmt: skip
    """A stored file as the offload would upload it: (local file, key, metadata)."""
    recs = [(ts, *frames[i % len(frames)]) for i, ts in enumerate(stamps)]
    stem = f"{host}-{iface}-{start:%Y%m%dT%H%M%SZ}-{seq:06d}"
    pcap = write_pcap(workdir / f"{stem}.pcap", recs, linktype=linktype, nanos=nanos)
    if not nanos:  # the metadata of a µs file says µs (what it holds)
        stamps = [t // 1000 * 1000 for t in stamps]
    stored = compress(pcap, compression)
    ext = {"zstd": ".pcap.zst", "gzip": ".pcap.gz", "none": ".pcap"}[compression]
    key = f"{prefix}/{host}/{start:%Y}/{start:%m}/{start:%d}/{stem}{ext}".lstrip("/")
    meta: dict[str, str] = {}
    if with_metadata:
        meta = {
            META["first_ts"]: to_text(stamps[0]),
            META["last_ts"]: to_text(stamps[-1]),
            META["packets"]: str(len(stamps)),
            META["pcap_bytes"]: str(pcap.stat().st_size),
            META["pcap_crc32"]: f"{zlib.crc32(pcap.read_bytes()):08x}",
            META["sha256"]: sha256(stored),
            META["linktype"]: str(linktype),
            META["host"]: host,
            META["iface"]: iface,
            META["filter"]: "",
            META["compression"]: compression,
            META["version"]: "0.1.0",
        }
    return stored, key, meta


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)  # type: ignore[misc]


def ns(dt: datetime) -> int:
    return int(dt.timestamp()) * NS + dt.microsecond * 1000


class MemoryStorage(Storage):
    """Fake destination for unit tests: dict of key -> (bytes, metadata); counts calls."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.listed: list[str] = []  # prefixes listed in full
        self.delimited: list[str] = []  # prefixes listed with Delimiter='/'
        self.heads = 0

    def describe(self) -> str:
        return "memory://test"

    def put_file(self, local: Path, key: str, *, size: int, sha256: str,
                 metadata: dict[str, str]) -> None:  # fmt: skip
        self.objects[key] = (local.read_bytes(), dict(metadata))

    def head(self, key: str) -> ObjectInfo | None:
        self.heads += 1
        if key not in self.objects:
            return None
        data, meta = self.objects[key]
        return ObjectInfo(key, len(data), dict(meta))

    def list(self, prefix: str, with_metadata: bool = False) -> Iterator[ObjectInfo]:
        self.listed.append(prefix)
        for key in sorted(self.objects):
            if key.startswith(prefix):
                data, meta = self.objects[key]
                yield ObjectInfo(key, len(data), dict(meta) if with_metadata else {})

    def list_prefixes(self, prefix: str) -> Iterator[str]:
        self.delimited.append(prefix)
        subs = {prefix + k[len(prefix) :].split("/", 1)[0] + "/" for k in self.objects
                if k.startswith(prefix) and "/" in k[len(prefix) :]}  # fmt: skip
        yield from sorted(subs)

    def download(self, key: str, dest: Path, *, size: int | None = None) -> None:
        data = self.objects[key][0]
        if size is None:
            dest.write_bytes(data)
            return
        if len(data) != size:
            raise SizeMismatch(f"GET memory://{key}", size, len(data))
        with open(dest, "wb") as f:
            copy_exact(io.BytesIO(data), f, size, f"GET memory://{key}")

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)
