"""Which captures overlap a window, host by host, with the window's coverage.

The one selection behind `rollcap list`, `rollcap fetch` (and `rollcap hold`):
``select(...)`` returns a Selection; iterating it yields one HostResult per
host in key order, and its ``summary`` is complete once iteration ends.

With manifests (S3 or file://, default key layout) a host's captures come from the
manifest entries of the window's 10-minute slots (storage/manifest.py):
consecutive hosts share one listing per slot, an explicit --host gets its
own small listing per slot, and no HEAD is needed. Entries are a hint, not
the truth: a host with no entry in the window (nor, for a window that is
not settled yet, shortly before it), or whose entries leave a hole in the
settled part of the window, is checked the old way (catalog.find_captures:
its day listings, HEADs of objects with no entry), so objects written by
0.1.0, or stored by an offload that died before writing their entries, are
still found. Hosts are taken ``CHUNK`` at a time with a bounded number of
requests in flight, so memory does not grow with the fleet.

Without manifests (a custom key template) the whole
selection is catalog.find_captures, grouped by host afterwards.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice

from rollcap.retrieve.catalog import HANDOVER, LOOKBACK, Capture, Search, find_captures
from rollcap.retrieve.coverage import Gap, host_gaps
from rollcap.retrieve.entrycheck import EntryCheck, Rejected, capture_of
from rollcap.retrieve.keyplan import base_prefix, supports_host_discovery, window_days
from rollcap.storage import manifest
from rollcap.storage.base import Storage
from rollcap.timestamps import from_datetime

HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")
CHUNK = 100  # hosts per range listing of a slot
# Entries per host and slot expected at first (10-minute files: two), then
# the most seen: sizes a range listing's page so that it does not list (and
# parse: most of the client's CPU) far past its chunk.
PER_HOST = 2.0
LOOKAHEAD = 4  # chunks listed ahead of the one being printed
Listed = list[tuple[str, manifest.Entry]]  # (entry key, what it says), of one listing


def hosts_below(storage: Storage, template: str, prefix: str) -> Iterator[str]:
    """Every host below the prefix (one delimited listing): what a miss of --host
    suggests and -H completes. Nothing with a custom key template."""
    if not supports_host_discovery(template):
        return
    root = base_prefix(prefix)
    for p in storage.list_prefixes(root):
        h = p[len(root) :].rstrip("/")
        if HOST_RE.fullmatch(h) and ".." not in h:  # not _index/ nor .hidden/
            yield h


@dataclass
class HostResult:
    host: str
    captures: list[Capture]  # sorted by time
    gaps: list[Gap]
    checked: bool  # its captures were listed too (no or incomplete manifest entries)


@dataclass
class Summary:
    mode: str = "manifest"  # or "listing"
    hosts_seen: int = 0
    hosts_with_captures: int = 0
    without: list[str] = field(default_factory=list)  # hosts with no capture in the window
    gaps: list[Gap] = field(default_factory=list)
    checked: int = 0  # hosts checked by listing their captures
    slots: int = 0
    describe: str = ""  # what was looked at, for "nothing found"
    rejected: list[Rejected] = field(default_factory=list)  # entries (and objects) not believed

    def add(self, r: HostResult) -> None:
        self.hosts_seen += 1
        if r.captures:
            self.hosts_with_captures += 1
        else:
            self.without.append(r.host)
        self.gaps += r.gaps
        self.checked += r.checked


def _chunks(hosts: Iterator[str], n: int) -> Iterator[list[str]]:
    while chunk := list(islice(hosts, n)):
        yield chunk


class Selection:
    def __init__(self, storage: Storage, *, template: str, prefix: str, since: datetime,
                 until: datetime, hosts: list[str] | None = None, iface: str | None = None,
                 settled_until: datetime | None = None, workers: int = 8,
                 rotate: timedelta | None = None) -> None:  # fmt: skip
        self.storage = storage
        self.rotate = rotate
        self.template = template
        self.prefix = prefix
        self.since, self.until = since, until
        self.hosts = sorted(set(hosts), key=lambda h: h + "/") if hosts else None
        self.iface = iface
        settled = min(until, settled_until) if settled_until else until
        self.settled_until = max(since, settled)
        # A window that is not settled yet is probed a slot further back than
        # the settled time: a host with entries there writes manifests, and
        # merely has not uploaded its newest files yet.
        self.probe_since = since
        if settled_until is not None and settled_until < until:
            self.probe_since = min(since, settled_until - manifest.SLOT)
        self.workers = max(1, workers)
        self.summary = Summary()
        self.use_manifests = storage.manifests and supports_host_discovery(template)
        self.density = PER_HOST
        self.entry_check = EntryCheck(storage, template, prefix)

    def __iter__(self) -> Iterator[HostResult]:
        gen = self._from_manifests() if self.use_manifests else self._from_listing()
        for r in gen:
            self.summary.add(r)
            yield r

    # -- coverage ---------------------------------------------------------------

    def _gaps(self, host: str, caps: list[Capture], spans: dict[str, list[tuple[float, float]]]
              ) -> list[Gap]:  # fmt: skip
        """Gaps of host, from the manifest ``spans`` plus those of ``caps`` found by listing.

        A listed capture's close time is unknown: its span ends at its last
        packet, or when the next file of its interface opened if that was
        within a rotation (one capture writes one file after another)."""
        by_iface: dict[str, list[Capture]] = {}
        for c in caps:
            by_iface.setdefault(c.iface, []).append(c)
        for iface, cs in by_iface.items():
            cs.sort(key=Capture.sort_key)
            for c, nxt in zip(cs, [*cs[1:], None], strict=True):
                s = c.span
                if s is None or c.end_ts is not None:
                    continue  # entries' spans are in spans already
                lo, hi = s
                if nxt is not None and nxt.start is not None and self.rotate is not None:
                    n = nxt.start.timestamp()
                    if lo <= n <= lo + self.rotate.total_seconds() + HANDOVER.total_seconds():
                        hi = max(hi, n)
                spans.setdefault(iface, []).append((lo, hi))
        return host_gaps(host, spans, self.since.timestamp(), self.settled_until.timestamp())

    def _needs_check(self, spans: dict[str, list[tuple[float, float]]], gaps: list[Gap]) -> bool:
        """List the host's captures too: it has no entry at all (0.1.0, or
        down), or its entries leave a hole in the settled part of the window."""
        return not spans or bool(gaps)

    # -- without manifests -----------------------------------------------------

    def _from_listing(self) -> Iterator[HostResult]:
        self.summary.mode = "listing"
        caps, search = find_captures(
            self.storage, template=self.template, prefix=self.prefix, since=self.since,
            until=self.until, hosts=self.hosts, iface=self.iface, workers=self.workers,
        )  # fmt: skip
        self.summary.describe = search.describe()
        self.summary.rejected += mislabelled(search)
        by_host: dict[str, list[Capture]] = {h: [] for h in self.hosts or search.hosts}
        for c in self._attributable(caps):
            by_host.setdefault(c.host, []).append(c)
        for host in sorted(by_host, key=lambda h: h + "/"):
            hc = by_host[host]
            yield HostResult(host, hc, self._gaps(host, hc, {}) if hc else [], True)

    # -- with manifests --------------------------------------------------------

    def _host_stream(self) -> Iterator[str]:
        if self.hosts is not None:
            yield from self.hosts
            return
        yield from self.known_hosts()

    def known_hosts(self) -> Iterator[str]:
        """Every host below the prefix, whatever the window: what a miss of --host
        suggests."""
        return hosts_below(self.storage, self.template, self.prefix)

    def _entry_ok(self, e: manifest.Entry | None) -> bool:
        return e is not None and (self.iface is None or e.iface == self.iface)

    def _attributable(self, caps: list[Capture]) -> list[Capture]:
        """Listed objects whose metadata names a host whose prefix they are not
        under are reported, not shown (a host may write any metadata)."""
        out = []
        for c in caps:
            if self.entry_check.in_scope(c.key, c.host):
                out.append(c)
            else:
                self.summary.rejected.append(Rejected(
                    c.key, c.host, c.key, f"object's metadata names host {c.host}, "
                    "but it is not under that host's prefix"))  # fmt: skip
        return out

    def _list_range(self, chunk: list[str], slot: datetime) -> Listed:
        """Entries of the chunk's hosts in one slot: one listing of the key range
        they span. Entries sort by "host~": the order of the hosts' directories
        may differ ("web1-x/" < "web1/" but "web1~" < "web1-x~" on S3, and a
        filer lists directories by name), so the range comes from the chunk
        itself and hosts in it that are not members are skipped."""
        sp = manifest.slot_prefix(self.prefix, slot)
        members = set(chunk)
        first = min(h + "~" for h in chunk)
        last = max(h + "~" for h in chunk)
        out: Listed = []
        page = min(1000, int(len(chunk) * self.density) + 10)
        # every key of the first host sorts after "<slot>/<first host>"
        for info in self.storage.list_after(sp, sp + first[:-1], page):
            h = manifest.host_of(info.key)
            if h is None:
                continue
            if h + "~" > last:
                break  # past every member
            if h in members:
                e = manifest.parse_key(info.key, self.prefix)
                if e is not None and self._entry_ok(e):
                    out.append((info.key, e))
        self.density = max(self.density, len(out) / len(chunk))  # a race only sizes pages
        return out

    def _list_host(self, host: str, slot: datetime) -> Listed:
        out: Listed = []
        for info in self.storage.list(manifest.host_prefix(self.prefix, slot, host)):
            e = manifest.parse_key(info.key, self.prefix)
            if e is not None and e.host == host and self._entry_ok(e):
                out.append((info.key, e))
        return out

    def _check(self, host: str, known: set[str]) -> tuple[list[Capture], list[Rejected]]:
        caps, search = find_captures(
            self.storage, template=self.template, prefix=self.prefix, since=self.since,
            until=self.until, hosts=[host], iface=self.iface, workers=4, known=known,
        )  # fmt: skip
        return caps, mislabelled(search)

    def _from_manifests(self) -> Iterator[HostResult]:
        slots = manifest.window_slots(self.probe_since, self.until)
        self.summary.slots = len(slots)
        ranged = self.hosts is None
        with ThreadPoolExecutor(self.workers) as pool:
            queue: deque[tuple[list[str], list[Future[Listed]]]] = deque()
            for chunk in _chunks(self._host_stream(), CHUNK):
                if ranged:
                    futs = [pool.submit(self._list_range, chunk, s) for s in slots]
                else:
                    futs = [pool.submit(self._list_host, h, s) for h in chunk for s in slots]
                queue.append((chunk, futs))
                while len(queue) > LOOKAHEAD:
                    yield from self._finish(pool, *queue.popleft())
            while queue:
                yield from self._finish(pool, *queue.popleft())
        self.summary.describe = self._describe(len(slots))

    def _describe(self, slots: int) -> str:
        s = self.summary
        hosts = s.without if s.hosts_with_captures == 0 else []
        named = f"hosts {', '.join(hosts)}" if 0 < len(hosts) <= 20 else f"{s.hosts_seen} hosts"
        text = f"{named}; manifest entries of {slots} 10-minute slots"
        if s.checked:
            days = window_days(self.since, self.until, LOOKBACK)
            span = f"{days[0]:%Y-%m-%d}" + (f" to {days[-1]:%Y-%m-%d}" if len(days) > 1 else "")
            text += f"; {s.checked} hosts also listed by UTC day ({span})"
        return text

    def _finish(self, pool: ThreadPoolExecutor, chunk: list[str],
                futs: list[Future[Listed]]) -> Iterator[HostResult]:  # fmt: skip
        named: dict[str, dict[str, manifest.Entry]] = {h: {} for h in chunk}
        for f in futs:
            for name, e in f.result():
                if e.host in named:
                    named[e.host][name] = e
        s_ts = self.since.timestamp()
        s_ns, u_ns = from_datetime(self.since), from_datetime(self.until)
        staged: list[tuple[str, list[Capture], dict[str, list[tuple[float, float]]],
                           Future[tuple[list[Capture], list[Rejected]]] | None]] = []  # fmt: skip
        for host in chunk:
            believed, from_object, rejected = self.entry_check.settle(named[host])
            self.summary.rejected += rejected
            caps: list[Capture] = []
            spans: dict[str, list[tuple[float, float]]] = {}
            for e in believed.values():
                spans.setdefault(e.iface, []).append(e.span)
                cap = capture_of(e)
                if e.packets and cap.has_metadata and cap.overlaps(s_ns, u_ns):
                    caps.append(cap)
            for cap in from_object.values():  # entries disagreed: the object decides
                if cap.packets != 0 and cap.overlaps(s_ns, u_ns):
                    caps.append(cap)
            gaps = host_gaps(host, spans, s_ts, self.settled_until.timestamp())
            check = None
            if self._needs_check(spans, gaps):
                check = pool.submit(self._check, host, set(believed) | set(from_object))
            staged.append((host, caps, spans, check))
        for host, caps, spans, check in staged:
            if check is not None:
                listed, wrong = check.result()
                self.summary.rejected += wrong
                caps = caps + self._attributable(listed)
            caps.sort(key=Capture.sort_key)
            spans = {k: list(v) for k, v in spans.items()}
            gaps = self._gaps(host, caps, spans)
            yield HostResult(host, caps, gaps if caps else [], check is not None)


def mislabelled(search: Search) -> list[Rejected]:
    return [
        Rejected(c.key, c.host, c.key,
                 f"object's metadata names host {c.host}, but it is under {khost}'s prefix")
        for c, khost in search.mislabelled
    ]  # fmt: skip


def select(storage: Storage, *, template: str, prefix: str, since: datetime, until: datetime,
           hosts: list[str] | None = None, iface: str | None = None,
           settled_until: datetime | None = None, workers: int = 8,
           rotate: timedelta | None = None) -> Selection:  # fmt: skip
    """The captures overlapping [since, until) and the window's coverage, by host.

    ``settled_until``: newer captures may still be on their hosts (not gaps);
    ``rotate``: capture.rotate_seconds, to judge listed captures' ends."""
    return Selection(
        storage, template=template, prefix=prefix, since=since, until=until, hosts=hosts,
        iface=iface, settled_until=settled_until, workers=workers, rotate=rotate,
    )  # fmt: skip


def interfaces_in_window(sel: Selection) -> list[str]:
    """The interfaces with captures in the selection's window and hosts, whatever
    its --interface: what a miss of --interface suggests."""
    other = select(sel.storage, template=sel.template, prefix=sel.prefix, since=sel.since,
                   until=sel.until, hosts=sel.hosts, settled_until=sel.settled_until,
                   workers=sel.workers, rotate=sel.rotate)  # fmt: skip
    return sorted({c.iface for r in other for c in r.captures})


def collect(sel: Selection) -> list[Capture]:
    """Every capture of the selection, sorted by time (for fetch)."""
    out = [c for r in sel for c in r.captures]
    out.sort(key=Capture.sort_key)
    return out
