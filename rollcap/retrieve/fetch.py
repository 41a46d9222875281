"""`rollcap fetch`: download, window, filter and merge captures into one pcap.

Each object goes through its own pipeline in a bounded thread pool:
download to a temp file, stream-decompress while keeping only the packets in
[since, until), optionally through tcpdump's BPF (a pipe into it). The
pieces are then written in timestamp order: copied whole where they overlap
no other in time (into a file output already while later ones download:
inorder.py), merged record by record with a bounded number of open files
where they do (merge.py). Everything happens
in a hidden temp directory next to the output (same filesystem), so the
output appears complete by one rename, or not at all. To stdout (``-o -``)
the merge streams straight into the pipe (temp files then go to $TMPDIR).

Bucket objects and manifest entries are untrusted: a download stops at the
size the entry records, and an object of another size is refused (one error
line naming it) while the rest of the fetch goes on; an object is never
decompressed past the pcap bytes it records. So the temp directory never
holds more than ``disk_need()``, which the free-space check asks for first.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import defaultdict
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol, cast

import zstandard

from rollcap.errors import RollcapError
from rollcap.pcapfile import GLOBAL_HEADER_LEN, NotPcapError, PcapHeader
from rollcap.retrieve import bpf
from rollcap.retrieve.catalog import Capture
from rollcap.retrieve.inorder import InOrder
from rollcap.retrieve.merge import Part, write_ordered
from rollcap.retrieve.output import Output, place, resolve_output
from rollcap.retrieve.progress import Progress
from rollcap.retrieve.records import (
    RecordReader,
    TooLarge,
    file_header,
    open_records,
    scan_window,
)
from rollcap.storage.base import SizeMismatch, StorageError
from rollcap.timestamps import NS, from_datetime

log = logging.getLogger("rollcap.retrieve")

_GONE = {"NoSuchKey", "404", "ENOENT"}
LINKTYPE_NAMES = {1: "EN10MB", 101: "RAW", 113: "LINUX_SLL", 276: "LINUX_SLL2"}


class Source(Protocol):
    """Where fetch reads objects: a Storage, or this host's ring (fetch --local)."""

    def download(self, key: str, dest: Path, *, size: int | None = None) -> None: ...


@dataclass
class _Piece:
    capture: Capture
    header: PcapHeader
    part: Part | None  # None: no packet of this object is in the window/filter
    truncated: bool


@dataclass
class _Refused:
    capture: Capture
    reason: str  # one line naming the object


@dataclass
class FetchResult:
    output: Output
    packets: int = 0
    pcap_bytes: int = 0  # what was written: the uncompressed size
    objects: int = 0  # objects fetched (not refused, not gone)
    downloaded_bytes: int = 0
    linktypes: list[int] = field(default_factory=list)
    pcapng: bool = False
    refused: list[str] = field(default_factory=list)  # one line each, naming the object


def _linktype_name(lt: int) -> str:
    return f"{lt} ({LINKTYPE_NAMES[lt]})" if lt in LINKTYPE_NAMES else str(lt)


# pcapng (mergecap) stores a packet in 32 bytes of block plus its data padded
# to 4, where classic pcap needs 16: at most this much more per packet, plus
# the section and interface headers with mergecap's options.
PCAPNG_PER_PACKET = 20
PCAPNG_HEADERS = 4096


@dataclass(frozen=True)
class DiskNeed:
    """The most a fetch puts in its temp directory, by the recorded sizes.

    downloads: at most ``workers`` at once, each stopped at its recorded size:
    the ``workers`` largest recorded sizes (at most workers x the largest).
    pieces: each capture's window, at most its recorded pcap bytes (it is
    never decompressed past them). output: the merge of the pieces, their
    records under one header (pcapng: a larger block per packet). With a BPF
    filter, tcpdump's output takes the piece's place (no larger than it), and the
    merge's intermediate files replace the pieces they merge, so neither
    adds to downloads + pieces + output."""

    downloads: int
    pieces: int
    output: int

    @property
    def total(self) -> int:
        return self.downloads + self.pieces + self.output


def disk_need(captures: list[Capture], workers: int, *, max_bytes: int | None = None,
              pcapng: bool = False) -> DiskNeed:  # fmt: skip
    sizes = sorted((c.size for c in captures), reverse=True)
    pieces = [_max_pcap_bytes(c, max_bytes) for c in captures]
    output = sum(pieces)
    if pcapng:
        # a record is at least its 16-byte header: bounds the packets not recorded
        packets = sum(c.packets if c.packets is not None else p // 16
                      for c, p in zip(captures, pieces, strict=True))  # fmt: skip
        linktypes = len({c.linktype for c in captures}) or 1
        output += PCAPNG_PER_PACKET * packets + PCAPNG_HEADERS * linktypes
    return DiskNeed(sum(sizes[: max(1, workers)]), sum(pieces), output)


