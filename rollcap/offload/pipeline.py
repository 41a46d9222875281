"""One file's way out: vet, compress, check the key, upload, verify, delete.

Runs in a worker thread; returns an Outcome and never raises for anything a
file or the destination can do. The main loop decides about retries.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from rollcap import __version__, timestamps
from rollcap.config.schema import RollcapConfig
from rollcap.errors import ConfigError
from rollcap.flows import index as flowindex
from rollcap.flows.summary import Summariser
from rollcap.journal import fields
from rollcap.keep.request import KeepRequest
from rollcap.keys import KeyFields, render_key
from rollcap.offload.compress import Cancelled, Compressed, compress_stream
from rollcap.offload.discovery import oldest_first
from rollcap.offload.existing import judge
from rollcap.offload.vet import Opened, Refused, Vanished, open_ready
from rollcap.pcapfile import GLOBAL_HEADER_LEN
from rollcap.quarantine import quarantine
from rollcap.spool import Spool
from rollcap.spool.fs import Dir
from rollcap.storage import manifest
from rollcap.storage.base import (
    META,
    ObjectExistsError,
    Producer,
    Storage,
    StorageError,
    VerificationError,
)

MAX_FILTER_META = 1000  # S3 user metadata is limited to 2 KB in total

log = logging.getLogger("rollcap.offload")


# What became of one file; the strings are what the journal and the metrics'
# result labels show (rollcap.metrics.offload maps them). covered: a coverage
# marker, filed as a manifest entry with no object.
OutcomeKind = Literal[
    "uploaded", "exists", "covered", "quarantined", "dropped", "ignored", "failed", "cancelled"
]


@dataclass
class Outcome:
    name: str
    kind: OutcomeKind
    key: str = ""
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    compress_seconds: float = 0.0
    packets: int = 0
    message: str = ""
    dest_error: StorageError | None = None  # the destination failed, not the file
    removed_by_capture: bool = False  # gone from ready/ before we deleted it
    keep_id: str = ""  # shipped for this keep


def object_metadata(cfg: RollcapConfig, opened: Opened, c: Compressed,
                    keep: KeepRequest | None = None) -> dict[str, str]:  # fmt: skip
    flt = quote(cfg.capture.filter, safe="")
    if len(flt) > MAX_FILTER_META:
        flt = flt[: MAX_FILTER_META - 3] + "..."
    kept = {} if keep is None else {
        META["keep_id"]: keep.id, META["keep_reason"]: quote(keep.reason, safe=" "),
    }  # fmt: skip
    return {
        **kept,
        # exact: 6 digits for µs, 9 for ns stamps (rollcap.timestamps)
        META["first_ts"]: "" if c.first_ns is None else timestamps.to_text(c.first_ns),
        META["last_ts"]: "" if c.last_ns is None else timestamps.to_text(c.last_ns),
        META["packets"]: str(c.packets),
        META["pcap_bytes"]: str(c.pcap_bytes),
        META["pcap_crc32"]: c.pcap_crc32,
        META["linktype"]: str(c.linktype),
        META["host"]: opened.name.host,
        META["iface"]: opened.name.iface,
        META["filter"]: flt,
        META["compression"]: cfg.offload.compression,
        META["version"]: __version__,
    }


def _closed(opened: Opened, last_ts: float | None, rotate_seconds: int) -> int:
    """The file's last write (tcpdump's close, the hand-off) ends its span; an
    mtime outside what a rotation allows (a file copied in, a clock step) is
    not believed: the last packet (or the open) ends it then."""
    start = opened.name.start.timestamp()
    mtime = opened.st.st_mtime
    closed = max(last_ts or start, start)
    if start <= mtime <= start + rotate_seconds + 60:
        closed = max(closed, mtime)
    return math.ceil(closed)


def manifest_entry(
    key: str, opened: Opened, c: Compressed, stored: int, rotate_seconds: int,
    keep: KeepRequest | None = None,
) -> manifest.Entry:  # fmt: skip
    n = opened.name
    return manifest.Entry(
        key=key, host=n.host, iface=n.iface, opened=n.start,
        closed_ts=_closed(opened, c.last_ts, rotate_seconds), first_ns=c.first_ns,
        last_ns=c.last_ns, packets=c.packets, pcap_bytes=c.pcap_bytes, size=stored,
        linktype=c.linktype, keep_id=keep.id if keep else "",
        keep_reason=keep.reason if keep else "",
    )  # fmt: skip


def coverage_entry(opened: Opened, rotate_seconds: int) -> manifest.Entry:
    """The entry of a coverage marker (a header-only file: capture ran, saw no
    packet): no object, the span from the name's time to the mtime."""
    n = opened.name
    return manifest.Entry(
        key="", host=n.host, iface=n.iface, opened=n.start,
        closed_ts=_closed(opened, None, rotate_seconds), first_ns=None, last_ns=None,
        packets=0, pcap_bytes=opened.size, size=0, linktype=opened.header.linktype,
    )  # fmt: skip


