"""Manifest entries: one tiny object per capture and 10-minute slot it covers.

The offload writes them beside the captures, after a capture is stored and
verified and before the local copy is deleted, so `rollcap list` can answer a
fleet-wide window with a few listings and no HEADs:

    {prefix}/_index/manifest/v1/date=2026-11-26/hour=12/minute=10/
        web1~eth0~20261126T120501Z~1795694701.104000123~1795695301.002000~1795695302~1047~20040509~19442632~1~web1~2026~11~26~web1-eth0-20261126T120501Z-000042.pcap.zst.ndjson.gz

- Time first (date/hour/minute of the slot, UTC), then host and interface at
  the start of the name: a window across the fleet is one listing per slot,
  a window for one host one small listing per slot (prefix "host~"). Host
  and interface are not directories: a server that keeps directories
  (SeaweedFS's filer) lists one flat directory 10x faster than a tree with
  two levels per host. A capture is filed under **every** slot its span
  (open .. close) overlaps, so no look-back is needed.
- The key itself carries what `list` shows (open time, first/last packet,
  close time, packets, pcap bytes, stored bytes, link type, and the capture's
  key relative to the prefix with '/' written '~', which no capture key
  contains): a listing is enough.
- The body is the same record as one line of gzip-compressed NDJSON, in a
  Hive-style key=value layout that Athena, Trino and DuckDB read directly.
  Times are integers (epoch ns, UTC); ``home_slot`` is true in the one slot
  where the capture's span starts, so SQL counts each capture once
  (docs/sql/).
- Coverage entries: a file in which capture saw no packet (an idle link) is
  not stored, but the time it covered is: its entry names no object (REL
  ``~none``, size 0, body ``"has_object": false``), so `rollcap list` does
  not report a gap where capture ran on a quiet link. No reader downloads
  or HEADs anything for such an entry.
- Per-host write scope: every index kind lives below ``{prefix}/_index/`` and
  every entry's file name starts with ``HOST~``, so one IAM resource pattern,
  ``{prefix}/_index/*/${aws:username}~*``, confines a host to entries that name
  itself (storage/s3/policy.py). IAM's ``*`` also matches '/', so readers must
  refuse every key of another shape (parse_key does), and believe an entry
  only when its capture key lies under its host's prefix
  (retrieve/entrycheck.py).
- Safe with many writers and crashes: every entry is a new key written once
  by the one host it describes (no read-modify-write); a lost entry is only a
  hint lost, because the reader verifies any host whose entries leave a hole
  in the window against the capture listing itself (retrieve/select.py).
"""

from __future__ import annotations

import gzip
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rollcap.storage.base import Storage
from rollcap.timestamps import PacketSpan, from_text, to_text

#: every index kind (manifest, flows) lives below this, so one IAM statement
#: scopes a host's index writes (storage/s3/policy.py)
INDEX_DIR = "_index"
DIR = f"{INDEX_DIR}/manifest/v1"
SLOT = timedelta(minutes=10)
# A file spans at most a day (capture.rotate_seconds); a longer span comes from
# a clock step. Beyond this many slots only both ends are filed.
MAX_SLOTS = 160
SUFFIX = ".ndjson.gz"
# REL of a coverage entry: no key starts with '/' (keys.check_key), so no
# capture's REL starts with '~'
NO_OBJECT = "~none"
_OPENED_FMT = "%Y%m%dT%H%M%SZ"
_NUM = r"(\d+(?:\.\d{1,9})?)?"
_SLOT_RE = re.compile(r"date=\d{4}-\d{2}-\d{2}/hour=\d{2}/minute=\d{2}")
_NAME_RE = re.compile(
    r"(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*)~(?P<iface>[A-Za-z0-9_.@:+-]+)~"
    rf"(?P<opened>\d{{8}}T\d{{6}}Z)~(?P<first>{_NUM})~(?P<last>{_NUM})~(?P<closed>\d+)"
    r"~(?P<packets>\d+)~(?P<pcap_bytes>\d+)~(?P<size>\d+)~(?P<linktype>\d+)"
    r"~(?P<rel>[A-Za-z0-9!_.*'()~:@+=-]+)" + re.escape(SUFFIX)
)


