"""Make-before-break switches, and removing the packets they capture twice.

When rollcap replaces a running tcpdump (aligned rotation, quiet-link rotation,
reload with the same interface) it starts the new one first and stops the old
one only after both have been listening for more than a second, so no packet
is lost. The packets that arrived in that overlap are in both generations: at
the end of the old one and at the start of the new one, each possibly spread
over several files when -C rotated during the overlap. As each old file is
handed off we append a fingerprint of its tail (exact timestamp, and a hash of
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

The cost is a small constant per record (at 350k packets/s an overlap is half
a million records on each side, and -C cuts a file every 0.3 s): a record's
fingerprint is one 20-byte key (Tail), the pairing a count of keys, and the
sidecar a binary file of keys that each old file's tail is appended to, never
rewritten (SIDECAR_FORMAT). A file fingerprinted twice (the supervisor died
before its hand-off) adds nothing the second time: the sidecar names the files
it holds. Sidecars of earlier formats (JSON) are read as "no sidecar": the new
file keeps its duplicates, nothing is lost.

A new file that is all duplicates is dropped and the rest of the tail waits
for the next one. A mismatch only ever leaves duplicates: whatever a sidecar
lacks (torn, malformed, older, over its size bound) can only pair fewer.

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
_TICKS = (1, 1000)  # ns per timestamp unit: a nano or a µs file
NS = 1_000_000_000
READ_CHUNK = 1 << 20
PAIR_SLICE = 1 << 16  # records paired between two checkpoints

# A record's key: its timestamp in units of the pairing tick (big-endian, so
# keys sort by time and a bound on time is a bound on bytes), then a digest of
# its lengths and bytes.
STAMP = struct.Struct(">Q")
DIGEST_LEN = 12
KEY_LEN = STAMP.size + DIGEST_LEN
MAX_STAMP_S = 2**33  # 1970 .. 2242: a pcap timestamp
_HASH = hashlib.blake2b(digest_size=DIGEST_LEN)  # copied per record: cheaper than a new one
_split_keys = re.compile(rb".{%d}" % KEY_LEN, re.DOTALL).findall

# The sidecar (format 3; 2 was JSON of [ns, hex digest], 1 a list of [float,
# digest] paired within 10 ms: both read as "no sidecar"): a header, then
# sections appended one per old file: (tick_ns, name length, record count),
# the name, count keys. A section with no name holds what a new file's strip
# left of the tail; one with a name and no keys marks a file whose records it
# holds. A section cut short (a write interrupted) is ignored and, on the next
# append, cut off.
SIDECAR_FORMAT = 3
SIDECAR_MAGIC = b"rollcap-ovlp"
_HEADER = struct.Struct(">12sI")
_SECTION = struct.Struct(">IHI")
MAX_NAME = 255


@dataclass(frozen=True, slots=True)  # for iter_records (tests, tools): not per record of a strip
class Fingerprint:
    ns: int  # the record's timestamp, exactly as the file has it, in ns
    digest: str  # lengths and bytes, hex
    tick: int = 1000  # ns per unit of the file's timestamps: 1000 (µs) or 1 (ns)

    @property
    def ts(self) -> float:
        return self.ns / NS


@dataclass(frozen=True)
class Tail:
    """Fingerprints of records, as keys (KEY_LEN bytes: the timestamp in units of
    tick, then the digest), in any order; files: the old files (work names)
    whose records are in."""

    keys: list[bytes] = field(default_factory=list)
    tick: int = 1000  # ns per timestamp unit of the keys: 1000 (µs) or 1 (ns)
    files: frozenset[str] = frozenset()

    def __len__(self) -> int:
        return len(self.keys)

    def at(self, tick: int) -> list[bytes]:
        """The keys at a resolution no finer than their own (a ns stamp truncated to
        µs is what libpcap writes at µs)."""
        if tick == self.tick:
            return self.keys
        f = tick // self.tick
        pack, unpack = STAMP.pack, STAMP.unpack_from
        return [pack(unpack(k)[0] // f) + k[STAMP.size :] for k in self.keys]

    def span_ns(self) -> tuple[int, int]:
        """The first and last record's timestamp, in ns."""
        return (STAMP.unpack_from(min(self.keys))[0] * self.tick,
                STAMP.unpack_from(max(self.keys))[0] * self.tick)  # fmt: skip


