"""Make-before-break switches, and removing the packets they capture twice.

Removing packets captured twice during a make-before-break switch.

When rollcap replaces a running tcpdump (aligned rotation, quiet-link rotation,
reload with the same interface) it starts the new one first and stops the old
one only after both have been listening for more than a second, so no packet
is lost. The packets that arrived in that overlap are in both generations: at
the end of the old one and at the start of the new one, each possibly spread
over several files when -C rotated during the overlap. As each old file is
handed off we add a fingerprint of its tail (exact timestamp, and a hash of
lengths and bytes, of each record captured since shortly before the new
tcpdump was started) to a sidecar in work/, which survives a supervisor
restart. When a new file is handed off, its records are matched against that
tail and the matches removed.

The rule: a record is removed only where both sockets provably hold it, i.e. a
record of the old tail has the same bytes and the *same* timestamp. Matching is
a multiset per (timestamp, digest) class: with a copies in the old tail and b
in the new file, min(a, b) are removed from the new file, so max(a, b) stay.

Why the same timestamp proves the same packet: the kernel stamps a packet once,
in the skb, before it hands the skb to every packet socket of the interface
(netif_receive / dev_queue_xmit_nit), and af_packet copies that stamp into each
socket's ring. The stamp is taken only while some socket on the host asked for
software timestamps (the netstamp_needed static key), which a nano-precision
tcpdump does itself; the supervisor holds such a socket for its lifetime
(shared_timestamps, below, inherited by every tcpdump)
so a µs tcpdump gets it too.
Without it each socket reads the clock on its own and stamps differ by a few
µs: nothing pairs, duplicates stay, nothing is lost. Checked on this kernel:
two tcpdumps on one veth, 37,200 packets at 20k pps, received and sent
direction: identical stamps with the key on; without it 21 % (received) and
34 % (sent) of the µs stamps differed.
A file of µs resolution is matched at µs (libpcap truncates ns to µs), so a
reload that changes the precision still pairs.

Earlier versions paired a record with a copy of its bytes within 10 ms: on
traffic where identical frames recur closer than that (a looped replay, SPAN
copies, retransmissions, keepalives) a head record paired with the previous
copy, the pairing shifted by one period and the packets of that period that
only the new socket saw were removed (or it paired with a later copy and left
duplicates; docs/capture.md, "Aligned rotation on repetitive traffic").
Sidecars of that version (a JSON list of [float, digest]) are read as "no
sidecar": the new file keeps its duplicates, nothing is lost.

A new file that is all duplicates is dropped and the rest of the tail waits
for the next one. A mismatch only ever leaves duplicates.

Make-before-break: replacing a running tcpdump without losing a packet.

The new tcpdump is started first; once it listens, a record of the switch is
written (so a supervisor that dies during the overlap still strips the
duplicates after its restart), both run for OVERLAP seconds, then the old one
is stopped. As each old file is handed off, its tail's fingerprints go into the
new generation's sidecar (above), from which the hand-off
strips the new files' duplicate head: only records both tcpdumps hold with the
same kernel timestamp, which holds while software timestamps are on
(shared_timestamps).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import re
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, TypeVar

from rollcap.capture.stripworker import checkpoint
from rollcap.capture.tcpdump import Tcpdump
from rollcap.pcapfile import (
    GLOBAL_HEADER_LEN,
    RECORD_HEADER_LEN,
    PcapHeader,
    parse_header,
    record_ok,
    start_before,
)
from rollcap.spool.fs import BadEntry, Dir
from rollcap.spool.workname import WorkName, list_work

log = logging.getLogger("rollcap.capture")

# The new file is read this far past the tail's last timestamp: records of
# several CPUs reach a ring a little out of order, and a duplicate among them
# must still be seen. It bounds where to look, never what pairs.
LOOK_PAST_NS = 10_000_000
# Records of the old file older than "new tcpdump spawned" minus this are
# certainly not in the new file (its socket opened after we started it); the
# margin covers a kernel timestamp a little behind the wall clock we read.
# Both are CLOCK_REALTIME and a packet is stamped microseconds before its
# delivery, so a tenth of this would do; too small a margin leaves duplicates,
# never loses a packet. Every record after it is hashed: 0.25, not 1 s.
TAIL_MARGIN = 0.25
# The walk of the old file starts at a proved record stamped this much before
# the tail (records of several CPUs reach the ring a little out of order).
REORDER_NS = 50_000_000
# State files are read back as untrusted input: bounded and range-checked.
MAX_SIDECAR_BYTES = 64 * 1024 * 1024
MAX_GENERATION = 999_999_999
SIDECAR_FORMAT = 2  # 1 (a bare list of [float ts, digest]) paired within 10 ms
_DIGEST_RE = re.compile(r"[0-9a-f]{24}")
_TICKS = (1, 1000)  # ns per timestamp unit: a nano or a µs file
NS = 1_000_000_000
READ_CHUNK = 1 << 20
ENCODE_SLICE = 5000
PAIR_SLICE = 1 << 16
K = TypeVar("K")


@dataclass(frozen=True, slots=True)  # tens of thousands per switch at 20k pps
class Fingerprint:
    ns: int  # the record's timestamp, exactly as the file has it, in ns
    digest: str  # lengths and bytes
    tick: int = 1000  # ns per unit of the file's timestamps: 1000 (µs) or 1 (ns)

    @property
    def ts(self) -> float:
        return self.ns / NS

    def key(self, tick: int) -> tuple[int, str]:
        """The class this record pairs in, at a resolution tick no finer than its
        own (a ns stamp truncated to µs is what libpcap writes at µs)."""
        return self.ns // tick, self.digest


def iter_records(
    src: int | str | os.PathLike[str], since: float = 0.0, start: int | None = None
) -> Iterator[tuple[int, int, Fingerprint]]:
    """(offset, length, fingerprint) of each whole record with a timestamp >= since,
    of the file open on src (an fd, left open; or a path, for tests and tools).

    The walk starts at start, a record start (GLOBAL_HEADER_LEN: the first
    record); None: at a record proved near the end and stamped before since
    (rollcap.pcapfile.start_before) when since is given, so the cost of a
    tail is that of the tail, not of the file. Earlier records are skipped
    without reading their bytes: only the tail is hashed.
    """
    if not isinstance(src, int):
        fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
        try:
            yield from iter_records(fd, since, start)
        finally:
            os.close(fd)
        return
    header: PcapHeader = parse_header(os.pread(src, GLOBAL_HEADER_LEN, 0))
    unpack = struct.Struct(header.endian + "IIII").unpack_from
    per_s = header.ts_per_second
    tick = NS // per_s
    since_ns = math.floor(since * NS)
    size = os.fstat(src).st_size
    if start is None:
        start = GLOBAL_HEADER_LEN
        if since_ns > 0:
            start = start_before(src, header, since_ns - REORDER_NS)
    # read in chunks and hash slices of them: a tail is hundreds of thousands of
    # records, and two reads per record cost more than the hash
    little = header.endian == "<"  # then caplen, len are the bytes hashed, as they are
    pos, data, base = start, b"", start  # data holds the file's bytes from base on
    view = memoryview(data)
    while True:
        off = pos - base
        if off + RECORD_HEADER_LEN > len(data):
            checkpoint()  # a stop need not wait for the rest of a walk (stripworker)
            data, base, off = os.pread(src, READ_CHUNK, pos), pos, 0
            view = memoryview(data)
            if len(data) < RECORD_HEADER_LEN:
                return
        sec, frac, incl, orig = unpack(data, off)
        if not record_ok(frac, incl, orig, per_s):
            return  # garbage: the rest is a cut-off tail
        end = pos + RECORD_HEADER_LEN + incl
        if end > size:
            return  # cut off
        ns = sec * NS + frac * tick
        if ns >= since_ns:
            if off + RECORD_HEADER_LEN + incl > len(data):
                data = os.pread(src, max(READ_CHUNK, RECORD_HEADER_LEN + incl), pos)
                base, off, view = pos, 0, memoryview(data)
                if len(data) < RECORD_HEADER_LEN + incl:
                    return
            body = view[off + RECORD_HEADER_LEN : off + RECORD_HEADER_LEN + incl]
            if little:  # the same bytes as the packed (caplen, len) + body below
                h = hashlib.blake2b(view[off + 8 : off + RECORD_HEADER_LEN + incl],
                                    digest_size=12)  # fmt: skip
            else:
                h = hashlib.blake2b(struct.pack("<II", incl, orig), digest_size=12)
                h.update(body)
            yield pos, RECORD_HEADER_LEN + incl, Fingerprint(ns, h.hexdigest(), tick)
        pos = end


def tail_since(src: int | str | os.PathLike[str], since: float) -> list[Fingerprint]:
    return [fp for _o, _n, fp in iter_records(src, since - TAIL_MARGIN)]


def sidecar_name(new_generation: int) -> str:
    # A dot name: never matches a tcpdump output name, never handed off.
    return f".overlap-g{new_generation:06d}.json"


# The sidecar just written, parsed: the hand-off of the new file reads what the
# old one's wrote a moment before (hundreds of thousands of records at 200k
# packets/s). Keyed by the file's identity, so any other version of it (a
# restart, a file put in its place) is read from disk and checked as ever.
_written: dict[tuple[int, int, int, int], list[Fingerprint]] = {}


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def write_sidecar(d: Dir, name: str, tail: list[Fingerprint]) -> None:
    # one generation is one tcpdump, one resolution: the coarsest, should two meet
    tick = max((fp.tick for fp in tail), default=1000)
    # the same JSON as one dumps() of the document, encoded a slice at a time:
    # one C call over hundreds of thousands of records holds the GIL, and the
    # supervisor's loop waits for it (this runs on the strip worker)
    parts = [f'{{"format":{SIDECAR_FORMAT},"tick_ns":{tick},"records":['.encode()]
    for i in range(0, len(tail), ENCODE_SLICE):
        checkpoint()  # nothing written yet: a stopped strip leaves the sidecar as it was
        part = [[fp.ns, fp.digest] for fp in tail[i : i + ENCODE_SLICE]]
        parts.append((b"," if i else b"") + json.dumps(part, separators=(",", ":"))[1:-1].encode())
    parts.append(b"]}")
    d.write_atomic(name, b"".join(parts))
    st = d.lstat(name)
    _written.clear()  # one at a time: the strip worker does one switch after another
    if st is not None:
        _written[_identity(st)] = [Fingerprint(fp.ns, fp.digest, tick) for fp in tail]


def _exact(fp: Fingerprint) -> tuple[int, str]:
    return fp.ns, fp.digest


def _tally(items: list[Fingerprint], key: Callable[[Fingerprint], K]) -> Counter[K]:
    """Counter of key(item), a checkpoint (a stop) every PAIR_SLICE items."""
    counts: Counter[K] = Counter()
    for i in range(0, len(items), PAIR_SLICE):
        checkpoint()
        counts.update(key(x) for x in items[i : i + PAIR_SLICE])
    return counts


def append_sidecar(d: Dir, name: str, more: list[Fingerprint]) -> None:
    """Add the tail of one more old file; a file fingerprinted twice (the supervisor
    died before its hand-off) adds nothing the second time (its offsets are not
    kept, so by (timestamp, digest) class: the file's count of a class is added
    only where the sidecar holds fewer)."""
    have = read_sidecar(d, name) or []
    if not have:
        write_sidecar(d, name, more)
        return
    n_have = _tally(have, _exact)
    n_more = _tally(more, _exact)
    add: list[Fingerprint] = []
    for i, fp in enumerate(more):
        if not i % PAIR_SLICE:
            checkpoint()
        k = (fp.ns, fp.digest)
        if n_more[k] > n_have[k]:
            add.append(fp)
            n_more[k] -= 1
    write_sidecar(d, name, have + add)


def _ns(v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"not an integer: {v!r}")
    if not 0 <= v < 2**33 * NS:  # 1970 .. 2242: a pcap timestamp
        raise ValueError(f"out of range: {v!r}")
    return v


def _finite(v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ValueError(f"not a finite number: {v!r}")
    if not 0 <= v < 2**33:  # 1970 .. 2242: a pcap timestamp
        raise ValueError(f"out of range: {v!r}")
    return float(v)


def read_sidecar(d: Dir, name: str) -> list[Fingerprint] | None:
    """None when missing, not a well-formed sidecar, or one of an earlier version
    (its float timestamps cannot pair exactly): then nothing is stripped, a
    sidecar can only leave duplicates, never remove a packet."""
    try:
        st = d.lstat(name)
        if st is None:
            return None
        known = _written.get(_identity(st))
        if known is not None and st.st_uid == os.geteuid():
            return known
        data = d.read_small(name, {os.geteuid()}, MAX_SIDECAR_BYTES)
        if data is None:
            return None
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.get("format") != SIDECAR_FORMAT:
            return None
        tick = raw["tick_ns"]
        if tick not in _TICKS or isinstance(tick, bool):
            raise ValueError(f"tick_ns not one of {_TICKS}: {tick!r}")
        out = []
        for i, (ns, digest) in enumerate(raw["records"]):
            if not i % PAIR_SLICE:
                checkpoint()
            if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
                raise ValueError("bad digest")
            out.append(Fingerprint(_ns(ns), digest, tick))
        return out
    except (BadEntry, OSError, ValueError, TypeError, KeyError):
        return None


def remove(d: Dir, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        d.unlink(name)
    if name.startswith(".overlap-"):
        _written.clear()  # a sidecar done with: its fingerprints are not kept between switches


def pair_duplicates(
    tail: list[Fingerprint], head: list[Fingerprint]
) -> tuple[list[int], list[Fingerprint]]:
    """(indices of head that are duplicates, the tail records left unpaired).

    A head record pairs with a tail record of the same bytes and the same
    timestamp (at the coarser of the two resolutions): the kernel stamped that
    packet once for both sockets (module doc). Per (timestamp, digest) class,
    min(old count, new count) head records pair, in file order; a record that
    only one tcpdump got (a drop, a socket not attached yet or any more) has
    no partner and stays.
    """
    tick = max([1, *(t.tick for t in tail), *(h.tick for h in head)])
    left = _tally(tail, lambda t: t.key(tick))
    dups: list[int] = []
    for i, h in enumerate(head):
        if not i % PAIR_SLICE:
            checkpoint()
        k = h.key(tick)
        if left[k] > 0:
            left[k] -= 1
            dups.append(i)
    rest: list[Fingerprint] = []  # per class, as many as are left unpaired
    for i, t in enumerate(tail):
        if not i % PAIR_SLICE:
            checkpoint()
        k = t.key(tick)
        if left[k] > 0:
            left[k] -= 1
            rest.append(t)
    return dups, rest


@dataclass(frozen=True)
class Duplicates:
    records: list[tuple[int, int]]  # (offset, length) of each record captured twice
    rest: list[Fingerprint]  # the tail left for the generation's next file
    unpaired: int = 0  # records within the tail's time span that paired with none

    def __len__(self) -> int:
        return len(self.records)


def find_duplicates(fd: int, tail: list[Fingerprint]) -> Duplicates:
    """The records of the file on fd that the old generation also captured, and
    what is left of the tail for the generation's next file: nothing once the file
    has a packet later than the tail's last (the overlap ended in this file)."""
    if not tail:
        return Duplicates([], [])
    first, last = min(t.ns for t in tail), max(t.ns for t in tail)
    head: list[tuple[int, int, Fingerprint]] = []
    ended = False
    for item in iter_records(fd):
        if item[2].ns > last + LOOK_PAST_NS:
            ended = True
            break
        head.append(item)
    dups, rest = pair_duplicates(tail, [f for _o, _n, f in head])
    if head:  # the next file starts where this one ended: what is well before can't pair
        newest = max(f.ns for _o, _n, f in head)
        rest = [t for t in rest if t.ns >= newest - LOOK_PAST_NS]
    paired = set(dups)
    unpaired = sum(
        1 for i, (_o, _n, f) in enumerate(head) if i not in paired and first <= f.ns <= last
    )
    return Duplicates([head[i][:2] for i in dups], [] if ended else rest, unpaired)