@dataclass(frozen=True)
class Entry(PacketSpan):
    """What a manifest entry says about one stored capture."""

    key: str  # the capture's object key; "" for a coverage entry (no object)
    host: str
    iface: str
    opened: datetime  # file open time (UTC, whole seconds), as in its name
    closed_ts: int  # when the file was last written (epoch s, rounded up)
    first_ns: int | None  # first/last packet, epoch ns; None for a header-only file
    last_ns: int | None
    packets: int
    pcap_bytes: int
    size: int  # stored bytes
    linktype: int
    # the keep that shipped it (offload.mode = on-demand, `rollcap keep`): body only
    keep_id: str = ""
    keep_reason: str = ""

    @property
    def has_object(self) -> bool:
        """False for a coverage entry: the time was captured, no packet seen."""
        return bool(self.key)

    @property
    def ident(self) -> str:
        """Tells entries apart: the object key, or for a coverage entry its
        interface and open time (one file per interface opens per second)."""
        return self.key or f"{NO_OBJECT}~{self.iface}~{self.opened:{_OPENED_FMT}}"

    @property
    def span(self) -> tuple[float, float]:
        """The time this file was capturing: open (or first packet) to close."""
        lo = self.opened.timestamp()
        hi = float(self.closed_ts)
        if self.first_ts is not None:
            lo = min(lo, self.first_ts)
        if self.last_ts is not None:
            hi = max(hi, self.last_ts)
        return lo, max(lo, hi)


def root(prefix: str) -> str:
    """'{prefix}/_index/manifest/v1/' (or '_index/manifest/v1/' at the bucket root)."""
    p = prefix.strip("/")
    return f"{p}/{DIR}/" if p else f"{DIR}/"


def slot_of(ts: float) -> datetime:
    t = math.floor(ts / SLOT.total_seconds()) * SLOT.total_seconds()
    return datetime.fromtimestamp(t, UTC)


def slots(lo: float, hi: float) -> list[datetime]:
    """The slots overlapping [lo, hi] (both ends included)."""
    first, last = slot_of(lo), slot_of(hi)
    n = int((last - first) / SLOT) + 1
    if n > MAX_SLOTS:
        half = MAX_SLOTS // 2
        tail = [last - SLOT * i for i in range(half)][::-1]
        return [first + SLOT * i for i in range(half)] + tail
    return [first + SLOT * i for i in range(n)]


def window_slots(since: datetime, until: datetime) -> list[datetime]:
    """The slots overlapping the half-open window [since, until)."""
    return slots(since.timestamp(), max(since.timestamp(), until.timestamp() - 1e-6))


def slot_prefix(prefix: str, slot: datetime) -> str:
    return f"{root(prefix)}{slot:date=%Y-%m-%d/hour=%H/minute=%M}/"


def host_prefix(prefix: str, slot: datetime, host: str) -> str:
    """Every entry of host in slot starts with this ('~' is in no host name)."""
    return f"{slot_prefix(prefix, slot)}{host}~"


def _num(ns: int | None) -> str:
    return "" if ns is None else to_text(ns)


def _rel(key: str, prefix: str) -> str:
    if not key:
        return NO_OBJECT
    p = prefix.strip("/")
    rel = key[len(p) + 1 :] if p else key
    return rel.replace("/", "~")


def entry_name(e: Entry, prefix: str) -> str:
    return (
        f"{e.host}~{e.iface}~{e.opened:{_OPENED_FMT}}~{_num(e.first_ns)}~{_num(e.last_ns)}~{e.closed_ts}"
        f"~{e.packets}~{e.pcap_bytes}~{e.size}~{e.linktype}~{_rel(e.key, prefix)}{SUFFIX}"
    )


def entry_keys(e: Entry, prefix: str) -> list[str]:
    """Every key this capture is filed under: one per slot its span overlaps."""
    name = entry_name(e, prefix)
    lo, hi = e.span
    return [slot_prefix(prefix, s) + name for s in slots(lo, hi)]