class OrderedSlots:
    """A semaphore that hands free slots to the oldest waiting file (smallest
    discovery.oldest_first), not to whichever thread wins the race; gives up when stop is set.

    Keys are reserved when the work is queued (reserve()), so a younger file
    whose thread happens to start first does not jump the queue; a reservation
    not used is dropped with release_reservation()."""

    def __init__(self, slots: int, stop: threading.Event) -> None:
        self._free = slots
        self._stop = stop
        self._cv = threading.Condition()
        self._waiting: set[str] = set()

    def reserve(self, key: str) -> None:
        with self._cv:
            self._waiting.add(key)

    def release_reservation(self, key: str) -> None:
        with self._cv:
            if key in self._waiting:
                self._waiting.discard(key)
                self._cv.notify_all()

    @contextlib.contextmanager
    def slot(self, key: str) -> Iterator[None]:
        with self._cv:
            self._waiting.add(key)
            try:
                while not (self._free > 0 and key == min(self._waiting, key=oldest_first)):
                    if self._stop.is_set():
                        raise Cancelled()
                    self._cv.wait(1.0)  # stop is checked at least once a second
            finally:
                self._waiting.discard(key)
            self._free -= 1
            self._cv.notify_all()  # the next smallest may take another free slot
        try:
            yield
        finally:
            with self._cv:
                self._free += 1
                self._cv.notify_all()


# Storage errors about one file's key, not about the destination (file://: a
# name too long for the archive's filesystem): that file is quarantined, the
# destination is not "down".
PER_FILE_CODES = frozenset({"InvalidKey", "ENAMETOOLONG"})


