"""`rollcap flows`: who talked to X, when, on which hosts, from the flow
index alone (index.py), never from the captures.

For a window [since, until):

- The summaries: one listing per 10-minute slot for the whole fleet (a
  prefix ``HOST~`` per slot with --host), from ``lookback`` (a rotation)
  before the window to its end: a summary lives in its capture's home slot
  (where its span begins), so captures that began before the window are
  there. The key's name says the capture's span, host and interface: only
  summaries whose capture has a packet in the window are read.
- What has none: the manifest entries of the window's slots (one listing
  each) name every capture in the window; those with no summary are counted
  (index off, or stored before it), and a capture that began before the
  lookback has its summary looked up by its exact key.
- The summaries are read concurrently, at most ``inflight`` at a time, and
  come out in key order; memory holds those in flight and one slot's names.
- Trust: a summary is believed only when its name is a capture of the host
  it names (the manifest's rules, retrieve/entrycheck.py) and its body says
  the same host, interface and capture key. An unreadable or disagreeing
  summary is one line in ``Report.unreadable``, never an error.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rollcap.flows import compact as compaction
from rollcap.flows import index as flowindex
from rollcap.flows.communityid import ICMP, ICMP6, SCTP, TCP, UDP
from rollcap.retrieve import verdict
from rollcap.storage import manifest
from rollcap.storage.base import Storage, StorageError

log = logging.getLogger("rollcap.retrieve")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
PROTOS = {"tcp": TCP, "udp": UDP, "icmp": ICMP, "icmp6": ICMP6, "sctp": SCTP}
PROTO_NAMES = {v: k for k, v in PROTOS.items()}
MAX_LISTED = 50  # captures named one by one in a report (the rest counted)
LIST_AHEAD = 3  # slots listed ahead of the one being read


@functools.lru_cache(maxsize=65536)
def _ip(text: str) -> IPAddress:
    """An address of a flow row (the same few recur across captures)."""
    return ipaddress.ip_address(text)


class QueryError(ValueError):
    """A bad --ip/--net/--port/--proto/--filter: the message names it and what is allowed."""


def parse_proto(text: str) -> int:
    t = text.strip().lower()
    if t in PROTOS:
        return PROTOS[t]
    if t.isdigit() and 0 <= int(t) <= 255:
        return int(t)
    raise QueryError(f"--proto {text!r}: one of {', '.join(PROTOS)} or a number 0-255")


def parse_port(text: str) -> int:
    if text.strip().isdigit() and 0 <= int(text) <= 65535:
        return int(text)
    raise QueryError(f"--port {text!r}: a port number 0-65535")


def parse_ip(text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise QueryError(f"--ip {text!r}: an IPv4 or IPv6 address") from None


def parse_net(text: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise QueryError(f"--net {text!r}: a network such as 10.1.0.0/16 or 2001:db8::/32"
                         ) from None


# what --filter can say, for its error (docs/retrieve.md: what the flow index decides)
FILTER_ALLOWED = (
    "the flow index answers numeric host/net (IPv4, IPv6), port/portrange, src/dst, ip, "
    "ip6, tcp, udp, sctp, icmp, icmp6, igmp, igrp, pim, vrrp, carp, ah, esp, "
    "[ip|ip6] proto N, vlan [N], with and/or/not and parentheses"
)


@dataclass(frozen=True, eq=False)
class FlowFilter:
    """A tcpdump filter answered per flow row by fetch's skip-by-index
    machinery (retrieve/verdict.py): a row is shown when it may hold a
    matching packet."""

    text: str
    node: verdict.Node

    def verdict(self, linktype: int, f: dict[str, Any]) -> int:
        """verdict.F, U (only some form of the flow's packets may match) or T."""
        return verdict.flow_verdict(self.node, linktype, f)

    def side(self, f: dict[str, Any]) -> int | None:
        """The first endpoint the filter names as an exact host, if any."""
        for i, name in enumerate(("src", "dst")):
            try:
                a = _ip(f[name])
            except (KeyError, ValueError, TypeError):
                continue
            if (a.version, int(a)) in self.node.hosts:
                return i
        return None

    def absent_from(self, text: str) -> bool:
        """Whether text (the flow rows of a summary, or its address set) lacks
        an address the filter needs, so that no row of it can match."""
        absent = verdict.absent_hosts(self.node, text)
        return bool(absent) and self.node.absent(absent) == verdict.F


def parse_filter(text: str) -> FlowFilter:
    try:
        return FlowFilter(text, verdict.compile_filter(text))
    except verdict.Undecidable as e:
        raise QueryError(f"--filter {text!r}: {e}; {FILTER_ALLOWED}") from None


@dataclass(frozen=True)
class Query:
    """What a flow must have: every given part (and), each any side of the
    flow, and the filter (a flow that may hold a packet it matches)."""

    ip: IPAddress | None = None
    net: IPNetwork | None = None
    port: int | None = None
    proto: int | None = None
    filter: FlowFilter | None = None

    @property
    def prefilter(self) -> str | None:
        """Text every matching flow row holds (an IPv4 address as a JSON
        string), so rows without it need no parse; None: no such text."""
        if self.ip is not None and self.ip.version == 4:
            return f'"{self.ip}"'
        return None

    def _addr_ok(self, a: IPAddress) -> bool:
        if self.ip is not None and a != self.ip:
            return False
        return self.net is None or (a.version == self.net.version and a in self.net)

    def side(self, f: dict[str, Any]) -> int | None:
        """Which endpoint the query is about: 0 (src), 1 (dst), or None if
        the flow does not match. Without an address part, src."""
        if self.proto is not None and f.get("proto") != self.proto:
            return None
        if self.port is not None and self.port not in (f.get("sport"), f.get("dport")):
            return None
        if self.ip is None and self.net is None:
            if self.port is not None and f.get("sport") != self.port:
                return 1
            return 0
        for i, name in enumerate(("src", "dst")):
            try:
                if self._addr_ok(_ip(f[name])):
                    return i
            except (KeyError, ValueError, TypeError):
                continue
        return None

    def may_be_beyond_cap(self, capture: dict[str, Any]) -> bool:
        """Whether packets an incomplete summary holds in no flow row (over
        its flow cap, or after a record that is not one) may match: judged
        by the address and port sets it keeps of them, when it has them
        (the filter: by its exact host addresses against the address set)."""
        addrs, ports = capture.get("more_addrs") or [], capture.get("more_ports") or []
        if not capture.get("sets_complete", False) or not (addrs or ports):
            return True
        if self.filter is not None and isinstance(addrs, list) and self.filter.absent_from(
                json.dumps([str(a) for a in addrs])):  # fmt: skip
            return False
        try:
            addr_ok = (self.ip is None and self.net is None) or any(
                self._addr_ok(ipaddress.ip_address(a)) for a in addrs)  # fmt: skip
        except ValueError:
            return True
        if self.port is None and (self.proto is None or self.proto not in (TCP, UDP, SCTP)):
            return addr_ok  # portless protocols leave no trace in the port set
        port_ok = any(
            isinstance(pp, list) and len(pp) == 2
            and (self.proto is None or pp[0] == self.proto)
            and (self.port is None or pp[1] == self.port)
            for pp in ports
        )  # fmt: skip
        return addr_ok and port_ok

    def describe(self) -> str:
        parts = []
        if self.ip is not None:
            parts.append(f"ip {self.ip}")
        if self.net is not None:
            parts.append(f"net {self.net}")
        if self.port is not None:
            parts.append(f"port {self.port}")
        if self.proto is not None:
            parts.append(PROTO_NAMES.get(self.proto, f"proto {self.proto}"))
        if self.filter is not None:
            parts.append(f"filter {self.filter.text!r}")
        return " and ".join(parts) or "any flow"


@dataclass(frozen=True)
class Found:
    """One matching flow row, of the capture ``entry`` (from the summary's name)."""

    entry: manifest.Entry
    flow: dict[str, Any]
    side: int  # 0: the query is about src, 1: about dst
    maybe: bool = False  # --filter: only some form of the flow's packets may match


@dataclass
class HostTotal:
    flows: int = 0
    captures: int = 0
    packets: int = 0
    nbytes: int = 0
    first_ns: int | None = None
    last_ns: int | None = None

    def add(self, f: dict[str, Any]) -> None:
        self.flows += 1
        self.packets += int(f.get("packets") or 0)
        self.nbytes += int(f.get("bytes") or 0)
        fn, ln = f.get("first_ns"), f.get("last_ns")
        if isinstance(fn, int):
            self.first_ns = fn if self.first_ns is None else min(self.first_ns, fn)
        if isinstance(ln, int):
            self.last_ns = ln if self.last_ns is None else max(self.last_ns, ln)


@dataclass
class Report:
    """What was read, beside the flows: complete once the search ends."""

    slots_listed: int = 0
    summaries: int = 0  # read and believed
    flows_scanned: int = 0
    captures_in_window: int = 0  # by the manifest entries and summaries
    without_summary: int = 0
    without_examples: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (summary key, why)
    rejected: int = 0  # names that break the per-host rules
    incomplete: list[str] = field(default_factory=list)  # capture keys: may hold more
    incomplete_count: int = 0
    hosts: dict[str, HostTotal] = field(default_factory=dict)
    compactions: int = 0  # slots whose compaction was read and used
    from_compaction: int = 0  # summaries taken from a compaction (no GET of their own)
    maybe: int = 0  # flows shown that only may match --filter


_COUNTS = ("first_ns", "last_ns", "packets", "bytes")


def _count(v: Any) -> bool:
    return type(v) is int and 0 <= v < 2**63


def _typed(f: dict[str, Any]) -> bool:
    """A flow row with the types index.py writes, as far as flows reads it: what a
    host wrote is read as any bucket object is."""
    ports = (f.get("sport"), f.get("dport"))
    vlan = f.get("vlan")
    return (
        all(_count(f.get(k)) for k in _COUNTS)
        and type(f.get("proto")) is int
        and isinstance(f.get("src"), str) and isinstance(f.get("dst"), str)
        and all(p is None or _count(p) for p in ports)
        and (vlan is None or (isinstance(vlan, list) and all(_count(v) for v in vlan)))
    )  # fmt: skip


@dataclass(frozen=True)
class FlowWindow:
    since_ns: int
    until_ns: int

    def overlaps(self, first: int | None, last: int | None) -> bool:
        if first is None or last is None:
            return False
        return first < self.until_ns and last >= self.since_ns


def _to_dt(ns: int) -> datetime:
    from rollcap.retrieve.timeexpr import to_datetime

    return to_datetime(ns)


_Names = Future[list[tuple[str, int]]]
# per slot: its summaries, its manifest entries (window slots)
_SlotLists = tuple[_Names, _Names | None]


class FlowSearch:
    """Iterate it for the matching flows (Found), in capture key order per
    slot; then ``report`` is complete."""

    def __init__(self, storage: Storage, *, prefix: str, window: tuple[int, int], query: Query,
                 hosts: list[str] | None = None, iface: str | None = None,
                 lookback: timedelta = timedelta(minutes=11),
                 in_scope: Callable[[str, str], bool] | None = None,
                 workers: int = 16, inflight: int = 64,
                 use_compaction: bool = True) -> None:  # fmt: skip
        self.storage = storage
        self.prefix = prefix
        self.window = FlowWindow(*window)
        self.query = query
        self.hosts = sorted(set(hosts)) if hosts else None
        self.iface = iface
        self.lookback = lookback
        self.in_scope = in_scope or (lambda key, host: True)
        self.workers = max(1, workers)
        self.inflight = max(1, inflight)
        self.report = Report()
        # a slot's compaction holds every host: worth its GET for a fleet-wide
        # search, not for one or two hosts' few summaries
        self.compacted = use_compaction and (self.hosts is None or len(self.hosts) > 2)

    # -- listings -----------------------------------------------------------

    def _names(self, base: str) -> list[tuple[str, int]]:
        """(key, size) of every object below base (per host with --host)."""
        prefixes = [base] if self.hosts is None else [base + h + "~" for h in self.hosts]
        return [(info.key, info.size) for p in prefixes for info in self.storage.list(p)]

    def _wanted(self, e: manifest.Entry | None) -> bool:
        return (
            e is not None and e.has_object and e.packets > 0
            and (self.hosts is None or e.host in self.hosts)
            and (self.iface is None or e.iface == self.iface)
            and self.window.overlaps(e.first_ns, e.last_ns)
        )  # fmt: skip

    def _believed(self, key: str, e: manifest.Entry) -> bool:
        if self.in_scope(e.key, e.host):
            return True
        self.report.rejected += 1
        log.warning("%s: names a capture outside host %s's prefix; ignored", key, e.host)
        return False

    # -- reading one summary --------------------------------------------------

    def _read(self, key: str, e: manifest.Entry, size: int | None
              ) -> tuple[list[Found], str | None]:  # fmt: skip
        """The matching flows of one summary, or why it could not be used.
        ``size``: as listed; None: looked up by its exact key ("missing" if
        it does not exist)."""
        try:
            if size is None:
                info = self.storage.head(key)
                if info is None:
                    return [], "missing"
                size = info.size
            if size > flowindex.MAX_STORED:
                return [], f"unreadable: {size} bytes, more than a summary's {flowindex.MAX_STORED}"
            text = flowindex.gunzip_text(flowindex.read_body(self.storage, key, size))
        except (StorageError, OSError, ValueError, UnicodeDecodeError, zlib.error) as err:
            return [], f"unreadable: {err}"
        return self._scan(text, e)

    def _scan(self, text: str, e: manifest.Entry, start: int = 0, end: int | None = None
              ) -> tuple[list[Found], str | None]:  # fmt: skip
        """The matching flows of one summary's text, text[start:end] (its
        object's, or its lines in its slot's compaction)."""
        try:
            return self._rows(text, e, start, end)
        # a summary is a bucket object its host wrote: any shape may come
        except (ValueError, KeyError, TypeError, RecursionError) as err:
            return [], f"unreadable: {err!r}"

    def _rows(self, text: str, e: manifest.Entry, start: int = 0, end: int | None = None
              ) -> tuple[list[Found], str | None]:  # fmt: skip
        pre, filt = self.query.prefilter, self.query.filter
        end = len(text) if end is None else end
        eol = text.find("\n", start, end)
        eol = end if eol < 0 else eol
        if (pre is not None and text.find(pre, eol, end) < 0) or (
                filt is not None and filt.absent_from(text[eol:end])):  # fmt: skip
            # no row can match (most summaries, for an address): count, not split
            lines = [text[start:eol]]
            n = text.count("\n", eol + 1, end) + (eol < end and not text.endswith("\n", 0, end))
        else:
            lines = text[start:end].splitlines()
            n = -1
        try:
            cap = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError as err:
            return [], f"unreadable: line 1: {err}"
        if not isinstance(cap, dict) or cap.get("row") != "capture":
            return [], "unreadable: a flow summary starts with its capture row"
        if cap.get("version") != flowindex.VERSION:
            return [], f"unreadable: version {cap.get('version')!r}; this reads {flowindex.VERSION}"
        where = (cap.get("host"), cap.get("iface"), cap.get("key"))
        if where != (e.host, e.iface, e.key):
            return [], f"unreadable: its body describes {where!r}, its name {e.key!r}"
        out: list[Found] = []
        w, q = self.window, self.query
        linktype: Any = cap.get("linktype")  # an int where a filter needs it
        if filt is not None and not _count(linktype):
            return [], "unreadable: a capture row without its link type"
        more = not cap.get("complete") and q.may_be_beyond_cap(cap)
        if n >= 0:
            return out, f"ok:{n}" + (":incomplete" if more else "")
        n = 0
        for i, line in enumerate(lines[1:], 2):
            if not line:
                continue
            n += 1
            if pre is not None and pre not in line:
                continue  # cannot match: not parsed (most rows, for an address)
            try:
                f = json.loads(line)
            except json.JSONDecodeError as err:
                return [], f"unreadable: line {i}: {err}"
            if not isinstance(f, dict) or f.get("row") != "flow":
                continue
            if f.get("host") != e.host or f.get("key") != e.key:
                return [], f"unreadable: line {i} names another capture"
            if not _typed(f):
                return [], f"unreadable: line {i}: a flow row of the wrong types"
            if not w.overlaps(f.get("first_ns"), f.get("last_ns")):
                continue
            side = q.side(f)
            if side is None:
                continue
            if filt is None:
                out.append(Found(e, f, side))
                continue
            v = filt.verdict(linktype, f)
            if v != verdict.F:
                named = filt.side(f) if q.ip is None and q.net is None else None
                side = side if named is None else named
                out.append(Found(e, f, side, maybe=v == verdict.U))
        return out, f"ok:{n}" + (":incomplete" if more else "")

    # -- the search -----------------------------------------------------------

    def __iter__(self) -> Iterator[Found]:
        w = self.window
        since, until = _to_dt(w.since_ns), _to_dt(max(w.since_ns + 1, w.until_ns))
        window_slots = manifest.window_slots(since, until)
        flow_slots = manifest.window_slots(since - self.lookback, until)
        listed_from = flow_slots[0]
        have: dict[datetime, set[str]] = {}  # capture keys with a summary, per home slot
        pending: deque[tuple[str, manifest.Entry, Future[tuple[list[Found], str | None]]]] = deque()
        with ThreadPoolExecutor(self.workers) as pool:
            # listings a few slots ahead, not the whole window's names at once
            lists: dict[datetime, _SlotLists] = {}
            ahead = iter(flow_slots)

            def list_ahead() -> None:
                while len(lists) < LIST_AHEAD:
                    s = next(ahead, None)
                    if s is None:
                        return
                    lists[s] = (
                        pool.submit(self._names, flowindex.slot_prefix(self.prefix, s)),
                        pool.submit(self._names, manifest.slot_prefix(self.prefix, s))
                        if s >= window_slots[0] else None,
                    )  # fmt: skip
                    self.report.slots_listed += 1 + (s >= window_slots[0]) + self.compacted

            # a slot's compaction is read one slot ahead, not three: memory holds
            # two slots' compactions at most
            comps: dict[datetime, Future[compaction.Compacted | None]] = {}

            def comp_ahead(i: int) -> None:
                for s in flow_slots[i : i + 2]:
                    if self.compacted and s not in comps:
                        comps[s] = pool.submit(compaction.read, self.storage, self.prefix, s)

            comp: compaction.Compacted | None = None
            for i, slot in enumerate(flow_slots):
                comp = None  # the previous slot's: not held while the next is read
                list_ahead()
                comp_ahead(i)
                flow_list, entry_list = lists.pop(slot)
                seen = have.setdefault(slot, set())
                comp_f = comps.pop(slot, None)
                if comp_f is not None:
                    comp = comp_f.result()
                self.report.compactions += comp is not None
                for key, size in flow_list.result():
                    e = flowindex.parse_key(key, self.prefix)
                    if e is None or not e.has_object:
                        continue
                    seen.add(e.key)
                    if not self._wanted(e) or not self._believed(key, e):
                        continue
                    self.report.captures_in_window += 1
                    span = compaction.believed_span(comp, key, size, e)
                    if span is not None and comp is not None:
                        self.report.from_compaction += 1
                        done: Future[tuple[list[Found], str | None]] = Future()
                        done.set_result(self._scan(comp.text, e, *span))
                        pending.append((key, e, done))
                    else:
                        pending.append((key, e, pool.submit(self._read, key, e, size)))
                    while len(pending) > self.inflight:
                        yield from self._collect(*pending.popleft())
                if entry_list is not None:
                    for key, _size in entry_list.result():
                        self._entry(key, slot, window_slots[0], listed_from, have, pending, pool)
                    while len(pending) > self.inflight:
                        yield from self._collect(*pending.popleft())
                if slot >= window_slots[0]:  # earlier slots served the window's first
                    for old in [s for s in have if s < slot]:
                        del have[old]
            while pending:
                yield from self._collect(*pending.popleft())

    def _entry(self, key: str, slot: datetime, first: datetime, listed_from: datetime,
               have: dict[datetime, set[str]], pending: deque[Any],
               pool: ThreadPoolExecutor) -> None:  # fmt: skip
        """One manifest entry of a window slot: a capture in the window, counted
        once (in its home slot, or the window's first slot if it began before);
        is its summary there?"""
        e = manifest.parse_key(key, self.prefix)
        if e is None or not self._wanted(e):
            return
        home = flowindex.home_slot(e)
        if not (home == slot or (slot == first and home < slot)):
            return  # counted in another slot
        if home >= listed_from:
            if e.key not in have.get(home, set()) and self._believed(key, e):
                self.report.captures_in_window += 1
                self._missing(e)
            return
        # began before the listed slots (a long rotation): look it up by key
        if self._believed(key, e):
            self.report.captures_in_window += 1
            skey = flowindex.summary_key(e, self.prefix)
            pending.append((skey, e, pool.submit(self._read, skey, e, None)))

    def _missing(self, e: manifest.Entry) -> None:
        self.report.without_summary += 1
        if len(self.report.without_examples) < MAX_LISTED:
            self.report.without_examples.append(e.key)

    def _collect(self, key: str, e: manifest.Entry,
                 fut: Future[tuple[list[Found], str | None]]) -> Iterator[Found]:  # fmt: skip
        found, status = fut.result()
        status = status or ""
        if status == "missing":
            self._missing(e)
            return
        if status.startswith("unreadable"):
            self.report.unreadable.append((key, status.split(": ", 1)[-1]))
            return
        r = self.report
        r.summaries += 1
        r.flows_scanned += int(status.split(":")[1])
        if status.endswith(":incomplete"):
            r.incomplete_count += 1
            if len(r.incomplete) < MAX_LISTED:
                r.incomplete.append(e.key)
        r.maybe += sum(f.maybe for f in found)
        if found:
            total = r.hosts.setdefault(e.host, HostTotal())
            total.captures += 1
            for f in found:
                total.add(f.flow)
        yield from found