def entry_body(e: Entry, slot: datetime | None = None) -> bytes:
    """The record as one NDJSON line, gzip-compressed (mtime 0: same bytes each
    time). ``slot``: the slot this copy is filed under (home_slot marks the
    first of the span's slots; without a slot, the record is its home).

    Times are integer epoch ns (UTC): SQL engines type them without guessing
    a zone; the exact packet times never pass through a float."""
    home = slots(*e.span)[0]
    rec = {
        "key": e.key or None,
        "has_object": e.has_object,
        "host": e.host,
        "iface": e.iface,
        "opened_ns": int(e.opened.timestamp()) * 1_000_000_000,
        "closed_ns": e.closed_ts * 1_000_000_000,
        "first_ns": e.first_ns,
        "last_ns": e.last_ns,
        "packets": e.packets,
        "pcap_bytes": e.pcap_bytes,
        "size": e.size,
        "linktype": e.linktype,
        "home_slot": slot is None or slot == home,
        "keep_id": e.keep_id or None,
        "keep_reason": e.keep_reason or None,
    }
    line = json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n"
    return gzip.compress(line.encode(), mtime=0)


def parse_key(key: str, prefix: str) -> Entry | None:
    """The entry a manifest key describes, or None if the key is not one."""
    base = root(prefix)
    if not key.startswith(base):
        return None
    parts = key[len(base) :].split("/")
    if len(parts) != 4 or not _SLOT_RE.fullmatch("/".join(parts[:3])):
        return None
    n = _NAME_RE.fullmatch(parts[3])
    if n is None:
        return None
    try:
        opened = datetime.strptime(n["opened"], _OPENED_FMT).replace(tzinfo=UTC)
    except ValueError:
        return None
    p = prefix.strip("/")
    if n["rel"] == NO_OBJECT:
        key = ""
    elif n["rel"].startswith("~"):
        return None  # no key of ours starts with '/'
    else:
        rel = n["rel"].replace("~", "/")
        key = f"{p}/{rel}" if p else rel
    return Entry(
        key=key,
        host=n["host"],
        iface=n["iface"],
        opened=opened,
        closed_ts=int(n["closed"]),
        first_ns=from_text(n["first"]) if n["first"] else None,
        last_ns=from_text(n["last"]) if n["last"] else None,
        packets=int(n["packets"]),
        pcap_bytes=int(n["pcap_bytes"]),
        size=int(n["size"]),
        linktype=int(n["linktype"]),
    )


#: index kinds whose objects are named like a manifest entry (the flow
#: summaries of rollcap/flows/index.py): one name grammar, one IAM pattern
ENTRY_NAMED = (DIR, f"{INDEX_DIR}/flows/v1")


def parse_any(key: str, prefix: str) -> Entry | None:
    """The capture any entry-named index object (manifest entry or flow
    summary) describes, or None if the key is neither."""
    p = prefix.strip("/")
    for d in ENTRY_NAMED:
        base = f"{p}/{d}/" if p else f"{d}/"
        if key.startswith(base):
            return parse_key(root(prefix) + key[len(base) :], prefix)
    return None


#: keep records (rollcap/keep/shipping.py): one per host and keep, named like
#: every index object so the same per-host IAM scope covers them
KEEPS_DIR = f"{INDEX_DIR}/keeps/v1"
_KEEP_RECORD_RE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9.-]*~[A-Za-z0-9][A-Za-z0-9._-]{0,63}\.json"
)


def is_keep_record(key: str, prefix: str) -> bool:
    p = prefix.strip("/")
    base = f"{p}/{KEEPS_DIR}/" if p else f"{KEEPS_DIR}/"
    return key.startswith(base) and bool(_KEEP_RECORD_RE.fullmatch(key[len(base) :]))


def host_of(key: str) -> str | None:
    """The host a manifest key names (cheap; for range listings)."""
    name = key.rpartition("/")[2]
    host, sep, _rest = name.partition("~")
    return host if sep and host else None


def write_entries(storage: Storage, e: Entry, prefix: str) -> list[str]:
    """Store the entry under every slot it covers; return the keys written.

    Each key is written by this host alone, whole, and rewritten with the same
    bytes after a crash: no race with other hosts or with itself."""
    name = entry_name(e, prefix)
    keys = []
    for s in slots(*e.span):
        key = slot_prefix(prefix, s) + name
        storage.put_bytes(key, entry_body(e, s), content_type="application/x-ndjson")
        keys.append(key)
    return keys
