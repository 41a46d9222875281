"""Flow summaries in the bucket: keys, body, writing and reading.

    {prefix}/_index/flows/v1/date=2026-11-26/hour=12/minute=10/
        HOST~IFACE~...~REL.ndjson.gz

- The name is the capture's manifest entry name (storage/manifest.py): it
  starts with ``HOST~``, so the IAM pattern ``{prefix}/_index/*/${aws:username}~*``
  scopes it to its host like the manifest, and it names the capture.
- One copy per capture, under its home slot (the first 10-minute slot of its
  span; Hive-style date/hour/minute, UTC). A fleet-wide window is one listing
  per slot; a reader that starts from manifest entries (which are filed in
  every slot) finds a capture's summary with summary_key().
- Body: gzip NDJSON, typed like the manifest (integer epoch ns). One
  ``"row": "capture"`` line first, then one ``"row": "flow"`` line per flow
  (fields: docs/flows.md). Every line carries host, iface and key, so an SQL
  engine needs no join.
- Written by the offload after the capture is stored and before its manifest
  entries and the local delete: a failure leaves the file to retry, and a
  capture whose manifest entry exists has its summary (when the index is on).
"""

from __future__ import annotations

import gzip
import json
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollcap.flows.communityid import ICMP, ICMP6, PORT_PROTOS, community_id, icmp_ports, ntop
from rollcap.storage import manifest
from rollcap.storage.base import Storage

if TYPE_CHECKING:  # numpy is the summariser's: readers of the index go without it
    from rollcap.flows.summary import FlowSummary

DIR = manifest.ENTRY_NAMED[1]
VERSION = 1


def root(prefix: str) -> str:
    """'{prefix}/_index/flows/v1/' (or '_index/flows/v1/' at the bucket root)."""
    p = prefix.strip("/")
    return f"{p}/{DIR}/" if p else f"{DIR}/"


def slot_prefix(prefix: str, slot: datetime) -> str:
    return f"{root(prefix)}{slot:date=%Y-%m-%d/hour=%H/minute=%M}/"


def home_slot(e: manifest.Entry) -> datetime:
    return manifest.slots(*e.span)[0]


def summary_key(e: manifest.Entry, prefix: str) -> str:
    """Where the flow summary of the capture e describes lives."""
    return slot_prefix(prefix, home_slot(e)) + manifest.entry_name(e, prefix)


def parse_key(key: str, prefix: str) -> manifest.Entry | None:
    """The capture a summary key names (the same checks as the manifest's), or None."""
    base = root(prefix)
    if not key.startswith(base):
        return None
    return manifest.parse_key(manifest.root(prefix) + key[len(base) :], prefix)


def _icmp_code(proto: int, f: Any) -> int:
    """The code of the first packet's type. For request/reply types the flow
    key holds the counterpart type instead (Community ID); their code is 0."""
    _, _pair, one_way = icmp_ports(proto, f.sport, f.dport)
    return int(f.dport) if one_way else 0


def _flow_row(s: FlowSummary, key: Any, f: Any, where: dict[str, Any]) -> dict[str, Any]:
    vlans, proto, a, pa, b, pb = key
    icmp = proto in (ICMP, ICMP6)
    ports = proto in PORT_PROTOS
    cid = None
    if pa is not None and pb is not None:
        cid = community_id(a, b, proto, pa, pb)
    elif not ports and not icmp:
        cid = community_id(a, b, proto, None, None)
    return {
        "row": "flow", **where,
        "linktype": s.linktype, "vlan": list(vlans) or None, "ip": 4 if len(a) == 4 else 6,
        "proto": proto, "src": ntop(f.src), "dst": ntop(f.dst),
        "sport": f.sport if ports else None, "dport": f.dport if ports else None,
        "icmp_type": f.sport if icmp else None, "icmp_code": _icmp_code(proto, f) if icmp else None,
        "first_ns": f.first_ns, "last_ns": f.last_ns, "packets": f.packets, "bytes": f.nbytes,
        "community_id": cid,
    }  # fmt: skip