class Pipeline:
    def __init__(
        self, cfg: RollcapConfig, spool: Spool, storage: Storage, owners: set[int],
        stop: threading.Event,
    ) -> None:  # fmt: skip
        self.cfg = cfg
        self.spool = spool
        self.storage = storage
        self.owners = owners
        self.stop = stop
        # Compress at most one file per core; the other workers upload meanwhile,
        # so the first upload starts after one file, not after a whole wave.
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # e.g. a seccomp filter answering EPERM
            cores = os.cpu_count() or 1
        # The service clears this until it has checked the destination and
        # cleaned up after an earlier run; files compress meanwhile.
        self.store_allowed = threading.Event()
        self.store_allowed.set()
        # ... and if that check failed, files compressed meanwhile ("early") must
        # not go out (SeaweedFS, e.g., creates a missing bucket on PUT).
        self.startup_error: StorageError | None = None
        self.compress_slots = OrderedSlots(max(1, min(cfg.offload.concurrency, cores)), stop)
        # Cleared while offload yields to capture (rollcap.offload.yielding): no
        # compression starts; the file stays in ready/ and keeps its place.
        self.compress_open = threading.Event()
        self.compress_open.set()
        # the keep a file is shipped for (rollcap.keep.shipping), None: no keep
        self.keep_of: Callable[[str], KeepRequest | None] = lambda _name: None

    def key_for(self, opened: Opened) -> str:
        n = opened.name
        fields = KeyFields(
            prefix=self.storage.key_prefix, host=n.host, iface=n.iface, start=n.start,
            seq=n.seq, ext=self.cfg.offload.extension,
        )  # fmt: skip
        return render_key(self.cfg.offload.key_template, fields)

    @functools.cached_property
    def ready(self) -> Dir:
        """ready/ (opened once the service has made sure it exists)."""
        return Dir(self.spool.ready)

    @functools.cached_property
    def quarantine_dir(self) -> Dir:
        return Dir(self.spool.quarantine)

    def quarantine(self, name: str, reason: str) -> Outcome:
        try:
            quarantine(self.ready, name, self.quarantine_dir, reason)
        except FileNotFoundError:
            return Outcome(name, "dropped", message=reason)
        except OSError as e:
            return Outcome(name, "ignored", message=f"{reason}; cannot quarantine it: {e}")
        return Outcome(name, "quarantined", message=reason)

    def process(
        self,
        name: str,
        progress: Callable[[int], None] | None = None,
        early: bool = False,
        level: int | None = None,
        attempt: int = 1,
    ) -> Outcome:
        """level: the compression level to use (None: compression_level);
        attempt: this file's attempt number, for its log line."""
        try:
            return self._process(name, progress, early, level, attempt)
        finally:
            self.compress_slots.release_reservation(name)  # if it never compressed

    def _process(
        self, name: str, progress: Callable[[int], None] | None, early: bool, level: int | None,
        attempt: int,
    ) -> Outcome:  # fmt: skip
        t0 = time.monotonic()
        path = self.spool.ready / name
        try:
            opened = open_ready(self.ready, name, self.owners)
        except Refused as e:
            return self.quarantine(name, str(e))
        except Vanished:
            return Outcome(name, "dropped")
        except OSError as e:
            return Outcome(name, "failed", message=f"cannot open {path}: {e}")
        if opened.size <= GLOBAL_HEADER_LEN:
            try:
                return self._cover(name, opened, t0, early)
            finally:
                opened.close()
        try:
            try:
                key = self.key_for(opened)
            except ConfigError as e:
                return self.quarantine(name, f"no valid object key: {e}")
            # nothing to hold early compressed bytes in: wait for the check first
            waited = self._wait_store(name, early)
            if waited is not None:
                waited.key = key
                return waited
            return self._store(
                name, path, opened, key,
                self.cfg.offload.compression_level if level is None else level, t0, progress,
                attempt,
            )  # fmt: skip
        except Cancelled:
            return Outcome(name, "cancelled")
        except OSError as e:
            return Outcome(name, "failed", message=f"compressing {name}: {e}")
        finally:
            opened.close()

    def _wait_compress_open(self) -> None:
        while not self.compress_open.wait(0.5):
            if self.stop.is_set():
                raise Cancelled()

    def _wait_store(self, name: str, early: bool) -> Outcome | None:
        """Wait until the service allows storing; an Outcome if this file must not."""
        while not self.store_allowed.wait(1.0):
            if self.stop.is_set():
                return Outcome(name, "cancelled")
        err = self.startup_error
        if early and err is not None:
            return Outcome(name, "failed", message=str(err), dest_error=err)
        return None

    def _write_entries(self, name: str, e: manifest.Entry) -> None:
        """The manifest entries of e; StorageError if the destination failed.
        An entry this destination cannot hold (a name too long for a file://
        archive's filesystem) is left out, with a warning: entries are hints,
        and `rollcap list` lists that host's captures when they are missing."""
        if not self.storage.manifests:
            return
        try:
            manifest.write_entries(self.storage, e, self.storage.key_prefix)
        except StorageError as err:
            if err.code not in PER_FILE_CODES:
                raise
            log.warning(
                "%s: no manifest entry (`rollcap list` will list this host's captures "
                "instead): %s", name, err, extra=fields(file=name, key=e.key or None),
            )  # fmt: skip

    # -- flow index (offload.flow_index; rollcap/flows/) ---------------------

    def _summariser(self, opened: Opened) -> Summariser | None:
        """A fresh summariser per read (a multipart upload reads twice)."""
        if not (self.cfg.offload.flow_index and self.storage.manifests):
            return None
        return Summariser(opened.header, self.cfg.offload.flow_index_max_flows)

    def _write_flows(self, name: str, e: manifest.Entry, c: Compressed) -> None:
        """The capture's flow summary, before its manifest entries and the
        local delete: a failure retries the file as a failed entry does."""
        if c.flows is None:
            return
        try:
            flowindex.write_summary(self.storage, e, c.flows, self.storage.key_prefix)
        except StorageError as err:
            if err.code not in PER_FILE_CODES:
                raise
            log.warning("%s: no flow summary (a name this destination cannot hold): %s",
                        name, err, extra=fields(file=name, key=e.key))  # fmt: skip

    def _cover(self, name: str, opened: Opened, t0: float, early: bool) -> Outcome:
        """A coverage marker: its manifest entry, never an object; then the
        marker goes, as a stored capture's local copy does (not before)."""
        waited = self._wait_store(name, early)
        if waited is not None:
            return waited
        try:
            self._write_entries(name, coverage_entry(opened, self.cfg.capture.rotate_seconds))
        except StorageError as e:
            if self.stop.is_set():
                return Outcome(name, "cancelled")
            return Outcome(name, "failed", message=str(e), dest_error=e)
        out = Outcome(name, "covered", bytes_in=opened.size, seconds=time.monotonic() - t0)
        try:
            if not self.ready.unlink_if_same(name, opened.st):
                out.removed_by_capture = True
        except OSError as e:
            out.kind = "ignored"
            out.message = f"coverage filed but cannot delete {self.spool.ready / name}: {e}"
        return out

    def _producer(
        self, name: str, opened: Opened, level: int, progress: Callable[[int], None] | None
    ) -> tuple[Producer[Compressed], list[float]]:
        """The compressed capture for Storage.put_stream, from the pcap each
        time it is asked (a multipart upload asks twice; a retry starts over
        from the pcap); and the seconds spent compressing, so far."""
        spent = [0.0]

        def produce(write: Callable[[bytes], None] | None) -> Compressed:
            self._wait_compress_open()  # offload yields to capture (offload.yielding)
            # one file per core compresses at a time, oldest first
            with self.compress_slots.slot(name):
                t = time.monotonic()
                try:
                    os.lseek(opened.fd, len(opened.header_bytes), os.SEEK_SET)
                    summariser = self._summariser(opened)
                    c = compress_stream(
                        opened.fd, opened.header, opened.header_bytes,
                        self.cfg.offload.compression, level, write, self.stop, progress,
                        self.storage.part_size, summariser.feed_walked if summariser else None,
                    )  # fmt: skip
                    return replace(c, flows=summariser.finish()) if summariser else c
                finally:
                    spent[0] += time.monotonic() - t

        return produce, spent

    def _store(
        self, name: str, path: Path, opened: Opened, key: str, level: int, t0: float,
        progress: Callable[[int], None] | None, attempt: int,
    ) -> Outcome:  # fmt: skip
        """Compress straight into the destination (no local copy), verify,
        then delete the pcap."""
        produce, spent = self._producer(name, opened, level, progress)
        out = Outcome(name, "uploaded", key=key)
        keep = self.keep_of(name)
        out.keep_id = keep.id if keep else ""
        try:
            try:
                info, comp = self.storage.put_stream(
                    key, produce, lambda c: object_metadata(self.cfg, opened, c, keep),
                    progress=progress, stop=self.stop,
                )  # fmt: skip
                stored = info.size
            except ObjectExistsError as taken:
                # a 412 to our conditional write, or found first: uploaded before
                # a crash and not yet deleted, or someone else's object?
                got = taken.produced  # None: found before a byte was compressed
                comp = got if isinstance(got, Compressed) else produce(None)
                existing = self.storage.head(key, checksum=True)
                if existing is None:
                    return Outcome(name, "failed", key=key, message=(
                        f"{key}: the server refused to overwrite it, then HEAD found nothing"
                    ))  # fmt: skip
                same = self.storage.same_bytes(
                    existing, None, size=comp.size, sha256=comp.sha256,
                    part_sha256=comp.part_sha256,
                )  # fmt: skip
                verdict = judge(existing, comp, same_bytes=same, where=self.storage.describe())
                if not verdict.stored:
                    return self.quarantine(name, verdict.reason)
                problems = self.storage.settings_problems(existing)
                if problems:  # stored, but not the way the config asks: keep the file
                    return Outcome(name, "failed", key=key, message=(
                        f"{key} already exists at {self.storage.describe()}, but "
                        + "; ".join(problems)
                    ))  # fmt: skip
                out.kind = "exists"
                stored = existing.size
            out.bytes_in, out.bytes_out, out.packets = comp.pcap_bytes, comp.size, comp.packets
            out.compress_seconds = spent[0]
            # before the local copy goes: a failure or crash here retries it
            # (the upload then finds the object: "exists", and writes them again)
            entry = manifest_entry(key, opened, comp, stored, self.cfg.capture.rotate_seconds,
                                   keep)  # fmt: skip
            self._write_flows(name, entry, comp)
            self._write_entries(name, entry)
        except VerificationError as e:
            return Outcome(name, "failed", key=key, message=str(e))
        except StorageError as e:
            if self.stop.is_set():
                return Outcome(name, "cancelled")
            if e.code in PER_FILE_CODES:
                # about this file's key, not the destination: it would fail forever
                return self.quarantine(name, f"cannot be stored as {key}: {e}")
            return Outcome(name, "failed", key=key, message=str(e), dest_error=e)
        out.seconds = time.monotonic() - t0
        # The one line per file, logged before the delete: a kill between the two
        # must not leave a stored object that no journal line names.
        dest = self.storage.describe()
        if out.kind == "exists":
            log.info(
                "%s was already stored as %s (earlier run); removing the local copy",
                name, key, extra=fields(file=name, key=key, destination=dest),
            )  # fmt: skip
        else:
            log.info(
                "uploaded %s as %s: %d -> %d bytes in %.2f s%s",
                name, key, out.bytes_in, out.bytes_out, out.seconds,
                f" (keep {out.keep_id})" if out.keep_id else "",
                extra=fields(
                    keep_id=out.keep_id or None,
                    file=name, key=key, bytes_in=out.bytes_in, bytes_out=out.bytes_out,
                    seconds=round(out.seconds, 3), attempt=attempt, packets=out.packets,
                    compress_seconds=round(out.compress_seconds, 3), destination=dest,
                ),
            )  # fmt: skip
        # verified: now, and only now, the local copy may go
        try:
            # not a file put in its place meanwhile; gone: dropped by capture
            if not self.ready.unlink_if_same(name, opened.st):
                out.removed_by_capture = True
        except OSError as e:
            out.kind = "ignored"
            out.message = f"stored as {key} but cannot delete {path}: {e}"
        return out
