"""Which stored captures overlap a time window: prefix-planned listing + metadata.

A file is named after the time it was opened and can run past midnight, so
the listing looks back ``LOOKBACK`` (the longest rotation the schema allows)
before --since. Keys are pre-filtered by the start time they carry; only the
survivors are HEADed (in parallel) for the first/last packet times in their
metadata. Objects without rollcap metadata (copied in by hand, older tools)
are kept when their key's start time allows an overlap: fetch then filters
their packets by time.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import pairwise

from rollcap.retrieve.keyplan import (
    EXTENSIONS,
    KeyPattern,
    base_prefix,
    plan_prefixes,
    supports_host_discovery,
    window_days,
)
from rollcap.storage.base import META, ObjectInfo, Storage
from rollcap.timestamps import PacketSpan, from_datetime, from_text

log = logging.getLogger("rollcap.retrieve")
# How long a file may still get packets after the next file of its host and
# interface opened (capture's switch overlap plus tcpdump's stop), generously.
HANDOVER = timedelta(seconds=60)

# capture.rotate_seconds is at most a day, so no file spans more than that
LOOKBACK = timedelta(days=1)


@dataclass(frozen=True)
class Capture(PacketSpan):
    """One stored capture file, as far as key and metadata tell."""

    key: str
    size: int  # stored (compressed) bytes
    host: str
    iface: str
    start: datetime | None  # from the key
    first_ns: int | None  # first/last packet, epoch ns, from metadata; None when unknown
    last_ns: int | None
    packets: int | None
    pcap_bytes: int | None
    linktype: int | None
    end_ts: float | None = None  # when the file was last written (manifest entries only)

    def overlaps(self, since_ns: int, until_ns: int) -> bool:
        """Whether a packet of this file may lie in [since, until): exact to the ns."""
        if self.first_ns is None or self.last_ns is None:
            return True
        return self.first_ns < until_ns and self.last_ns >= since_ns

    @property
    def span(self) -> tuple[float, float] | None:
        """The time this file was capturing, as far as known: open (or first
        packet) to close (or last packet); None if neither is known."""
        opened = _epoch(self.start) if self.start else None
        lo = [t for t in (self.first_ts, opened) if t is not None]
        if not lo:
            return None
        hi = [t for t in (self.end_ts, self.last_ts) if t is not None]
        return min(lo), max([min(lo), *hi])

    @property
    def has_metadata(self) -> bool:
        return self.first_ns is not None and self.last_ns is not None

    def sort_key(self) -> tuple[float, str]:
        t = self.first_ts if self.first_ts is not None else _epoch(self.start)
        return (t, self.key)


@dataclass
class Search:
    """What was looked at, for the "nothing found" message and debug logs."""

    hosts: list[str] = field(default_factory=list)
    days: list[date] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    whole_prefix: bool = False
    listed: int = 0
    skipped_foreign: int = 0
    # (object, host its key names): metadata naming another host, not shown
    mislabelled: list[tuple[Capture, str]] = field(default_factory=list)

    def describe(self) -> str:
        hosts = ", ".join(self.hosts) if self.hosts else "(no hosts found)"
        if self.days:
            span = f"{self.days[0]:%Y-%m-%d}" + (
                f" to {self.days[-1]:%Y-%m-%d}" if len(self.days) > 1 else ""
            )
            days = f"UTC days {span} ({len(self.days)} days)"
        else:
            days = "no days"
        where = "the whole prefix" if self.whole_prefix else f"{len(self.prefixes)} prefixes"
        return f"hosts {hosts}; {days}; listed {where}, {self.listed} objects"


# (object, host, interface, start) as far as the key tells
Candidate = tuple[ObjectInfo, str | None, str | None, datetime | None]


def _epoch(dt: datetime | None) -> float:
    return dt.timestamp() if dt is not None else 0.0


def _ns(meta: dict[str, str], name: str) -> int | None:
    """A packet time of the metadata: 6 digits (µs, every rollcap), 9 (ns)."""
    text = meta.get(META[name])
    return None if text is None else from_text(text)


def _int(meta: dict[str, str], name: str) -> int | None:
    try:
        return int(meta[META[name]])
    except (KeyError, ValueError):
        return None


def from_metadata(key: str, size: int, meta: dict[str, str], host: str | None,
                  iface: str | None, start: datetime | None) -> Capture:  # fmt: skip
    """A capture as its object's metadata describes it (host and interface
    from the key where the metadata has none)."""
    return Capture(
        key=key,
        size=size,
        host=meta.get(META["host"]) or host or "",
        iface=meta.get(META["iface"]) or iface or "",
        start=start,
        first_ns=_ns(meta, "first_ts"),
        last_ns=_ns(meta, "last_ts"),
        packets=_int(meta, "packets"),
        pcap_bytes=_int(meta, "pcap_bytes"),
        linktype=_int(meta, "linktype"),
    )


def find_captures(
    storage: Storage,
    *,
    template: str,
    prefix: str,
    since: datetime,
    until: datetime,
    hosts: list[str] | None = None,
    iface: str | None = None,
    workers: int = 8,
    known: set[str] | dict[str, Capture] | None = None,
) -> tuple[list[Capture], Search]:
    """Captures whose packets may fall in [since, until), sorted by time.

    ``known``: keys the caller has already described (manifest entries): neither
    HEADed nor returned."""
    known = known or {}
    search = Search(days=window_days(since, until, LOOKBACK))
    pattern = KeyPattern(template, prefix)
    root = base_prefix(prefix)
    discover = supports_host_discovery(template)
    if hosts:
        search.hosts = sorted(set(hosts))
    elif discover:
        found = [p[len(root) :].rstrip("/") for p in storage.list_prefixes(root)]
        # not .hidden/ nor _index/ (host names start with a letter or digit)
        search.hosts = sorted(h for h in found if h and not h.startswith((".", "_")))
    prefixes: list[str] = []
    if search.hosts:
        for h in search.hosts:
            prefixes += plan_prefixes(template, prefix, h, search.days, iface)
    elif not discover:
        prefixes = plan_prefixes(template, prefix, None, search.days, iface)
    prefixes = list(dict.fromkeys(prefixes))
    if root in prefixes:
        log.debug(
            "key template %r cannot be planned by host and day: listing %r whole",
            template,
            root,
        )
        prefixes, search.whole_prefix = [root], True
    search.prefixes = prefixes
    for p in prefixes:
        log.debug("listing %r", p)

    lower = since - LOOKBACK

    def scan(prefix: str) -> tuple[int, list[Candidate]]:
        """List one prefix, keeping only keys that may overlap (memory: candidates)."""
        n = 0
        keep: list[Candidate] = []
        for info in storage.list(prefix):
            n += 1
            if not info.key.endswith(EXTENSIONS):
                continue
            kf = pattern.parse(info.key)
            if kf is None:
                keep.append((info, None, None, None))
                continue
            if kf.start is not None and (kf.start > until or kf.start + kf.precision <= lower):
                continue  # opened after the window, or long before it
            if hosts and kf.host is not None and kf.host not in hosts:
                continue
            if iface and kf.iface is not None and kf.iface != iface:
                continue
            keep.append((info, kf.host, kf.iface, kf.start))
        return n, keep

    candidates: list[Candidate] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for n, keep in pool.map(scan, prefixes):
            search.listed += n
            candidates += keep
        candidates = only_last_before(candidates, since)
        heads = list(
            pool.map(lambda c: None if c[0].key in known else _metadata(storage, c[0]), candidates)
        )

    out: list[Capture] = []
    s_ns, u_ns = from_datetime(since), from_datetime(until)
    for (info, khost, kiface, kstart), got in zip(candidates, heads, strict=True):
        if info.key in known:
            continue  # the caller has it already
        if got is None:
            continue  # deleted between list and head (archive ring): nothing to fetch
        size, meta = got
        cap = from_metadata(info.key, size, meta, khost, kiface, kstart)
        if khost is not None and cap.host != khost:
            # only the host its key names may write there: the metadata lies
            search.mislabelled.append((cap, khost))
            continue
        if hosts and cap.host not in hosts:
            continue
        if iface and cap.iface != iface:
            continue
        if cap.packets == 0:
            continue  # header-only file (a rotation with no traffic); no times either
        if cap.has_metadata:
            if not cap.overlaps(s_ns, u_ns):
                continue
        elif kstart is None:
            search.skipped_foreign += 1
            log.warning(
                "skipping %s: no rollcap metadata and the key does not match "
                "offload.key_template, so its time is unknown",
                info.key,
            )
            continue
        out.append(cap)
    if search.whole_prefix and not hosts:
        search.hosts = sorted({c.host for c in out if c.host})
    out.sort(key=Capture.sort_key)
    return out, search


def only_last_before(candidates: list[Candidate], since: datetime) -> list[Candidate]:
    """Of the files a host+interface opened before since, keep only the last one.

    One capture writes one file at a time, so a file ends (within HANDOVER)
    when the next one of its host and interface starts: only the last file
    opened before the window, and those it opened shortly before, can reach
    into it. This keeps the HEADs to about one per host plus
    the files opened inside the window, instead of a day's worth.
    Keys without a host, interface or exact start are all kept.
    """
    before: dict[tuple[str, str], list[tuple[datetime, str]]] = {}
    for info, host, iface, start in candidates:
        if host is None or iface is None or start is None or start >= since:
            continue
        before.setdefault((host, iface), []).append((start, info.key))
    keep_before: set[str] = set()
    for files in before.values():
        files.sort(reverse=True)
        keep_before.add(files[0][1])
        # A file may run a little past the start of the next one (make-before-
        # break overlap, start times floored to the second): keep the older
        # ones too while the next one opened less than HANDOVER before since.
        for (newer, _k), (_start, key) in pairwise(files):
            if newer < since - HANDOVER:
                break
            keep_before.add(key)
    return [
        c
        for c in candidates
        if c[1] is None or c[2] is None or c[3] is None or c[3] >= since or c[0].key in keep_before
    ]


def _metadata(storage: Storage, info: ObjectInfo) -> tuple[int, dict[str, str]] | None:
    if info.metadata:
        return info.size, dict(info.metadata)
    head = storage.head(info.key)
    if head is None:
        return None
    return head.size, dict(head.metadata)