def drop_records(d: Dir, name: str, fd: int, drop: list[tuple[int, int]]) -> int:
    """Replace name (open on fd) atomically by a copy without the records at drop
    ((offset, length), in file order); return an fd on the new file (fd itself is
    left open). The copy is an O_EXCL temp file in the same directory, never a
    fixed name."""
    tmp_fd, tmp = d.create_temp("." + name + ".", ".strip")
    try:
        with os.fdopen(os.dup(fd), "rb") as src, os.fdopen(os.dup(tmp_fd), "wb") as dst:
            src.seek(0)
            dst.write(src.read(GLOBAL_HEADER_LEN))
            pos = GLOBAL_HEADER_LEN
            for off, length in [*drop, (os.fstat(fd).st_size, 0)]:
                if off < pos:
                    raise ValueError(f"records to drop overlap or are out of order at {off}")
                _copy(src, dst, off - pos)
                src.seek(length, os.SEEK_CUR)
                pos = off + length
        st = os.fstat(fd)
        os.fchmod(tmp_fd, st.st_mode & 0o777)
        with contextlib.suppress(PermissionError):
            os.fchown(tmp_fd, st.st_uid, st.st_gid)
        d.rename(tmp, d, name)
    except BaseException:
        os.close(tmp_fd)
        with contextlib.suppress(OSError):
            d.unlink(tmp)
        raise
    return tmp_fd