def check_free_space(directory: Path, captures: list[Capture], workers: int, *,
                     max_bytes: int | None = None, pcapng: bool = False) -> None:  # fmt: skip
    """Refuse, before anything is downloaded, a fetch that may not fit (disk_need)."""
    need = disk_need(captures, workers, max_bytes=max_bytes, pcapng=pcapng).total
    free = shutil.disk_usage(directory).free
    if need > free:
        raise RollcapError(
            f"not enough free space in {directory} for this fetch: up to {need:,} bytes "
            f"needed, {free:,} free (narrow the time window or the hosts, or write elsewhere)"
        )


def fetch(
    storage: Source,
    captures: list[Capture],
    *,
    since: datetime,
    until: datetime,
    output: Output | Path,
    bpf_filter: str = "",
    tcpdump: str = "tcpdump",
    workers: int = 4,
    pcapng: bool = False,
    progress: Progress | None = None,
    stdout: BinaryIO | None = None,
    max_bytes: int | None = None,
    window_ns: tuple[int, int] | None = None,
) -> FetchResult:
    """A Path output may be replaced (the library's callers chose it); the CLI
    passes an Output checked by resolve_output. max_bytes (--max-bytes) bounds
    what the fetch may decompress: refused up front when the objects record
    more in all, and each object is stopped past it. window_ns: the exact
    [since, until) in epoch ns (the CLI's, to the ns); default since/until."""
    if window_ns is None:
        window_ns = (from_datetime(since), from_datetime(until))
    if isinstance(output, Path):
        output = resolve_output(str(output), force=True)
    if bpf_filter:
        tcpdump = check_bpf(captures, bpf_filter, tcpdump)
    where = None if output.path is None else output.path.parent
    try:
        workdir = Path(tempfile.mkdtemp(prefix=".rollcap-fetch-", dir=where))
    except OSError as e:
        raise RollcapError(
            f"-o {output.describe()}: cannot create a temp directory in "
            f"{where or tempfile.gettempdir()}: {e.strerror}"
        ) from None
    inorder = None
    try:
        check_max_bytes(captures, max_bytes)
        check_free_space(workdir, captures, workers, max_bytes=max_bytes, pcapng=pcapng)
        order = sorted(range(len(captures)), key=lambda i: _start_ns(captures[i]))
        # a file output is written while the later pieces download (inorder.py)
        if not (pcapng or output.is_stdout):
            inorder = InOrder(workdir / "output.pcap", order)
        done = _fetch_all(storage, captures, order, workdir, window_ns, bpf_filter,
                          tcpdump, workers, progress, max_bytes, inorder)  # fmt: skip
        pieces = [p for p in done if isinstance(p, _Piece)]
        if progress:
            progress.message("merging ...")
        sink = stdout if stdout is not None else sys.stdout.buffer
        result = _write_output(pieces, workdir, output, pcapng, sink, inorder)
        result.objects = len(pieces)
        result.downloaded_bytes = sum(p.capture.size for p in pieces)
        result.refused = [r.reason for r in done if isinstance(r, _Refused)]
        return result
    finally:
        if inorder is not None:
            inorder.close()
        if progress:
            progress.done()
        shutil.rmtree(workdir, ignore_errors=True)


def check_bpf(captures: list[Capture], bpf_filter: str, tcpdump: str) -> str:
    """Compile the filter for each link type of the captures (FilterError if
    tcpdump refuses it); the tcpdump binary to filter with."""
    tcpdump = bpf.tcpdump_binary(tcpdump)
    for lt in sorted({c.linktype for c in captures if c.linktype is not None} or {1}):
        bpf.check_filter(tcpdump, bpf_filter, lt)
    return tcpdump


def _start_ns(c: Capture) -> int:
    if c.first_ns is not None:
        return c.first_ns
    return from_datetime(c.start) if c.start is not None else 0


