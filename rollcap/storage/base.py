"""The storage interface: one destination, S3 or a local directory.

Like barman's CloudInterface: the offload and retrieval code talk only to this,
never to boto3 or the filesystem directly. Implementations: storage.s3.storage.S3Storage
and storage.local.LocalStorage, chosen by ``storage.open_storage(cfg.offload)``.

Keys are the rendered ``offload.key_template`` (rollcap.keys.render_key) with
``Storage.key_prefix`` as {prefix}: the S3 prefix, or "" for a local archive
(keys are then paths relative to the archive directory).

Object metadata (S3 user metadata, or a JSON sidecar for file://) uses the
keys in ``META``; values are ASCII strings (percent-encode anything else).
"""

from __future__ import annotations

import builtins
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TypeVar

if TYPE_CHECKING:
    from rollcap.config.schema import OffloadConfig

# Metadata written with every object; enough for `rollcap list` to answer
# "which objects cover 12:00-12:05 on host X" without downloading anything.
META = {
    # first/last packet, epoch seconds as exact decimal text: 6 fraction digits
    # (µs, as rollcap 0.2 wrote), 9 when the stamp has ns (rollcap.timestamps)
    "first_ts": "rollcap-first-ts",
    "last_ts": "rollcap-last-ts",
    "packets": "rollcap-packets",
    "pcap_bytes": "rollcap-pcap-bytes",  # uncompressed size
    # CRC-32 (zlib, 8 hex digits) of the uncompressed pcap: a cheap cross-check
    # (the stored bytes have a SHA-256; zstd frames carry their own checksum)
    "pcap_crc32": "rollcap-pcap-crc32",
    "sha256": "rollcap-sha256",  # of the stored (compressed) bytes; verified by HEAD
    "linktype": "rollcap-linktype",
    "host": "rollcap-host",
    "iface": "rollcap-iface",
    "filter": "rollcap-filter",  # percent-encoded
    "compression": "rollcap-compression",
    "version": "rollcap-version",
    # a keep's id and reason (percent-encoded): the file was shipped for it
    "keep_id": "rollcap-keep-id",
    "keep_reason": "rollcap-keep-reason",
}


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    metadata: dict[str, str] = field(default_factory=dict)
    #: the destination's own checksum of the stored bytes, as it states it
    #: (S3: base64 SHA-256, or COMPOSITE "...-N"; file://: hex SHA-256); only
    #: from head(key, checksum=True), "" when the destination states none
    checksum: str = ""
    #: S3: the HEAD fields that show the storage settings (storage.s3.settings)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        """Our SHA-256 of the stored bytes, from the metadata ("" if absent)."""
        return self.metadata.get(META["sha256"], "")


class StorageError(Exception):
    """A failure talking to the destination.

    ``code`` is the server's error code (e.g. "AccessDenied") or a short name of
    the local failure; ``permanent`` ones need an operator (credentials, bucket,
    permissions) and are retried only at the backoff cap.
    """

    def __init__(self, message: str, *, code: str = "", permanent: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.permanent = permanent


class ObjectExistsError(StorageError):
    """put_file refused: the key already holds an object (never overwritten).
    ``produced``: put_stream's producer's result, if it ran to its end first
    (None: the key was found taken before a byte was produced)."""

    def __init__(self, key: str, produced: Any = None) -> None:
        super().__init__(f"{key} already exists", code="ObjectExists", permanent=True)
        self.key = key
        self.produced = produced


class Produced(Protocol):
    """What a put_stream producer returns: the size and hex SHA-256 of the
    bytes it wrote."""

    @property
    def size(self) -> int: ...
    @property
    def sha256(self) -> str: ...


P = TypeVar("P", bound=Produced)
#: put_stream's producer: writes the object's bytes, in order, into its argument
Producer = Callable[[Callable[[bytes], None] | None], P]


class VerificationError(StorageError):
    """The stored object does not match what was sent (size or checksum)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="VerificationFailed")


class SizeMismatch(StorageError):
    """download(size=N) refused the object: it does not hold the N bytes its
    listing or manifest entry records. Nothing past N bytes was written."""

    def __init__(self, what: str, recorded: int, stated: int | None) -> None:
        holds = "more" if stated is None else f"{stated:,}"
        super().__init__(
            f"{what}: the object holds {holds} bytes, its entry records {recorded:,}; refused",
            code="SizeMismatch",
        )  # fmt: skip
        self.recorded = recorded
        self.stated = stated


class CheckStatus(StrEnum):
    """A check's verdict; the value is what `rollcap check-destination` prints."""

    OK = "ok"
    FAIL = "FAIL"
    WARN = "warn"
    SKIP = "skip"


@dataclass(frozen=True)
class CheckResult:
    """One line of `rollcap check-destination`: what a backend's check found."""

    status: CheckStatus
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status.value:<5} {self.name:<22} {self.detail}"