def _copy(src: BinaryIO, dst: BinaryIO, n: int) -> None:
    while n > 0:
        chunk = src.read(min(n, 1 << 20))
        if not chunk:
            raise OSError(errno.EIO, "file shrank while its duplicates were stripped")
        dst.write(chunk)
        n -= len(chunk)


def switch_name(old_generation: int) -> str:
    """Record of a switch in progress: which generation replaces old_generation and
    when it was started (wall clock, like pcap timestamps)."""
    return f".switch-g{old_generation:06d}.json"


def write_switch(d: Dir, name: str, new_generation: int, since: float) -> None:
    # "listening_at": the key of earlier versions, whose records a restart reads
    data = {"new_generation": new_generation, "listening_at": since}
    d.write_atomic(name, json.dumps(data).encode())


def read_switch(d: Dir, name: str) -> tuple[int, float] | None:
    try:
        data = d.read_small(name, {os.geteuid()}, 4096)
        if data is None:
            return None
        raw = json.loads(data)
        gen = raw["new_generation"]
        if isinstance(gen, bool) or not isinstance(gen, int) or not 0 < gen <= MAX_GENERATION:
            raise ValueError(f"generation out of range: {gen!r}")
        return gen, _finite(raw["listening_at"])
    except (BadEntry, OSError, ValueError, TypeError, KeyError):
        return None