def _fetch_all(storage: Source, captures: list[Capture], order: list[int], workdir: Path,
               window_ns: tuple[int, int], bpf_filter: str, tcpdump: str, workers: int,
               progress: Progress | None, max_bytes: int | None, inorder: InOrder | None
               ) -> list[_Piece | _Refused]:  # fmt: skip
    since_ns, until_ns = window_ns

    def refuse(cap: Capture, reason: str) -> _Refused:
        # the entry (or object) lies: this object only; the others are still fetched
        log.error("%s", reason)
        if progress:
            progress.advance(cap.size)
        return _Refused(cap, reason)

    def one(idx: int, cap: Capture) -> _Piece | _Refused | None:
        dl = workdir / f"{idx:06d}.download"
        win = workdir / f"{idx:06d}.pcap"
        try:
            storage.download(cap.key, dl, size=cap.size)
        except SizeMismatch as e:
            return refuse(cap, f"{e}, not fetched")
        except StorageError as e:
            if e.code not in _GONE:
                raise
            # a file:// ring (or an S3 lifecycle rule) removed it since the listing
            log.warning("%s disappeared before it was downloaded; skipped", cap.key)
            if progress:
                progress.advance(cap.size)
            return None
        if bpf_filter:  # the window goes straight into tcpdump: no unfiltered copy on disk
            win = workdir / f"{idx:06d}.bpf.pcap"
        try:
            with open_records(dl, _max_pcap_bytes(cap, max_bytes)) as reader:
                header = reader.header
                if bpf_filter:
                    with bpf.filtering(tcpdump, bpf_filter, win, name=cap.key,
                                       nanos=header.ts_per_second == NS) as pipe:  # fmt: skip
                        pipe.write(reader.raw_header)
                        kept = scan_window(reader, pipe, since_ns, until_ns)
                else:
                    with open(win, "wb") as out:
                        out.write(reader.raw_header)
                        kept = scan_window(reader, out, since_ns, until_ns)
                truncated = reader.truncated
        except TooLarge as e:
            dl.unlink()
            win.unlink(missing_ok=True)
            limit = _max_pcap_bytes(cap)
            if max_bytes is not None and max_bytes < limit:  # the operator's limit
                raise RollcapError(f"{cap.key}: {e} (--max-bytes {max_bytes}); not fetched"
                                   ) from None  # fmt: skip
            why = (f"its metadata records {cap.pcap_bytes} pcap bytes" if cap.pcap_bytes is not None
                   else f"{MAX_RATIO} times its stored size")  # fmt: skip
            return refuse(cap, f"{cap.key}: {e} ({why}); refused, not fetched")
        except (NotPcapError, EOFError, zstandard.ZstdError, gzip.BadGzipFile) as e:
            raise RollcapError(f"{cap.key}: not a readable capture: {e}") from None
        dl.unlink()
        if truncated:
            log.warning("%s ends in a cut-off packet record; kept the packets before it", cap.key)
        part: Part | None = None
        if bpf_filter:
            part = _part_of(win) if kept.packets else None
        elif kept.first is not None and kept.last is not None:
            part = Part(win, kept.first, kept.last, kept.packets, kept.low, kept.high)
        if part is None:
            win.unlink(missing_ok=True)
        if progress:
            progress.advance(cap.size)
        return _Piece(cap, header, part, truncated)

    def one_in_order(idx: int, cap: Capture) -> _Piece | _Refused | None:
        got = one(idx, cap)
        if inorder is not None:
            piece = got if isinstance(got, _Piece) else None
            inorder.done(idx, piece.header if piece else None, piece.part if piece else None)
        return got

    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        # SIGTERM/SIGINT raise in the main thread wherever it is; inside submit()'s
        # `with lock:` that can leave the pool's lock held (the with statement is
        # not signal-safe), and shutdown() below then waits for ever. Held back
        # while queueing, they are handled right after, outside any lock.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            # the earliest first: their pieces can be appended while the rest download
            by_idx = {i: pool.submit(one_in_order, i, captures[i]) for i in order}
            futures = [by_idx[i] for i in range(len(captures))]
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for f in done:
            exc = f.exception()
            if exc is not None:
                raise exc
        return [p for f in futures if (p := f.result()) is not None]
    finally:
        # on an error or Ctrl-C, do not start the downloads still queued
        pool.shutdown(wait=True, cancel_futures=True)


# Without a recorded size, a capture may decompress to this many times its
# stored size (zstd on pcap: about 5x measured; anything far beyond is a bomb).
MAX_RATIO = 100


def _max_pcap_bytes(cap: Capture, max_bytes: int | None = None) -> int:
    if cap.pcap_bytes is not None and cap.pcap_bytes >= 0:
        limit = cap.pcap_bytes
    else:
        limit = max(cap.size, 1) * MAX_RATIO + GLOBAL_HEADER_LEN
    return limit if max_bytes is None else min(limit, max_bytes)


def check_max_bytes(captures: list[Capture], max_bytes: int | None) -> None:
    """--max-bytes: refuse, before any download, a fetch whose objects record more."""
    if max_bytes is None:
        return
    recorded = sum(c.pcap_bytes for c in captures if c.pcap_bytes is not None)
    if recorded > max_bytes:
        raise RollcapError(
            f"--max-bytes {max_bytes:,}: the {len(captures)} captures in the window hold "
            f"{recorded:,} pcap bytes (narrow the window, the hosts, or raise --max-bytes)"
        )


