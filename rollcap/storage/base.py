"""The storage interface: one destination, S3 or a local directory.

Like barman's CloudInterface: the offload and retrieval code talk only to this,
never to boto3 or the filesystem directly. Implementations: storage.s3.S3Storage
and storage.local.LocalStorage, chosen by ``storage.open_storage(cfg.offload)``.

Object metadata (S3 user metadata, or a JSON sidecar for file://) uses the
keys in ``META``; values are ASCII strings (percent-encode anything else).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Metadata written with every object; enough for `rollcap list` to answer
# "which objects cover 12:00-12:05 on host X" without downloading anything.
META = {
    "first_ts": "rollcap-first-ts",  # first packet, epoch seconds, "%.6f"
    "last_ts": "rollcap-last-ts",  # last packet, epoch seconds, "%.6f"
    "packets": "rollcap-packets",
    "pcap_bytes": "rollcap-pcap-bytes",  # uncompressed size
    "pcap_sha256": "rollcap-pcap-sha256",  # of the uncompressed pcap
    "sha256": "rollcap-sha256",  # of the stored (compressed) bytes; verified by HEAD
    "linktype": "rollcap-linktype",
    "host": "rollcap-host",
    "iface": "rollcap-iface",
    "filter": "rollcap-filter",  # percent-encoded
    "compression": "rollcap-compression",
    "version": "rollcap-version",
}


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    metadata: dict[str, str] = field(default_factory=dict)


class StorageError(Exception):
    """A failure talking to the destination; ``permanent`` ones need an operator."""

    def __init__(self, message: str, *, code: str = "", permanent: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.permanent = permanent


class Storage(ABC):
    @abstractmethod
    def describe(self) -> str:
        """Human name of the destination for logs, e.g. 's3://bucket/prefix at http://..'."""

    @abstractmethod
    def put_file(self, local: Path, key: str, *, size: int, sha256: str,
                 metadata: dict[str, str]) -> None:  # fmt: skip
        """Store local under key so that it becomes visible only complete and verified."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """Size and metadata of key, or None if it does not exist."""

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

    @abstractmethod
    def download(self, key: str, dest: Path) -> None:
        """Copy the object's bytes to dest."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove key (no error if it is already gone)."""
