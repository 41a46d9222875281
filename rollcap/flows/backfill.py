"""`rollcap index`: flow summaries for captures stored without one (the index
was off, or the offload predates it), written as the offload writes them.

Per capture of the window (the selection `rollcap list` makes: manifest
entries, and the listing for hosts without them):

- skipped when its summary exists: one listing per home slot (and host, with
  --host) tells which captures have one, so a second run, or a run after an
  interruption, writes only what is still missing;
- else downloaded into a private temp directory (at most its recorded size),
  decompressed as a stream, and summarised by the offload's own Summariser,
  in the offload's chunk size; the packet count it walked must equal what the
  capture's entry or metadata records, or nothing is written;
- the summary is written by index.write_summary under the name the offload
  would have used (the capture's manifest entry name): write-once, the same
  bytes for the same capture, so a rerun or a race with another backfill is
  harmless.

Memory: one decompression buffer and one summary (at most
offload.flow_index_max_flows flows) per worker, and one home slot's listing
per worker; the window's captures come host by host (select.py).
"""

from __future__ import annotations

import math
import tempfile
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

import zstandard

from rollcap.flows import index as flowindex
from rollcap.flows.summary import FlowSummary, Summariser
from rollcap.offload.compress import CHUNK
from rollcap.pcapfile import GLOBAL_HEADER_LEN, NotPcapError, RecordWalker, parse_header
from rollcap.retrieve.catalog import Capture
from rollcap.retrieve.records import open_decompressed
from rollcap.storage import manifest
from rollcap.storage.base import Storage, StorageError
from rollcap.timestamps import NS

BackfillKind = Literal["written", "exists", "skipped", "failed"]


@dataclass(frozen=True)
class Backfilled:
    """What `rollcap index` did with one capture."""

    key: str  # the capture's key
    kind: BackfillKind
    detail: str = ""
    flows: int = 0


@dataclass
class Counts:
    written: int = 0
    exists: int = 0
    skipped: int = 0
    failed: int = 0
    flows: int = 0
    problems: list[Backfilled] = field(default_factory=list)

    def add(self, o: Backfilled) -> None:
        setattr(self, o.kind, getattr(self, o.kind) + 1)
        self.flows += o.flows
        if o.kind in ("skipped", "failed"):
            self.problems.append(o)


def entry_for(c: Capture) -> manifest.Entry | None:
    """The manifest entry the offload wrote (or would have written) for c,
    whose name is its summary's; None without the rollcap metadata it needs."""
    if (c.start is None or c.first_ns is None or c.last_ns is None or c.packets is None
            or c.pcap_bytes is None or c.linktype is None):  # fmt: skip
        return None
    # a listed object (no entry): its close time is unknown; its last packet stands in
    closed = int(c.end_ts) if c.end_ts is not None else math.ceil(c.last_ns / NS)
    return manifest.Entry(
        key=c.key, host=c.host, iface=c.iface, opened=c.start, closed_ts=closed,
        first_ns=c.first_ns, last_ns=c.last_ns, packets=c.packets, pcap_bytes=c.pcap_bytes,
        size=c.size, linktype=c.linktype,
    )  # fmt: skip


class Backfill:
    def __init__(self, storage: Storage, *, prefix: str, max_flows: int,
                 hosts: list[str] | None = None, workers: int = 2) -> None:  # fmt: skip
        self.storage = storage
        self.prefix = prefix
        self.max_flows = max_flows
        self.hosts = hosts
        self.workers = max(1, workers)
        self._slots: OrderedDict[tuple[datetime, str], set[str]] = OrderedDict()
        self._lock = threading.Lock()

    def _summarised(self, e: manifest.Entry) -> bool:
        """Whether e's capture has a summary: its home slot listed once (for
        its host with --host, else fleet-wide), a few slots kept."""
        slot = flowindex.home_slot(e)
        scope = e.host + "~" if self.hosts else ""
        with self._lock:
            have = self._slots.get((slot, scope))
            if have is not None:
                self._slots.move_to_end((slot, scope))
                return e.key in have
        have = set()
        for info in self.storage.list(flowindex.slot_prefix(self.prefix, slot) + scope):
            got = flowindex.parse_key(info.key, self.prefix)
            if got is not None:
                have.add(got.key)
        with self._lock:
            self._slots[(slot, scope)] = have
            while len(self._slots) > 4 * self.workers + 4:
                self._slots.popitem(last=False)
        return e.key in have

    def one(self, c: Capture) -> Backfilled:
        e = entry_for(c)
        if e is None or not e.packets:
            return Backfilled(c.key, "skipped", "no rollcap metadata (packets, times): not indexed")
        try:
            if self._summarised(e):
                return Backfilled(c.key, "exists")
            with tempfile.TemporaryDirectory(prefix="rollcap-index-") as tmp:
                path = Path(tmp) / "capture"
                self.storage.download(c.key, path, size=c.size)
                summary, packets = summarise(path, self.max_flows)
            if packets != e.packets:
                return Backfilled(c.key, "failed", f"holds {packets} packets, its entry records "
                                                f"{e.packets}: no summary written")  # fmt: skip
            flowindex.write_summary(self.storage, e, summary, self.prefix)
        except StorageError as err:
            return Backfilled(c.key, "failed", str(err))
        except (OSError, ValueError, EOFError, zlib.error, zstandard.ZstdError) as err:
            # not a pcap, a broken stream
            return Backfilled(c.key, "failed", f"cannot read it: {err}")
        return Backfilled(c.key, "written", flows=len(summary.flows))

    def run(self, captures: Iterable[Capture]) -> Iterator[Backfilled]:
        """Outcomes in the captures' order, at most 2 x workers in flight."""
        pending: list[Future[Backfilled]] = []
        with ThreadPoolExecutor(self.workers) as pool:
            for c in captures:
                pending.append(pool.submit(self.one, c))
                while len(pending) > 2 * self.workers:
                    yield pending.pop(0).result()
            for f in pending:
                yield f.result()


def summarise(path: Path, max_flows: int) -> tuple[FlowSummary, int]:
    """The summary of a stored capture (zstd, gzip or plain), fed in the
    offload's chunks, and the packets its records hold."""
    with open_decompressed(path) as f:
        head = f.read(GLOBAL_HEADER_LEN)
        try:
            header = parse_header(head)
        except NotPcapError as err:
            raise ValueError(str(err)) from None
        s = Summariser(header, max_flows)
        walker = RecordWalker(header)
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            view = memoryview(chunk)
            s.feed_walked(view, walker.feed(view))  # one walk, as in the offload
        packets, _first, _last = walker.finish()
    return s.finish(), packets