MiB = 1024 * 1024
_COPY_CHUNK = MiB


def copy_exact(src: BinaryIO, dst: BinaryIO, size: int, what: str) -> None:
    """Copy exactly ``size`` bytes of src to dst; SizeMismatch (after at most
    ``size`` bytes written) if src ends early or holds more."""
    left = size
    while left > 0:
        b = src.read(min(_COPY_CHUNK, left))
        if not b:
            raise SizeMismatch(what, size, size - left)
        dst.write(b)
        left -= len(b)
    if src.read(1):
        raise SizeMismatch(what, size, None)


def key_prefix_for(cfg: OffloadConfig) -> str:
    """{prefix} of our keys: the S3 prefix, or "" (paths below a file:// archive)."""
    return cfg.prefix if cfg.is_s3 else ""


def part_size_for(cfg: OffloadConfig) -> int | None:
    """S3 multipart part size in bytes (at least S3's minimum of 5 MiB)."""
    return max(5, cfg.s3_part_megabytes) * MiB if cfg.is_s3 else None


def manifests_for(cfg: OffloadConfig) -> bool:
    """Whether the storage for cfg writes manifest entries (Storage.manifests),
    known without opening it: both destinations do (S3 objects, files below
    a file:// archive's _index/)."""
    return cfg.is_s3 or cfg.destination.startswith("file://")


def describe_for(cfg: OffloadConfig) -> str:
    """What Storage.describe() says, known without opening the storage."""
    if not cfg.is_s3:
        return f"file://{cfg.prefix}"
    where = f"s3://{cfg.bucket}/{cfg.prefix}".rstrip("/")
    return f"{where} at {cfg.endpoint_url or 'AWS'}"


