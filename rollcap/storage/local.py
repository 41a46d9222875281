"""A local archive directory (``file:///path``): the default destination.

Layout: ``<archive>/<key>`` holds the object's bytes and ``<archive>/<key>.meta.json``
its metadata (size and the META names). Writes are atomic and durable: the
sidecar goes in first (temp + fsync + rename), then the data is hard-linked
from a fsynced temp file (link fails if the key exists, so nothing is ever
overwritten), then the directory is fsynced. A data file is therefore visible
only complete and always with its metadata; an orphan sidecar from a crash is
removed by cleanup_incomplete.

The archive has its own budget (offload.archive_max_megabytes, data plus
sidecars): after each store the oldest objects (by key, which is time order)
are removed until it fits, each removal logged, so a default install is a
self-maintaining ring. The object just stored is never removed.

Manifest entries (storage/manifest.py) and flow summaries (flows/index.py)
are files below ``<archive>/_index/``,
written once like the data (temp + fsync + link). They are not objects of
the ring: the ring removes a capture's entries with the capture, and the
coverage entries (no object) of its host and interface that ended before it,
so `rollcap list` never names a capture the ring has removed.
"""

from __future__ import annotations

import bisect
import builtins
import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from rollcap.config.schema import OffloadConfig
from rollcap.journal import fields
from rollcap.keys import check_key
from rollcap.storage import manifest
from rollcap.storage.base import (
    META,
    ObjectExistsError,
    ObjectInfo,
    P,
    Producer,
    SizeMismatch,
    Storage,
    StorageError,
    VerificationError,
    copy_exact,
    describe_for,
    manifests_for,
)

log = logging.getLogger(__name__)

SIDECAR = ".meta.json"
TMP_DIR = ".rollcap-tmp"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _oserror(e: OSError, what: str) -> StorageError:
    code = errno.errorcode.get(e.errno or 0, "OSError")
    permanent = e.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
    return StorageError(f"{what}: {e.strerror or e}", code=code, permanent=permanent)


