"""A Storage that opens the real one in a background thread.

Opening S3 storage imports boto3 and builds a client: about 0.4 s of CPU,
which is as long as compressing a 64 MB capture. The service starts
compressing the first files meanwhile. What the pipeline needs before its
first upload (key prefix, part size, description, whether it writes
manifest entries) is known from the config;
every other call waits for the real storage and raises what opening it raised.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from rollcap.config.schema import OffloadConfig
from rollcap.errors import RollcapError
from rollcap.storage import open_storage
from rollcap.storage.base import (
    ObjectInfo,
    P,
    Producer,
    Storage,
    StorageError,
    describe_for,
    key_prefix_for,
    manifests_for,
    part_size_for,
)


class DeferredStorage(Storage):
    def __init__(self, cfg: OffloadConfig, host: str = "") -> None:
        self.key_prefix = key_prefix_for(cfg)
        self.part_size = part_size_for(cfg)
        # the pipeline asks before each entry write: a Storage default of False
        # here once meant the running offload never wrote one
        self.manifests = manifests_for(cfg)
        self._describe = describe_for(cfg)
        self._real: Storage | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._open, args=(cfg, host), name="open-storage", daemon=True
        )
        self._thread.start()

    def _open(self, cfg: OffloadConfig, host: str) -> None:
        try:
            self._real = open_storage(cfg, host)
        except BaseException as e:  # handed to the first caller
            self._error = e
        finally:
            self._done.set()

    def real(self) -> Storage:
        self._done.wait()
        if isinstance(self._error, StorageError):
            raise self._error
        if self._error is not None:
            raise RollcapError(f"cannot open {self._describe}: {self._error}") from self._error
        assert self._real is not None
        return self._real

    def describe(self) -> str:
        return self._describe

    def check(self) -> None:
        self.real().check()

    def put_file(self, local: Path, key: str, *, size: int, sha256: str,
                 metadata: dict[str, str],
                 progress: Callable[[int], None] | None = None,
                 part_sha256: Sequence[bytes] = ()) -> ObjectInfo:  # fmt: skip
        return self.real().put_file(
            local, key, size=size, sha256=sha256, metadata=metadata, progress=progress,
            part_sha256=part_sha256,
        )  # fmt: skip

    def put_stream(self, key: str, produce: Producer[P],
                   metadata: Callable[[P], dict[str, str]], *,
                   progress: Callable[[int], None] | None = None,
                   stop: threading.Event | None = None) -> tuple[ObjectInfo, P]:  # fmt: skip
        return self.real().put_stream(key, produce, metadata, progress=progress, stop=stop)

    def head(self, key: str, checksum: bool = False) -> ObjectInfo | None:
        return self.real().head(key, checksum)

    def same_bytes(self, info: ObjectInfo, local: Path | None, *, size: int, sha256: str,
                   part_sha256: Sequence[bytes] = ()) -> bool | None:  # fmt: skip
        return self.real().same_bytes(
            info, local, size=size, sha256=sha256, part_sha256=part_sha256
        )

    def settings_problems(self, info: ObjectInfo) -> builtins.list[str]:
        return self.real().settings_problems(info)

    def set_legal_hold(self, key: str, on: bool) -> None:
        self.real().set_legal_hold(key, on)

    def list(self, prefix: str, with_metadata: bool = False) -> Iterator[ObjectInfo]:
        return self.real().list(prefix, with_metadata)

    def list_prefixes(self, prefix: str) -> Iterator[str]:
        return self.real().list_prefixes(prefix)

    def list_after(self, prefix: str, start_after: str, page_size: int = 1000
                   ) -> Iterator[ObjectInfo]:  # fmt: skip
        return self.real().list_after(prefix, start_after, page_size)

    def put_bytes(self, key: str, body: bytes, content_type: str) -> None:
        self.real().put_bytes(key, body, content_type)

    def download(self, key: str, dest: Path, *, size: int | None = None) -> None:
        self.real().download(key, dest, size=size)

    def delete(self, key: str) -> None:
        self.real().delete(key)

    def cleanup_incomplete(self, ours: Callable[[str], bool]) -> builtins.list[str]:
        return self.real().cleanup_incomplete(ours)

    def close(self) -> None:
        self._done.wait()
        if self._real is not None:
            self._real.close()