class Storage(ABC):
    #: {prefix} for rollcap.keys.render_key; every key of ours starts with it.
    key_prefix: str = ""
    #: multipart part size, if the destination verifies per part (see put_file)
    part_size: int | None = None
    #: the offload writes manifest entries here (storage/manifest.py; needs put_bytes)
    manifests: bool = False

    @abstractmethod
    def describe(self) -> str:
        """Human name of the destination for logs, e.g. 's3://bucket/prefix at http://..'."""

    def check(self) -> None:  # noqa: B027 - optional hook
        """Raise StorageError (permanent for credentials/bucket/permission problems)
        if the destination cannot be used at all; called at start and after outages."""

    @abstractmethod
    def put_file(self, local: Path, key: str, *, size: int, sha256: str,
                 metadata: dict[str, str],
                 progress: Callable[[int], None] | None = None,
                 part_sha256: Sequence[bytes] = ()) -> ObjectInfo:  # fmt: skip
        """Store local under key so that it becomes visible only complete, then
        verify it (size and checksum as stored) and return what HEAD says.

        ``sha256`` is the hex SHA-256 of local's bytes, computed by the caller; it
        is sent for the destination to verify where it can and stored in the
        metadata. Raises VerificationError if the stored object does not match.
        ``progress(n)`` is called (from any thread) as bytes go out.
        ``part_sha256``: SHA-256 digests of local's ``part_size`` pieces, if the
        caller computed them (saves reading the file again to verify parts)."""

    def put_stream(self, key: str, produce: Producer[P],
                   metadata: Callable[[P], dict[str, str]], *,
                   progress: Callable[[int], None] | None = None,
                   stop: threading.Event | None = None) -> tuple[ObjectInfo, P]:  # fmt: skip
        """Store the bytes ``produce(write)`` writes under key, without a
        local copy; as put_file otherwise (visible only complete, never
        overwriting, verified; ObjectExistsError if the key is taken).

        ``produce`` may be called more than once, each time writing the same
        bytes from the start; ``produce(None)`` only computes its result.
        ``metadata(result)``: the object's metadata (without the sha256, which
        is added from the result). ``stop`` set: give up (the caller's
        producer raises its own error when it sees it)."""
        raise StorageError(f"{self.describe()}: no streamed writes", code="Unsupported")

    @abstractmethod
    def head(self, key: str, checksum: bool = False) -> ObjectInfo | None:
        """Size and metadata of key, or None if it does not exist; with
        ``checksum``, also the destination's own checksum of the stored bytes."""

    def same_bytes(self, info: ObjectInfo, local: Path | None, *, size: int, sha256: str,
                   part_sha256: Sequence[bytes] = ()) -> bool | None:  # fmt: skip
        """Whether the object ``info`` (from head(key, checksum=True)) holds
        local's bytes by the destination's own checksum; None when it states none
        (or one that cannot be rebuilt: without ``local``, a streamed file's,
        only from sha256 and part_sha256), so only the metadata can tell."""
        if info.size != size:
            return False
        return None

    def settings_problems(self, info: ObjectInfo) -> builtins.list[str]:
        """What of the configured storage settings (class, encryption, tags,
        retention) the existing object ``info`` lacks, one line each."""
        return []

    def set_legal_hold(self, key: str, on: bool) -> None:
        """Set (or release) an S3 Object Lock legal hold on key."""
        raise StorageError(
            f"{self.describe()}: legal holds need an S3 destination whose bucket has Object Lock",
            code="NotSupported", permanent=True,
        )  # fmt: skip

    @abstractmethod
    def list(self, prefix: str, with_metadata: bool = False) -> Iterator[ObjectInfo]:
        """Objects whose key starts with prefix, in key order."""

    def list_prefixes(self, prefix: str) -> Iterator[str]:
        """The distinct "directories" directly below prefix, each ending in '/'.

        Like S3 ListObjectsV2 with Delimiter='/' (CommonPrefixes); `rollcap list`
        uses it to find the hosts below the prefix without listing their
        objects. This fallback derives them from a full listing; backends
        override it with something cheaper.
        """
        last = None
        for info in self.list(prefix):
            rest = info.key[len(prefix) :]
            if "/" in rest:
                sub = prefix + rest.split("/", 1)[0] + "/"
                if sub != last:
                    last = sub
                    yield sub

    def list_after(self, prefix: str, start_after: str, page_size: int = 1000
                   ) -> Iterator[ObjectInfo]:  # fmt: skip
        """Objects below prefix whose key sorts after start_after, in key order
        (S3 StartAfter). ``page_size`` only tunes the requests: a caller that
        stops early should not have made the server list far past its end."""
        for info in self.list(prefix):
            if info.key > start_after:
                yield info

    def put_bytes(self, key: str, body: bytes, content_type: str) -> None:
        """Store a small object whole (manifest entries). A key names all it
        holds, so a key that exists already holds these bytes: kept as it is."""
        raise StorageError(f"{self.describe()}: no small-object writes", code="Unsupported")

    @abstractmethod
    def download(self, key: str, dest: Path, *, size: int | None = None) -> None:
        """Copy the object's bytes to dest (which appears only complete).

        ``size``: the object's size as its listing or manifest entry records
        it. The object must hold exactly that many bytes, or SizeMismatch is
        raised; at most ``size`` bytes ever reach the local disk (an entry
        that lies cannot fill it)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove key (no error if it is already gone)."""

    def cleanup_incomplete(self, ours: Callable[[str], bool]) -> builtins.list[str]:
        """Remove leftovers of interrupted uploads whose key satisfies ``ours``
        (stale multipart uploads, temp files); return the keys cleaned.

        Only the offload service calls this, at start, before it uploads."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and threads."""