OVERLAP = 1.2  # both tcpdumps listening this long before the old one is stopped
LISTEN_TIMEOUT = 10.0


SO_TIMESTAMPNS = 35  # Linux's SOL_SOCKET option (the socket module does not name it)


class _Stamps:
    sock: socket.socket | None = None
    tried = False


def shared_timestamps() -> socket.socket | None:
    """A socket that asks for software receive timestamps, opened once and held
    for the process's life (and passed to every tcpdump, so it stays open while
    one runs even if the supervisor dies during an overlap): while one exists
    the kernel stamps each packet once, in its skb, before handing it to every
    packet socket (the netstamp_needed static key), so an old and a new tcpdump
    record the same timestamp for a packet both got, and the overlap pairs
    exactly. Without it a µs tcpdump's socket reads the clock itself (21 % of
    stamps differed by 1-50 µs between two tcpdumps here): nothing pairs,
    duplicates stay, nothing is lost."""
    if _Stamps.tried:
        return _Stamps.sock
    _Stamps.tried = True
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    except OSError as e:
        log.warning("cannot hold a timestamping socket (%s): a switch may keep duplicates", e)
        return None
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError as e:
        s.close()
        log.warning("cannot turn on software timestamps (%s): a switch may keep duplicates", e)
        return None
    _Stamps.sock = s
    return s