def _part_of(path: Path) -> Part | None:
    with open(path, "rb") as f:
        w = scan_window(RecordReader(f, path.name), None, -(1 << 63), 1 << 63)
    if w.first is None or w.last is None:
        path.unlink()
        return None
    return Part(path, w.first, w.last, w.packets, w.low, w.high)


class _Counting:
    """A write-only stream that counts what passes through (stdout's size)."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.n = 0

    def write(self, b: bytes) -> int:
        self.f.write(b)
        self.n += len(b)
        return len(b)


def _write_output(pieces: list[_Piece], workdir: Path, output: Output, pcapng: bool,
                  sink: BinaryIO, inorder: InOrder | None = None) -> FetchResult:  # fmt: skip
    by_linktype: dict[int, list[_Piece]] = defaultdict(list)
    for p in pieces:
        by_linktype[p.header.linktype].append(p)
    linktypes = sorted(by_linktype)
    if len(linktypes) > 1 and not pcapng:
        detail = "; ".join(
            f"{_linktype_name(lt)}: "
            + ", ".join(sorted({f"{p.capture.host}/{p.capture.iface}" for p in by_linktype[lt]}))
            for lt in linktypes
        )
        raise RollcapError(
            f"the captures have different link types ({detail}); one classic pcap holds one "
            "link type: narrow the fetch with --host/--interface, or pass --pcapng to write "
            "pcapng (via mergecap)"
        )
    tmp = workdir / "output.pcap"
    result = FetchResult(output, linktypes=linktypes, pcapng=pcapng)
    if pcapng:
        mergecap = shutil.which("mergecap")
        if mergecap is None:
            raise RollcapError("--pcapng needs mergecap (Debian package wireshark-common)")
        inputs = []
        for lt in linktypes:
            path = workdir / f"linktype-{lt}.pcap"
            result.packets += _merge_group(by_linktype[lt], workdir, path)
            inputs.append(str(path))
        proc = subprocess.run([mergecap, "-F", "pcapng", "-w", str(tmp), "--", *inputs],
                           stderr=subprocess.PIPE, text=True)  # fmt: skip
        if proc.returncode != 0:
            raise RollcapError(f"mergecap failed: {proc.stderr.strip()}")
    elif output.is_stdout:
        # streamed: the reader (tcpdump -r -) sees packets while the merge runs
        counted = _Counting(sink)
        result.packets = _merge_group(pieces, workdir, counted)
        sink.flush()
        result.pcap_bytes = counted.n
        return result
    else:
        linktype, snaplen, nanos = _format_of(pieces)
        parts = [p.part for p in pieces if p.part is not None]
        head = file_header(linktype=linktype, snaplen=snaplen, nanos=nanos)
        n = None if inorder is None else inorder.complete(parts, head, nanos)
        if n is not None:  # already written, in order
            result.packets = n
            for part in parts:
                part.path.unlink()
        else:
            result.packets = _merge_group(pieces, workdir, tmp)
    if output.is_stdout:  # pcapng via mergecap: copied in bounded chunks
        counted = _Counting(sink)
        with open(tmp, "rb") as f:
            shutil.copyfileobj(f, cast(BinaryIO, counted), 1 << 20)
        sink.flush()
        result.pcap_bytes = counted.n
        return result
    assert output.path is not None
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
        result.pcap_bytes = os.fstat(f.fileno()).st_size
    os.chmod(tmp, 0o600)  # captures are never world-readable
    place(tmp, output)
    dfd = os.open(output.path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return result


def _format_of(pieces: list[_Piece]) -> tuple[int, int, bool]:
    """Link type, snaplen and precision (nanos) of the merged output."""
    linktype = pieces[0].header.linktype if pieces else 1
    snaplen = max((p.header.snaplen for p in pieces), default=262144)
    return linktype, snaplen, any(p.header.ts_per_second == NS for p in pieces)


def _merge_group(pieces: list[_Piece], workdir: Path, dest: Path | _Counting) -> int:
    linktype, snaplen, nanos = _format_of(pieces)
    parts = [p.part for p in pieces if p.part is not None]
    # write_ordered removes each piece (or the intermediate file replacing it)
    # once written, so pcapng's mergecap runs beside the merged groups only (disk_need)
    if isinstance(dest, _Counting):
        return write_ordered(cast(BinaryIO, dest), parts, workdir, linktype=linktype,
                             snaplen=snaplen, nanos=nanos)  # fmt: skip
    with open(dest, "wb") as f:
        return write_ordered(f, parts, workdir, linktype=linktype, snaplen=snaplen, nanos=nanos)