class LocalStorage(Storage):
    key_prefix = ""

    def __init__(self, cfg: OffloadConfig) -> None:
        self.cfg = cfg
        self.root = Path(cfg.prefix)
        self.tmp = self.root / TMP_DIR
        self.budget = cfg.archive_max_megabytes * 1_000_000
        self._lock = threading.RLock()  # delete() runs under _account()
        self._index: dict[str, int] | None = None  # key -> bytes (data + sidecar)
        self._order: list[str] = []  # keys, sorted
        self._total = 0
        # manifest entries, loaded with _index and counted in the budget:
        # capture key -> entry keys, and the coverage entries (host, iface,
        # closed_ts, key, bytes), removed with the captures they precede
        self._entries: dict[str, list[str]] = {}
        self._coverage: list[tuple[str, str, int, str, int]] = []  # ..., key, bytes
        self.manifests = manifests_for(cfg)

    def describe(self) -> str:
        return describe_for(self.cfg)

    def _path(self, key: str) -> Path:
        try:
            check_key(key, "")
        except ValueError as e:
            # a manifest entry's name has '~' (which no capture key has); its
            # shape is fixed, without '/' or '..' in the name (manifest.parse_key)
            if (manifest.parse_any(key, "") is None and not manifest.is_keep_record(key, "")
                    and not _is_ack(key)):  # fmt: skip
                raise StorageError(str(e), code="InvalidKey", permanent=True) from None
        return self.root / key

    def check(self) -> None:
        try:
            self.tmp.mkdir(mode=0o750, parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.tmp, prefix="probe-")  # noqa: SIM115
            probe.close()
        except OSError as e:
            raise _oserror(e, f"archive {self.root}") from None

    # -- writing -----------------------------------------------------------

    def put_file(self, local: Path, key: str, *, size: int, sha256: str,
                 metadata: dict[str, str],
                 progress: Callable[[int], None] | None = None,
                 part_sha256: Sequence[bytes] = ()) -> ObjectInfo:  # fmt: skip
        def fill(tmp_data: Path) -> None:
            try:
                os.link(local, tmp_data)  # same filesystem: no copy at all
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
                shutil.copyfile(local, tmp_data)  # sendfile/copy_file_range in the kernel

        return self._store(key, fill, lambda: (size, sha256, metadata), f"{local}")

    def put_stream(self, key: str, produce: Producer[P],
                   metadata: Callable[[P], dict[str, str]], *,
                   progress: Callable[[int], None] | None = None,
                   stop: threading.Event | None = None) -> tuple[ObjectInfo, P]:  # fmt: skip
        """The bytes go straight into the archive's temp file, which becomes
        the object (a hard link): written once."""
        got: list[P] = []

        def fill(tmp_data: Path) -> None:
            fd = os.open(tmp_data, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o640)  # fmt: skip
            with os.fdopen(fd, "wb", buffering=0) as f:

                def write_all(data: bytes) -> None:
                    # a raw write may be short (a filling disk); the retry then
                    # raises ENOSPC instead of storing a silently truncated file
                    mv = memoryview(data)
                    while mv:
                        n = f.write(mv)
                        if not n:
                            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_data))
                        mv = mv[n:]

                got.append(produce(write_all))

        def stated() -> tuple[int, str, dict[str, str]]:
            return got[0].size, got[0].sha256, metadata(got[0])

        info = self._store(key, fill, stated, key)
        return info, got[0]

    def _store(
        self, key: str, fill: Callable[[Path], None],
        stated: Callable[[], tuple[int, str, dict[str, str]]], what: str,
    ) -> ObjectInfo:  # fmt: skip
        """fill(temp path) writes the object's bytes into the archive's temp
        dir; stated() then says their size, SHA-256 and metadata."""
        dest = self._path(key)
        tmp_data = self.tmp / f"{uuid.uuid4().hex}.data"
        tmp_meta = self.tmp / f"{uuid.uuid4().hex}.meta"
        try:
            # in the try: a path too long for the filesystem (ENAMETOOLONG) is a
            # StorageError of this key, which the offload treats as this file's
            if os.path.lexists(dest) or dest.exists():
                raise ObjectExistsError(key)
            self.tmp.mkdir(mode=0o750, parents=True, exist_ok=True)
            dest.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            fill(tmp_data)
            size, sha256, metadata = stated()
            meta = {**metadata, META["sha256"]: sha256}
            fd = os.open(tmp_data, os.O_RDONLY)
            try:
                os.fsync(fd)
                stored = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if stored != size:
                raise VerificationError(f"{what}: {stored} bytes, expected {size}")
            body = json.dumps({"key": key, "size": size, "metadata": meta}, sort_keys=True)
            with open(tmp_meta, "w") as f:
                f.write(body + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp_meta, self._sidecar(dest))
            try:
                os.link(tmp_data, dest)  # fails if the key exists: never overwrite
            except FileExistsError:
                raise ObjectExistsError(key) from None
            _fsync_dir(dest.parent)
        except OSError as e:
            raise _oserror(e, f"store {self.root}/{key}") from None
        finally:
            for t in (tmp_data, tmp_meta):
                with contextlib.suppress(FileNotFoundError):
                    t.unlink()
        info = self.head(key)
        if info is None or info.size != size or info.sha256 != sha256:
            raise VerificationError(f"{self.root}/{key}: stored object does not match")
        self._account(key, size + len(body) + 1)
        return info

    def put_bytes(self, key: str, body: bytes, content_type: str) -> None:
        """Write-once: a key that exists already holds these bytes (an entry's
        key names all it holds), as S3Storage's conditional write."""
        dest = self._path(key)
        tmp = self.tmp / f"{uuid.uuid4().hex}.put"
        try:
            if os.path.lexists(dest):
                return
            self.tmp.mkdir(mode=0o750, parents=True, exist_ok=True)
            dest.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
            try:
                os.write(fd, body)
                os.fsync(fd)
            finally:
                os.close(fd)
            with contextlib.suppress(FileExistsError):  # written meanwhile: the same bytes
                os.link(tmp, dest, follow_symlinks=False)
            _fsync_dir(dest.parent)
        except OSError as e:
            raise _oserror(e, f"store {self.root}/{key}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        with self._lock:
            if self._index is not None:
                keep = self._note_entry(key, len(body))
                self._shrink(keep)

    def _note_entry(self, key: str, nbytes: int) -> str:
        """Count an entry in the budget: with its capture (whose object key
        this returns), or a coverage entry on its own."""
        assert self._index is not None
        e = manifest.parse_any(key, "")  # a manifest entry or a flow summary
        if e is None:
            return ""
        if not e.has_object:
            self._coverage.append((e.host, e.iface, e.closed_ts, key, nbytes))
            self._total += nbytes
        elif e.key in self._index:  # else the capture is gone: nothing to remove it with
            self._entries.setdefault(e.key, []).append(key)
            self._index[e.key] += nbytes
            self._total += nbytes
        return e.key

    def _remove_entries(self, victim: str) -> None:
        """The victim's entries, and the coverage entries of its host and
        interface that ended before it (so they do not pile up forever)."""
        keys = self._entries.pop(victim, [])
        parsed = manifest.parse_any(keys[0], "") if keys else None
        if parsed is not None:
            older = [c for c in self._coverage
                     if (c[0], c[1]) == (parsed.host, parsed.iface)
                     and c[2] <= parsed.closed_ts]  # fmt: skip
            keys += [c[3] for c in older]
            self._total -= sum(c[4] for c in older)
            drop = {c[3] for c in older}
            self._coverage = [c for c in self._coverage if c[3] not in drop]
        for key in keys:
            try:
                path = self._path(key)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                self._prune(path.parent)
            except (OSError, StorageError) as e:
                log.error("archive budget: cannot remove the manifest entry %s: %s", key, e)

    def _prune(self, parent: Path) -> None:
        """Remove parent and its parents while empty, never the root."""
        while parent != self.root and self.root in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    @staticmethod
    def _sidecar(dest: Path) -> Path:
        return dest.with_name(dest.name + SIDECAR)

    # -- budget ------------------------------------------------------------

    def _load_index(self) -> None:
        self._index = {}
        self._entries, self._coverage = {}, []
        for info in self.list(""):  # the captures (entries: below)
            extra = 0
            with contextlib.suppress(OSError):
                extra = self._sidecar(self.root / info.key).stat().st_size
            self._index[info.key] = info.size + extra
        self._order = sorted(self._index)
        self._total = sum(self._index.values())
        for d in manifest.ENTRY_NAMED:
            for info in self.list(d + "/"):
                self._note_entry(info.key, info.size)

    def _account(self, key: str, nbytes: int) -> None:
        with self._lock:
            if self._index is None:
                self._load_index()  # includes key already
            else:
                if key not in self._index:
                    bisect.insort(self._order, key)
                    self._total += nbytes
                self._index[key] = nbytes
            self._shrink(key)

    def _shrink(self, keep: str) -> None:
        """Remove the oldest objects (and their entries) until the archive
        fits its budget; never ``keep``, the object just stored."""
        assert self._index is not None
        while self._total > self.budget and len(self._order) > 1:
            victim = self._order[0] if self._order[0] != keep else self._order[1]
            self._order.remove(victim)
            freed = self._index.pop(victim)
            self._total -= freed
            try:
                self.delete(victim)
                self._remove_entries(victim)
            except StorageError as e:
                log.error("archive budget: cannot remove %s: %s", victim, e)
                continue
            log.info(
                "archive over its budget of %d MB: removed the oldest object %s",
                self.budget // 1_000_000,
                victim,
                extra=fields(key=victim, bytes=freed, archive_bytes=self._total),
            )

    @property
    def total_bytes(self) -> int:
        with self._lock:
            if self._index is None:
                self._load_index()
            return self._total

    # -- reading -----------------------------------------------------------

    def head(self, key: str, checksum: bool = False) -> ObjectInfo | None:
        dest = self._path(key)
        try:
            st = os.stat(dest, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise _oserror(e, f"stat {dest}") from None
        meta: dict[str, str] = {}
        try:
            with open(self._sidecar(dest)) as f:
                raw = json.load(f).get("metadata", {})
            meta = {str(k): str(v) for k, v in raw.items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as e:
            log.warning("unreadable metadata for %s: %s", key, e)
        digest = ""
        if checksum:  # the data itself, not the sidecar's word for it
            try:
                with open(dest, "rb", buffering=0) as f:
                    digest = hashlib.file_digest(f, "sha256").hexdigest()
            except FileNotFoundError:
                return None
            except OSError as e:
                raise _oserror(e, f"read {dest}") from None
        return ObjectInfo(key, st.st_size, meta, checksum=digest)

    def same_bytes(self, info: ObjectInfo, local: Path | None, *, size: int, sha256: str,
                   part_sha256: Sequence[bytes] = ()) -> bool | None:  # fmt: skip
        if info.size != size:
            return False
        return info.checksum == sha256 if info.checksum else None

    def list(self, prefix: str, with_metadata: bool = False) -> Iterator[ObjectInfo]:
        keys: list[tuple[str, int]] = []
        # walk only below the directory the prefix names (e.g. host/YYYY/MM/DD/)
        top = prefix[: prefix.rfind("/") + 1]
        start = self.root / top if top and ".." not in top.split("/") else self.root
        # the index only when asked for: a listing of the captures does not
        # walk its directory per 10-minute slot
        skip = {TMP_DIR, manifest.INDEX_DIR}
        if prefix.startswith(manifest.INDEX_DIR + "/"):
            skip.discard(manifest.INDEX_DIR)
        for dirpath, dirnames, filenames in os.walk(start):
            rel = os.path.relpath(dirpath, self.root)
            rel = "" if rel == "." else rel + "/"
            dirnames[:] = [d for d in dirnames if not (rel == "" and d in skip)]
            for name in filenames:
                key = rel + name
                if name.endswith(SIDECAR) or not key.startswith(prefix):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, name), follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed meanwhile (budget)
                keys.append((key, st.st_size))
        keys.sort()
        for key, size in keys:
            if with_metadata:
                info = self.head(key)
                if info is not None:
                    yield info
            else:
                yield ObjectInfo(key, size)

    def list_prefixes(self, prefix: str) -> Iterator[str]:
        if (prefix and not prefix.endswith("/")) or ".." in prefix.split("/"):
            yield from super().list_prefixes(prefix)
            return
        try:
            entries = sorted(e.name for e in os.scandir(self.root / prefix)
                             if e.is_dir(follow_symlinks=False))  # fmt: skip
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as e:
            raise _oserror(e, f"list {self.root / prefix}") from None
        for name in entries:
            if not (prefix == "" and name == TMP_DIR):
                yield prefix + name + "/"

    def download(self, key: str, dest: Path, *, size: int | None = None) -> None:
        src = self._path(key)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        done = False
        try:
            if size is None:
                os.close(fd)
                shutil.copyfile(src, tmp)
            else:
                with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
                    # the size of the file being read, not of a name looked up again
                    stated = os.fstat(f.fileno()).st_size
                    if stated != size:
                        raise SizeMismatch(f"read {src}", size, stated)
                    copy_exact(f, out, size, f"read {src}")
            os.replace(tmp, dest)
            done = True
        except OSError as e:
            raise _oserror(e, f"read {src}") from None
        finally:
            if not done:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    def delete(self, key: str) -> None:
        dest = self._path(key)
        try:
            for p in (dest, self._sidecar(dest)):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            self._prune(dest.parent)  # directories the ring emptied (host/YYYY/MM/DD)
        except OSError as e:
            raise _oserror(e, f"delete {dest}") from None
        with self._lock:
            if self._index is not None and key in self._index:
                self._total -= self._index.pop(key)
                self._order.remove(key)

    def cleanup_incomplete(self, ours: Callable[[str], bool]) -> builtins.list[str]:
        """Remove temp files and sidecars whose data never arrived (crash)."""
        cleaned: list[str] = []
        if self.tmp.is_dir():
            for p in self.tmp.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel = os.path.relpath(dirpath, self.root)
            rel = "" if rel == "." else rel + "/"
            dirnames[:] = [d for d in dirnames if not (rel == "" and d == TMP_DIR)]
            for name in filenames:
                if not name.endswith(SIDECAR):
                    continue
                key = rel + name[: -len(SIDECAR)]
                if ours(key) and not os.path.lexists(os.path.join(dirpath, name[: -len(SIDECAR)])):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(dirpath, name))
                    cleaned.append(key)
        return cleaned


def _is_ack(key: str) -> bool:
    """A fleet keep acknowledgement's key (named HOST~ack.json like an entry)."""
    from rollcap.keep import fleet  # keep/ builds on storage/: imported when needed

    try:
        fleet.ack_of_key(key, "")
    except fleet.BadObject:
        return False
    return True