def stamp_fds() -> tuple[int, ...]:
    """The fds a tcpdump inherits to keep the shared timestamps on (see above)."""
    s = shared_timestamps()
    return (s.fileno(),) if s is not None else ()


@dataclass
class Overlaps:
    """Switches whose old generation is not fully handed off yet."""

    work: Dir
    next_of: dict[int, int] = field(default_factory=dict)  # old generation -> new one
    since: dict[int, float] = field(default_factory=dict)  # generation -> spawned (wall clock)
    stamps: socket.socket | None = field(default_factory=shared_timestamps, repr=False)

    def begin(self, old_gen: int, new_gen: int, since: float) -> None:
        self.since[new_gen] = since
        self.next_of[old_gen] = new_gen
        # on disk too: a supervisor that dies during the overlap still strips duplicates
        with contextlib.suppress(OSError):
            write_switch(self.work, switch_name(old_gen), new_gen, since)

    def load(self) -> None:
        """Overlaps a crashed supervisor left unfinished."""
        for w, _n in list_work(self.work):
            rec = read_switch(self.work, switch_name(w.generation))
            if rec is not None:
                new_gen, since = rec
                self.next_of[w.generation] = new_gen
                self.since.setdefault(new_gen, since)

    def fingerprint(self, w: WorkName, name: str, owners: set[int]) -> None:
        """The tail of this old file into the new generation's sidecar (on the strip
        worker: it reads only this file and writes only that sidecar)."""
        new_gen = self.next_of.get(w.generation)
        since = None if new_gen is None else self.since.get(new_gen)
        if new_gen is None or since is None:
            return
        tail = []
        try:
            fd = self.work.open(name, owners)
        except BadEntry:
            pass  # the hand-off quarantines it
        else:
            try:
                tail = tail_since(fd, since)
            except ValueError:  # not a pcap: the hand-off quarantines it
                tail = []
            finally:
                os.close(fd)
        if tail:
            append_sidecar(self.work, sidecar_name(new_gen), tail)

    def ended(self, w: WorkName, last: bool) -> None:
        """After the last file of an old generation is fingerprinted: the switch is done."""
        if not last or w.generation not in self.next_of:
            return
        new_gen = self.next_of.pop(w.generation)
        self.since.pop(new_gen, None)  # one entry per switch would pile up
        remove(self.work, switch_name(w.generation))


