"""Which captures `fetch --filter` need not download: those whose flow
summary (rollcap/flows/index.py) proves no packet of theirs matches.

A capture is downloaded, as without the index, unless all of this holds:

- the filter is one a summary can answer (verdict.compile_filter);
- the capture came from a manifest entry (its summary's key is derived from
  the entry) and its summary exists, is readable, names this capture and
  host, and counts the packets the entry counts;
- the summary is complete (not cut at the flow cap) and counts no non-IP
  packet: the summary says nothing about those (ARP, LLDP, a cut IP header),
  and tcpdump's ``host`` matches ARP too;
- no flow of it, in any of its views, could match in the window.

Summaries are found with one listing per 10-minute slot (per host when the
slot holds the captures of one or two hosts), then read in parallel. A
summary is bounded like any bucket object: at most MAX_STORED bytes are
downloaded and flowindex.MAX_TEXT decompressed, else the capture is downloaded.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rollcap.flows import compact as compaction
from rollcap.flows import index as flowindex
from rollcap.retrieve import verdict
from rollcap.retrieve.catalog import Capture
from rollcap.storage import manifest
from rollcap.storage.base import Storage, StorageError

log = logging.getLogger("rollcap.retrieve")

MAX_STORED = flowindex.MAX_STORED
WORKERS = 16

# why a capture is downloaded (SkipReport.fetched keys)
MAY_MATCH = "a flow may match"
NON_IP = "non-IP packets (the summary does not describe them)"
INCOMPLETE = "incomplete summary (more flows than the cap)"
MISSING = "no flow summary"
UNREADABLE = "unreadable or inconsistent flow summary"
NO_ENTRY = "no manifest entry (found by listing)"


@dataclass
class SkipReport:
    considered: int = 0
    skipped: int = 0
    undecidable: str | None = None  # why the filter cannot use the index
    fetched: Counter[str] = field(default_factory=Counter)  # why, for the ones downloaded
    summaries: int = 0  # summaries read
    summary_bytes: int = 0  # their stored bytes
    compactions: int = 0  # slot compactions read and used
    from_compaction: int = 0  # summaries taken from them (no GET of their own)
    compaction_bytes: int = 0  # their stored bytes
    skipped_bytes: int = 0  # stored bytes of the captures not downloaded
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """What `fetch -v` says."""
        if self.undecidable is not None:
            return [f"flow index not used: {self.undecidable}; all {self.considered} "
                    "captures are downloaded"]  # fmt: skip
        out = [
            f"flow index: skipped {self.skipped} of {self.considered} captures "
            f"({self.skipped_bytes:,} stored bytes): no flow in their summaries can match; "
            f"read {self.summaries} summaries ({self.summary_bytes:,} bytes) in "
            f"{self.seconds:.2f} s"
        ]
        if self.compactions:
            out.append(f"flow index: {self.from_compaction} more summaries from "
                       f"{self.compactions} slot compactions ({self.compaction_bytes:,} bytes)"
                       )  # fmt: skip
        for why, n in self.fetched.most_common():
            out.append(f"flow index: downloading {n}: {why}")
        return out


def entry_of(c: Capture) -> manifest.Entry | None:
    """The manifest entry a capture came from, as far as its fields tell
    (None for one found by listing: it has no close time)."""
    if c.end_ts is None or c.start is None or c.packets is None or c.pcap_bytes is None \
            or c.linktype is None:  # fmt: skip
        return None
    return manifest.Entry(
        key=c.key, host=c.host, iface=c.iface, opened=c.start, closed_ts=int(c.end_ts),
        first_ns=c.first_ns, last_ns=c.last_ns, packets=c.packets, pcap_bytes=c.pcap_bytes,
        size=c.size, linktype=c.linktype,
    )  # fmt: skip


def judge(node: verdict.Node, c: Capture, body: bytes,
          window: tuple[int, int] | None) -> str | None:  # fmt: skip
    """Why capture c must be downloaded, or None if its summary proves that
    no packet of it matches. ValueError: the summary is not one to trust."""
    return judge_text(node, c, flowindex.gunzip_text(body), window)


def judge_text(node: verdict.Node, c: Capture, text: str,
               window: tuple[int, int] | None) -> str | None:  # fmt: skip
    """judge() on a summary's text (from its object or its slot's compaction)."""
    head_line, _, rest = text.partition("\n")
    head = json.loads(head_line)
    if not isinstance(head, dict) or head.get("row") != "capture" \
            or head.get("version") != flowindex.VERSION:  # fmt: skip
        raise ValueError("not a flow summary of this version")
    if head.get("key") != c.key or head.get("host") != c.host or head.get("packets") != c.packets:
        raise ValueError("the summary names another capture, or other packets")
    if head.get("complete") is not True:
        return INCOMPLETE
    if head.get("non_ip") != 0:
        return NON_IP
    absent = verdict.absent_hosts(node, rest)
    if absent and node.absent(absent) == verdict.F:
        return None  # an address the filter needs is in no flow
    flows: list[dict[str, Any]] = []
    packets = 0
    for line in rest.splitlines():
        if line:
            row = json.loads(line)
            if not isinstance(row, dict) or row.get("row") != "flow":
                raise ValueError("a summary line that is not a flow")
            packets += int(row["packets"])
            flows.append(row)
    if packets != c.packets:
        raise ValueError("its flows do not count the capture's packets")
    linktype = int(head["linktype"])
    try:
        if verdict.any_may_match(node, linktype, flows, window):
            return MAY_MATCH
    except (KeyError, TypeError) as e:
        raise ValueError(f"a flow row without {e}") from None
    return None


def _listing_prefixes(wanted: dict[str, Capture], prefix: str) -> list[str]:
    by_slot: dict[str, set[str]] = defaultdict(set)
    for key, c in wanted.items():
        by_slot[key[: key.rindex("/") + 1]].add(c.host)
    out = []
    for slot, hosts in sorted(by_slot.items()):
        if len(hosts) <= 2:
            out += [f"{slot}{h}~" for h in sorted(hosts)]
        else:
            out.append(slot)
    return out


def _slot_of(listing: str, prefix: str) -> datetime | None:
    """The slot a whole-slot listing prefix names (None for a per-host one:
    one or two hosts' summaries cost less than the slot's compaction)."""
    base = flowindex.root(prefix)
    try:
        return datetime.strptime(listing[len(base) :], "date=%Y-%m-%d/hour=%H/minute=%M/"
                                 ).replace(tzinfo=UTC)  # fmt: skip
    except ValueError:
        return None


def prune(storage: Storage, captures: list[Capture], expr: str, *,
          window: tuple[int, int] | None = None, workers: int = WORKERS,
          use_compaction: bool = True) -> tuple[list[Capture], SkipReport]:  # fmt: skip
    """The captures to download for filter expr (in the order given), and
    what was skipped and why."""
    report = SkipReport(considered=len(captures))
    t0 = time.monotonic()
    try:
        node = verdict.compile_filter(expr)
    except verdict.Undecidable as e:
        report.undecidable = str(e)
        return captures, report
    prefix = storage.key_prefix
    wanted: dict[str, Capture] = {}
    fetch: dict[str, str] = {}  # capture key -> why downloaded
    for c in captures:
        entry = entry_of(c)
        if entry is None:
            fetch[c.key] = NO_ENTRY
        else:
            wanted[flowindex.summary_key(entry, prefix)] = c
    found: dict[str, int] = {}
    listings = _listing_prefixes(wanted, prefix)
    # slots listed whole: their compaction (if any) stands in for their
    # summaries; read one slot at a time (the next one's in flight), so memory
    # holds two slots' compactions, never the window's
    slots = [s for s in (_slot_of(p, prefix) for p in listings) if s is not None] \
        if use_compaction else []  # fmt: skip
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for infos in pool.map(lambda p: [(i.key, i.size) for i in storage.list(p)], listings):
            found.update((k, s) for k, s in infos if k in wanted)
        for key, c in wanted.items():
            if key not in found:
                fetch[c.key] = MISSING

        def one(key: str, comp: compaction.Compacted | None) -> tuple[str, str | None, int]:
            c, size = wanted[key], found[key]
            entry = entry_of(c)
            text = compaction.believed_text(comp, key, size, entry) if entry else None
            if text is not None:
                try:
                    return c.key, judge_text(node, c, text, window), -1
                except (ValueError, KeyError, TypeError, RecursionError) as e:
                    log.warning("%s: compacted rows not to trust (%s): reading the summary",
                                key, e)  # fmt: skip
            if size > MAX_STORED:
                return c.key, UNREADABLE, 0
            try:
                body = storage.read_small(key, size)
            except StorageError as e:
                log.warning("%s: flow summary not read (%s): downloading the capture", key, e)
                return c.key, UNREADABLE, 0
            try:
                return c.key, judge(node, c, body, window), size
            # a summary is a bucket object its host wrote: any shape may come
            except (ValueError, UnicodeDecodeError, zlib.error, KeyError, TypeError,
                    RecursionError) as e:  # fmt: skip
                log.warning("%s: not a flow summary to trust (%s): downloading the capture",
                            key, e)  # fmt: skip
                return c.key, UNREADABLE, size

        by_dir: dict[str, list[str]] = defaultdict(list)
        for key in sorted(found):
            by_dir[key[: key.rindex("/") + 1]].append(key)
        dirs = [flowindex.slot_prefix(prefix, s) for s in slots]
        comp_dirs = set(dirs)
        results = []
        ahead = [pool.submit(compaction.read, storage, prefix, s) for s in slots[:2]]
        for i, d in enumerate(dirs):
            comp = ahead.pop(0).result()
            if i + 2 < len(slots):
                ahead.append(pool.submit(compaction.read, storage, prefix, slots[i + 2]))
            if comp is not None:
                report.compactions += 1
                report.compaction_bytes += comp.size
            results += list(pool.map(lambda k, c=comp: one(k, c), by_dir.get(d, [])))
            del comp
        rest = [k for d, keys in by_dir.items() if d not in comp_dirs for k in keys]
        results += list(pool.map(lambda k: one(k, None), rest))
        for ckey, why, size in results:
            if size < 0:
                report.from_compaction += 1
            else:
                report.summaries += 1
                report.summary_bytes += size
            if why is not None:
                fetch[ckey] = why
    kept = [c for c in captures if c.key in fetch]
    for c in captures:
        if c.key in fetch:
            report.fetched[fetch[c.key]] += 1
        else:
            report.skipped += 1
            report.skipped_bytes += c.size
            log.debug("%s: skipped: no flow of its summary can match", c.key)
    report.seconds = time.monotonic() - t0
    return kept, report