def summary_body(e: manifest.Entry, s: FlowSummary) -> bytes:
    """The gzip NDJSON of one capture's summary (mtime 0: the same bytes for
    the same capture, so a rewrite after a crash is harmless)."""
    where = {"host": e.host, "iface": e.iface, "key": e.key}
    head = {
        "row": "capture", **where, "version": VERSION, "linktype": s.linktype,
        "packets": s.packets, "non_ip": s.non_ip, "flows": len(s.flows),
        "complete": s.complete, "first_ns": e.first_ns, "last_ns": e.last_ns,
        # beyond the cap: the addresses and (proto, port) of the flows not kept
        "more_addrs": sorted(ntop(a) for a in s.more_addrs),
        "more_ports": sorted([p, port] for p, port in s.more_ports),
        "sets_complete": s.sets_complete,
    }  # fmt: skip
    lines = [json.dumps(head, separators=(",", ":"))]
    for key, f in s.flows.items():
        lines.append(json.dumps(_flow_row(s, key, f, where), separators=(",", ":")))
    return gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=6, mtime=0)


def write_summary(storage: Storage, e: manifest.Entry, s: FlowSummary, prefix: str) -> str:
    """Store the summary (write-once, like a manifest entry); return its key."""
    key = summary_key(e, prefix)
    storage.put_bytes(key, summary_body(e, s), content_type="application/x-ndjson")
    return key


@dataclass(frozen=True)
class StoredSummary:
    """A summary as read back: its capture row and its flow rows (dicts with
    the fields of docs/flows.md)."""

    capture: dict[str, Any]
    flows: list[dict[str, Any]]

    @property
    def complete(self) -> bool:
        return bool(self.capture.get("complete"))


def parse_body(body: bytes) -> StoredSummary:
    """A summary object's bytes; ValueError (naming the problem) if it is not one."""
    try:
        text = gzip.decompress(body).decode()
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as err:
        raise ValueError(f"not a gzip NDJSON flow summary: {err}") from None
    rows = list(_rows(text))
    if not rows or rows[0].get("row") != "capture":
        raise ValueError("a flow summary starts with its capture row")
    if rows[0].get("version") != VERSION:
        raise ValueError(f"flow summary version {rows[0].get('version')!r}; this reads {VERSION}")
    return StoredSummary(rows[0], [r for r in rows[1:] if r.get("row") == "flow"])


def _rows(text: str) -> Iterator[dict[str, Any]]:
    for n, line in enumerate(text.splitlines(), 1):
        if line:
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"line {n}: {err}") from None
            if not isinstance(row, dict):
                raise ValueError(f"line {n}: not a JSON object")
            yield row


# a summary is a bucket object its host wrote: read like any, within bounds
MAX_STORED = 64 << 20  # bytes downloaded
MAX_TEXT = 512 << 20  # bytes decompressed


def gunzip_text(body: bytes) -> str:
    """A summary's text, at most MAX_TEXT of it (ValueError beyond, or when the
    gzip stream is not whole: a bomb or a cut object is not read)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        text = d.decompress(body, MAX_TEXT)
    except zlib.error as e:
        raise ValueError(f"not a gzip stream ({e})") from None
    if d.unconsumed_tail or not d.eof:
        raise ValueError("not a whole gzip stream, or larger than the bound")
    return text.decode()


def read_body(storage: Storage, key: str, size: int | None = None) -> bytes:
    """The stored bytes of the summary at key (StorageError if the destination
    cannot give them). ``size``: as its listing states it (one ranged GET, and
    no more bytes than that). Summaries are small: they go through a private
    temp file, never a shared directory."""
    with tempfile.TemporaryDirectory(prefix="rollcap-flows-") as tmp:
        dest = Path(tmp) / "summary.ndjson.gz"
        storage.download(key, dest, size=size)
        return dest.read_bytes()


def read_summary(storage: Storage, key: str, size: int | None = None) -> StoredSummary:
    """The summary stored at key (StorageError if the destination cannot give
    it, ValueError if the object is not a summary)."""
    return parse_body(read_body(storage, key, size))