@dataclass(frozen=True)
class Switched:
    new: Tcpdump | None  # None: the new one did not start; the old one runs on
    old_status: int | None
    error: str


MAX_UNTIL = 3.0  # an aligned switch never waits longer than this for its boundary
TICK_DURING = 0.1  # hand-off and budget checks during the overlap


def make_before_break(
    old: Tcpdump, spawn: Callable[[], Tcpdump], overlaps: Overlaps, until: float | None = None
) -> Switched:
    """until: wall-clock time (a rotate_align boundary) before which the old one is
    not stopped; the overlap is OVERLAP seconds at least either way."""
    return make_before_break_many([(old, spawn)], overlaps, until)[0]


def make_before_break_many(
    pairs: list[tuple[Tcpdump, Callable[[], Tcpdump]]],
    overlaps: Overlaps,
    until: float | None = None,
    tick: Callable[[set[int]], bool] | None = None,
) -> list[Switched]:
    """Several switches with one overlap (interfaces due at the same boundary):
    every new tcpdump starts and listens, all run for the overlap, then every old
    one whose successor listens is stopped.

    tick(live generations) runs every TICK_DURING seconds of the overlap (the
    hand-off and the spool budget must not wait for an aligned boundary on a
    busy link); True ends the wait at once (the budget pauses capture: the
    caller stops everything)."""
    news = [spawn() for _old, spawn in pairs]
    out: list[Switched | None] = []
    for (old, _spawn), new in zip(pairs, news, strict=True):
        if not new.wait_listening(LISTEN_TIMEOUT):
            new.stop()
            out.append(Switched(None, None, f"new tcpdump did not start: {new.exit_message()}"))
            continue
        overlaps.begin(old.generation, new.generation, new.spawned_at)
        out.append(None)
    if any(r is None for r in out):
        wait = OVERLAP
        if until is not None:
            wait = min(max(OVERLAP, until - time.time()), MAX_UNTIL)
        end = time.monotonic() + wait
        live = {old.generation for old, _spawn in pairs} | {new.generation for new in news}
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(TICK_DURING, left))
            if tick is not None and tick(live):
                break
    return [
        r if r is not None else Switched(new, old.stop(), "")
        for (old, _spawn), new, r in zip(pairs, news, out, strict=True)
    ]