def _walk(
    fd: int, header: PcapHeader, start: int, since_ns: int, tick: int,
    until_ns: int | None = None, offsets: list[int] | None = None,
) -> tuple[list[bytes], bool, int]:  # fmt: skip
    """(keys at tick of the whole records from start on stamped >= since_ns, whether
    a record stamped after until_ns ended the walk, where the walk stopped).
    offsets: gets each keyed record's offset (with since_ns 0 the records are
    contiguous: each one ends where the next one starts, the last where the
    walk stopped). Records before since_ns are
    skipped without reading their bytes; one loop, no object per record but
    its key (this is the strip's cost per record)."""
    unpack = struct.Struct(header.endian + "IIII").unpack_from
    per_s = header.ts_per_second
    file_tick = NS // per_s
    until = (1 << 96) if until_ns is None else until_ns
    size = os.fstat(fd).st_size
    pack, copy = STAMP.pack, _HASH.copy
    lengths = struct.Struct("<II").pack
    # little-endian: caplen, len are the bytes hashed, as they are in the file
    little = header.endian == "<"
    keys: list[bytes] = []
    add = keys.append
    where = None if offsets is None else offsets.append
    ended = False
    # read in chunks and hash slices of them: two reads per record cost more than the hash
    pos, data, base = start, b"", start  # data holds the file's bytes from base on
    view = memoryview(data)
    while True:
        off = pos - base
        if off + RECORD_HEADER_LEN > len(data):
            checkpoint()  # a stop need not wait for the rest of a walk (stripworker)
            data, base, off = os.pread(fd, READ_CHUNK, pos), pos, 0
            view = memoryview(data)
            if len(data) < RECORD_HEADER_LEN:
                break
        sec, frac, incl, orig = unpack(data, off)
        if not record_ok(frac, incl, orig, per_s):
            break  # garbage: the rest is a cut-off tail
        end = pos + RECORD_HEADER_LEN + incl
        if end > size:
            break  # cut off
        ns = sec * NS + frac * file_tick
        if ns > until:
            ended = True
            break
        if ns >= since_ns:
            if off + RECORD_HEADER_LEN + incl > len(data):
                data = os.pread(fd, max(READ_CHUNK, RECORD_HEADER_LEN + incl), pos)
                base, off, view = pos, 0, memoryview(data)
                if len(data) < RECORD_HEADER_LEN + incl:
                    break
            h = copy()
            if little:  # the same bytes as the packed (caplen, len) + body below
                h.update(view[off + 8 : off + RECORD_HEADER_LEN + incl])
            else:
                h.update(lengths(incl, orig))
                h.update(view[off + RECORD_HEADER_LEN : off + RECORD_HEADER_LEN + incl])
            add(pack(ns // tick) + h.digest())
            if where is not None:
                where(pos)
        pos = end
    return keys, ended, pos


@contextlib.contextmanager
def _opened(src: int | str | os.PathLike[str]) -> Iterator[int]:
    """src itself when an fd (left open); a path (tests, tools) is opened and closed."""
    if isinstance(src, int):
        yield src
        return
    fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


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
    with _opened(src) as fd:
        header = parse_header(os.pread(fd, GLOBAL_HEADER_LEN, 0))
        tick = NS // header.ts_per_second
        since_ns = math.floor(since * NS)
        if start is None:
            start = GLOBAL_HEADER_LEN
            if since_ns > 0:
                start = start_before(fd, header, since_ns - REORDER_NS)
        offsets: list[int] = []
        keys, _ended, _stop = _walk(fd, header, start, since_ns, tick, None, offsets)
        incl = struct.Struct(header.endian + "12xI").unpack
        for off, key in zip(offsets, keys, strict=True):
            n = RECORD_HEADER_LEN + incl(os.pread(fd, RECORD_HEADER_LEN, off))[0]
            yield off, n, Fingerprint(STAMP.unpack_from(key)[0] * tick,
                                      key[STAMP.size :].hex(), tick)  # fmt: skip


def tail_since(src: int | str | os.PathLike[str], since: float) -> Tail:
    """The fingerprints of the records of src stamped from since - TAIL_MARGIN on,
    at the file's own resolution."""
    with _opened(src) as fd:
        header = parse_header(os.pread(fd, GLOBAL_HEADER_LEN, 0))
        tick = NS // header.ts_per_second
        since_ns = math.floor((since - TAIL_MARGIN) * NS)
        start = GLOBAL_HEADER_LEN
        if since_ns > 0:
            start = start_before(fd, header, since_ns - REORDER_NS)
        keys, _ended, _stop = _walk(fd, header, start, since_ns, tick)
    return Tail(keys, tick)


def sidecar_name(new_generation: int) -> str:
    # A dot name: never matches a tcpdump output name, never handed off.
    return f".overlap-g{new_generation:06d}.bin"


def _section(tick: int, name: str, keys: list[bytes]) -> bytes:
    raw = os.fsencode(name)  # a work name: bytes from the directory, as they are
    return _SECTION.pack(tick, len(raw), len(keys)) + raw + b"".join(keys)


def write_sidecar(d: Dir, name: str, tail: Tail) -> None:
    """Replace the sidecar by tail (what a new file's strip left of it)."""
    parts = [_HEADER.pack(SIDECAR_MAGIC, SIDECAR_FORMAT)]
    parts += [_section(tail.tick, f, []) for f in sorted(tail.files)]
    parts.append(_section(tail.tick, "", tail.keys))
    d.write_atomic(name, b"".join(parts))


@dataclass(frozen=True)
class _SidecarSection:
    tick: int
    name: str
    start: int  # of its keys
    count: int


def _sections(read: Callable[[int, int], bytes], size: int) -> tuple[list[_SidecarSection], int]:
    """The sections of a sidecar of size bytes (read(n, offset)), and where the last
    whole one ends. ValueError: not a sidecar of this format, or a section that
    is malformed rather than cut short."""
    if size > MAX_SIDECAR_BYTES:
        raise ValueError(f"larger than {MAX_SIDECAR_BYTES} bytes")
    if size < _HEADER.size or _HEADER.unpack(read(_HEADER.size, 0)) != (
        SIDECAR_MAGIC, SIDECAR_FORMAT,
    ):  # fmt: skip
        raise ValueError("not a sidecar of this format")
    out: list[_SidecarSection] = []
    pos = _HEADER.size
    while pos + _SECTION.size <= size:
        tick, n_name, count = _SECTION.unpack(read(_SECTION.size, pos))
        if tick not in _TICKS or n_name > MAX_NAME:
            raise ValueError(f"malformed section at {pos}")
        start = pos + _SECTION.size + n_name
        end = start + count * KEY_LEN
        if end > size:
            break  # cut short
        raw = read(n_name, pos + _SECTION.size)
        if b"/" in raw or b"\0" in raw:
            raise ValueError(f"malformed name at {pos}")
        out.append(_SidecarSection(tick, os.fsdecode(raw), start, count))
        pos = end
    return out, pos


def read_sidecar(d: Dir, name: str) -> Tail | None:
    """None when missing, not a well-formed sidecar, or one of an earlier format:
    then nothing is stripped, a sidecar can only leave duplicates, never remove
    a packet. A section cut short is left out (fewer keys only pair fewer)."""
    try:
        data = d.read_small(name, {os.geteuid()}, MAX_SIDECAR_BYTES)
        if data is None:
            return None
        sections, _end = _sections(lambda n, at: data[at : at + n], len(data))
        tick = max((s.tick for s in sections if s.count), default=1000)
        keys: list[bytes] = []
        for s in sections:
            part = _split_keys(data, s.start, s.start + s.count * KEY_LEN)
            keys += part if s.tick == tick else Tail(part, s.tick).at(tick)
        # validated in bulk: the digest is any bytes; the latest stamp a pcap stamp
        if keys and STAMP.unpack_from(max(keys))[0] * tick >= MAX_STAMP_S * NS:
            raise ValueError("timestamp out of range")
        return Tail(keys, tick, frozenset(s.name for s in sections if s.name))
    except (BadEntry, OSError, ValueError, struct.error):
        return None


def append_sidecar(d: Dir, name: str, more: Tail, source: str) -> None:
    """Add the tail of one more old file, source (its work name); a file
    fingerprinted twice (the supervisor died before its hand-off) adds nothing
    the second time. Appended, not rewritten: the cost is that of the file's
    tail, not of the sidecar so far. A sidecar that is not of this format is
    replaced (what it held could not be used anyway)."""
    data = _section(more.tick, source, more.keys)
    try:
        fd = d.open(name, {os.geteuid()}, write=True)
    except (FileNotFoundError, BadEntry):
        return d.write_atomic(name, _HEADER.pack(SIDECAR_MAGIC, SIDECAR_FORMAT) + data)
    try:
        try:
            sections, end = _sections(lambda n, at: os.pread(fd, n, at), os.fstat(fd).st_size)
        except (ValueError, struct.error):  # struct.error: it shrank meanwhile
            return d.write_atomic(name, _HEADER.pack(SIDECAR_MAGIC, SIDECAR_FORMAT) + data)
        if any(s.name == source for s in sections):
            return None
        os.ftruncate(fd, end)  # a section cut short goes; whole ones stay
        try:
            done = 0
            while done < len(data):
                done += os.pwrite(fd, data[done:], end + done)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, end)  # no half section left behind
            raise
    finally:
        os.close(fd)
    return None


def _finite(v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ValueError(f"not a finite number: {v!r}")
    if not 0 <= v < MAX_STAMP_S:  # 1970 .. 2242: a pcap timestamp
        raise ValueError(f"out of range: {v!r}")
    return float(v)


def remove(d: Dir, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        d.unlink(name)


def pair_duplicates(tail: Tail, head: Tail) -> tuple[list[int], Tail]:
    """(indices of head that are duplicates, the tail records left unpaired).

    A head record pairs with a tail record of the same bytes and the same
    timestamp (at the coarser of the two resolutions): the kernel stamped that
    packet once for both sockets (module doc). Per (timestamp, digest) class,
    min(old count, new count) head records pair, in file order; a record that
    only one tcpdump got (a drop, a socket not attached yet or any more) has
    no partner and stays.
    """
    tick = max(tail.tick, head.tick)
    left = Counter(tail.at(tick))
    get = left.get
    dups: list[int] = []
    for i, k in enumerate(head.at(tick)):
        if not i % PAIR_SLICE:
            checkpoint()  # nothing written yet: a stopped strip leaves all as it was
        c = get(k)
        if c:
            left[k] = c - 1
            dups.append(i)
    return dups, Tail(list(left.elements()), tick, tail.files)


@dataclass(frozen=True)
class Duplicates:
    records: list[tuple[int, int]]  # (offset, length) of each record captured twice
    rest: Tail  # the tail left for the generation's next file
    unpaired: int = 0  # records within the tail's time span that paired with none

    def __len__(self) -> int:
        return len(self.records)


def find_duplicates(fd: int, tail: Tail) -> Duplicates:
    """The records of the file on fd that the old generation also captured, and
    what is left of the tail for the generation's next file: nothing once the file
    has a packet later than the tail's last (the overlap ended in this file)."""
    if not tail:
        return Duplicates([], Tail(files=tail.files))
    header = parse_header(os.pread(fd, GLOBAL_HEADER_LEN, 0))
    tick = max(tail.tick, NS // header.ts_per_second)
    first, last = tail.span_ns()
    offsets: list[int] = []
    keys, ended, stop = _walk(fd, header, GLOBAL_HEADER_LEN, 0, tick, last + LOOK_PAST_NS,
                              offsets)  # fmt: skip
    head = Tail(keys, tick)
    dups, rest = pair_duplicates(tail, head)
    if ended:
        rest = Tail([], tick, tail.files)
    elif keys:  # the next file starts where this one ended: what is well before can't pair
        newest = STAMP.unpack_from(max(keys))[0]
        floor = STAMP.pack(max(0, newest - LOOK_PAST_NS // tick))
        rest = Tail([k for k in rest.keys if k >= floor], tick, tail.files)
    # the head's records within the tail's span (at tick) that paired with none:
    # every paired one is within it
    lo, hi = STAMP.pack(first // tick), STAMP.pack(last // tick + 1)
    unpaired = sum(1 for k in keys if lo <= k < hi) - len(dups)
    ends = [*offsets[1:], stop]
    return Duplicates([(offsets[i], ends[i] - offsets[i]) for i in dups], rest, unpaired)


def drop_records(d: Dir, name: str, fd: int, drop: list[tuple[int, int]]) -> int:
    """Replace name (open on fd) atomically by a copy without the records at drop
    ((offset, length), in file order); return an fd on the new file (fd itself is
    left open). The copy is an O_EXCL temp file in the same directory, never a
    fixed name."""
    runs: list[list[int]] = []  # adjacent records as one range: the duplicates are a head
    for off, length in drop:
        if runs and off < runs[-1][0] + runs[-1][1]:
            raise ValueError(f"records to drop overlap or are out of order at {off}")
        if runs and off == runs[-1][0] + runs[-1][1]:
            runs[-1][1] += length
        else:
            runs.append([off, length])
    if runs and runs[0][0] < GLOBAL_HEADER_LEN:
        raise ValueError(f"records to drop overlap or are out of order at {runs[0][0]}")
    tmp_fd, tmp = d.create_temp("." + name + ".", ".strip")
    try:
        _copy(fd, tmp_fd, 0, GLOBAL_HEADER_LEN)
        pos = GLOBAL_HEADER_LEN
        for off, length in [*runs, [os.fstat(fd).st_size, 0]]:
            _copy(fd, tmp_fd, pos, off - pos)
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


def _copy(src: int, dst: int, at: int, n: int) -> None:
    """n bytes of src from offset at, appended to dst (in the kernel where it can)."""
    while n > 0:
        try:
            done = os.copy_file_range(src, dst, n, at)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            chunk = os.pread(src, min(n, READ_CHUNK), at)
            done = os.write(dst, chunk) if chunk else 0
        if not done:
            raise OSError(errno.EIO, "file shrank while its duplicates were stripped")
        at += done
        n -= done


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
        tail = Tail()
        try:
            fd = self.work.open(name, owners)
        except BadEntry:
            pass  # the hand-off quarantines it
        else:
            try:
                tail = tail_since(fd, since)
            except ValueError:  # not a pcap: the hand-off quarantines it
                tail = Tail()
            finally:
                os.close(fd)
        if tail:
            append_sidecar(self.work, sidecar_name(new_gen), tail, name)

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
