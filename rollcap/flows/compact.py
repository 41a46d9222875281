"""Per-slot compaction of the flow index: one object per 10-minute slot that
holds the per-host summaries of that slot, so a fleet-wide reader makes one
GET per slot instead of one per capture.

    {prefix}/_index/flows/v1c/date=2026-11-26/hour=12/minute=10/
        g000002-0123456789abcdef.ndjson.gz

- Written by `rollcap index --compact` under a requester/analyst identity,
  never by a host: a host may write only keys naming itself (``HOST~``), and
  a compacted name has no ``~``. Write-once (If-None-Match): a slot that
  gained summaries gets a new generation (``g`` + 6 digits, then the first 16
  hex digits of the SHA-256 of its source list, so a key names all it holds);
  readers use the highest generation.
- Body: gzip NDJSON. First a ``"row": "compaction"`` line with the slot, the
  generation and ``sources``: [key, size, sha256] of every per-host summary
  it holds. Then each source's lines as the host wrote them (its capture row,
  then its flow rows: every row keeps host, iface and capture key).
- Trust (readers, read()): a compacted object only stands in for per-host
  summaries that the slot's listing shows, with the size the compaction
  records; a capture's rows are believed only when they name that capture and
  host, count the packets its name counts, and (when complete) their flows
  and non-IP count add up to them. Anything else falls back to the per-host summary. A corrupt
  or oversized compacted object is one warning line: every capture of the
  slot falls back.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from rollcap.flows import index as flowindex
from rollcap.storage import manifest
from rollcap.storage.base import Storage, StorageError

log = logging.getLogger("rollcap.retrieve")

DIR = f"{manifest.INDEX_DIR}/flows/v1c"
VERSION = 1
MAX_STORED = 256 << 20  # a compacted object larger than this is not read
MAX_TEXT = 2 << 30  # nor one that decompresses to more
_CAPTURE = '{"row":"capture"'  # how summary_body starts a capture row
_PACKETS = re.compile(r'"packets":(\d+)')
_NAME_RE = re.compile(r"g(\d{6})-([0-9a-f]{16})\.ndjson\.gz")


def root(prefix: str) -> str:
    p = prefix.strip("/")
    return f"{p}/{DIR}/" if p else f"{DIR}/"


def slot_prefix(prefix: str, slot: datetime) -> str:
    return f"{root(prefix)}{slot:date=%Y-%m-%d/hour=%H/minute=%M}/"


def name_of(key: str, base: str) -> tuple[int, str] | None:
    """(generation, digest) of a compacted key directly below base, or None."""
    m = _NAME_RE.fullmatch(key[len(base) :]) if key.startswith(base) else None
    return (int(m[1]), m[2]) if m else None


def latest(storage: Storage, prefix: str, slot: datetime) -> tuple[str, int, int] | None:
    """(key, size, generation) of the newest compaction of slot, or None."""
    base = slot_prefix(prefix, slot)
    best: tuple[str, int, int] | None = None
    for info in storage.list(base):
        g = name_of(info.key, base)
        if g is not None and (best is None or (g[0], info.key) > (best[2], best[0])):
            best = (info.key, info.size, g[0])
    return best


@dataclass
class Compacted:
    """A compacted slot as read back: per summary key, its size as recorded
    and where its lines (capture row first) lie in ``text``: one string for
    the slot, never a copy per capture."""

    key: str
    generation: int
    size: int = 0  # stored bytes
    text: str = ""
    sources: dict[str, int] = field(default_factory=dict)
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)

    def text_of(self, key: str) -> str:
        start, end = self.spans[key]
        return self.text[start:end]


def _gunzip(body: bytes, limit: int) -> str:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    text = d.decompress(body, limit)
    if d.unconsumed_tail or not d.eof:
        raise ValueError("not a whole gzip stream, or larger than the bound")
    return text.decode()


def parse(key: str, body: bytes, prefix: str, slot: datetime,
          limit: int = MAX_TEXT) -> Compacted:  # fmt: skip
    """A compacted object's bytes; ValueError naming the problem if it is not
    one of this slot."""
    try:
        text = _gunzip(body, limit)
    except (zlib.error, UnicodeDecodeError) as e:
        raise ValueError(f"not gzip NDJSON: {e}") from None
    eol = text.find("\n")
    head_line = text if eol < 0 else text[:eol]  # (the rest is not copied)
    try:
        head = json.loads(head_line)
    except json.JSONDecodeError as e:
        raise ValueError(f"line 1: {e}") from None
    if not isinstance(head, dict) or head.get("row") != "compaction" \
            or head.get("version") != VERSION:  # fmt: skip
        raise ValueError("not a flow index compaction of this version")
    if head.get("slot") != f"{slot:%Y-%m-%dT%H:%M}":
        raise ValueError(f"describes slot {head.get('slot')!r}")
    out = Compacted(key, int(head.get("generation", 0)), len(body))
    fbase = flowindex.slot_prefix(prefix, slot)
    for src in head.get("sources") or []:
        if not (isinstance(src, list) and len(src) == 3 and isinstance(src[0], str)
                and isinstance(src[1], int) and src[0].startswith(fbase)):  # fmt: skip
            raise ValueError(f"a source that is not a summary of this slot: {src!r}")
        out.sources[src[0]] = src[1]
    # group the lines by capture: a capture row opens each source's lines
    by_capture = {flowindex.parse_key(k, prefix): k for k in out.sources}
    names: dict[tuple[Any, Any], str] = {
        (e.host, e.key): k for e, k in by_capture.items() if e is not None}
    body_at = len(head_line) + 1
    if body_at < len(text) and not text.startswith(_CAPTURE, body_at):
        raise ValueError("line 2: not a capture row")
    out.text = text
    # each source's lines start at its capture row: find those, parse only
    # that row (the flow rows are the readers' to parse)
    sep = "\n" + _CAPTURE
    pos, n = body_at, 0
    while pos < len(text):
        n += 1
        nxt = text.find(sep, pos)
        end = len(text) if nxt < 0 else nxt + 1
        eol = text.find("\n", pos, end)
        try:
            row = json.loads(text[pos : eol if eol >= 0 else end])
        except json.JSONDecodeError as e:
            raise ValueError(f"capture row {n}: {e}") from None
        cur = names.get((row.get("host"), row.get("key"))) if isinstance(row, dict) else None
        if cur is None:
            raise ValueError(f"capture row {n}: a capture no source names")
        if cur in out.spans:
            raise ValueError(f"{cur}: twice")
        out.spans[cur] = (pos, end)
        pos = end
    return out


def read(storage: Storage, prefix: str, slot: datetime) -> Compacted | None:
    """The newest compaction of slot, or None: there is none, or it cannot be
    used (one warning line; the readers fall back to per-host summaries)."""
    try:
        found = latest(storage, prefix, slot)
        if found is None:
            return None
        key, size, _gen = found
        if size > MAX_STORED:
            raise ValueError(f"{size:,} bytes, over the bound of {MAX_STORED:,}")
        return parse(key, storage.read_small(key, size), prefix, slot)
    except (StorageError, ValueError, RecursionError) as e:
        where = slot_prefix(prefix, slot)
        log.warning("%s: flow index compaction not used (%s): reading per-host summaries",
                    where, e)  # fmt: skip
        return None


def believed_span(comp: Compacted | None, key: str, size: int,
                  e: manifest.Entry) -> tuple[int, int] | None:  # fmt: skip
    """Where in comp.text the lines of the summary at key (size as listed)
    lie, when the compaction holds that very summary and its rows agree with
    the capture's name; None: read the per-host summary instead."""
    if comp is None or comp.sources.get(key) != size or key not in comp.spans:
        return None
    text = comp.text
    start, end = comp.spans[key]
    eol = text.find("\n", start, end)
    if eol < 0:
        eol = end
    try:
        head = json.loads(text[start:eol])
        if head.get("host") != e.host or head.get("iface") != e.iface or head.get("key") != e.key \
                or head.get("packets") != e.packets:  # fmt: skip
            raise ValueError("names another capture, or other packets")
        if head.get("complete") is True:  # every packet in a flow row, or not IP
            # one "packets" per flow row (a regex: parsing every row here would
            # double the readers' work; their own parse sees the same rows)
            counts = _PACKETS.findall(text, eol, end)
            rows = text.count("\n", eol + 1, end) + (not text.endswith("\n", 0, end))
            if len(counts) != rows or \
                    sum(map(int, counts)) + int(head.get("non_ip", 0)) != e.packets:
                raise ValueError("its flows do not count the capture's packets")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:
        log.warning("%s: compacted rows not believed (%s): reading the summary", key, err)
        return None
    return start, end


def believed_text(comp: Compacted | None, key: str, size: int,
                  e: manifest.Entry) -> str | None:  # fmt: skip
    """The text of believed_span, or None."""
    span = believed_span(comp, key, size, e)
    return None if span is None or comp is None else comp.text[span[0] : span[1]]


# -- writing ------------------------------------------------------------------


SlotKind = Literal["written", "current", "empty", "failed"]


@dataclass
class SlotResult:
    slot: datetime
    kind: SlotKind
    key: str = ""
    sources: int = 0
    detail: str = ""


def _source_text(storage: Storage, key: str, size: int, prefix: str) -> tuple[str, str]:
    """(text, sha256 of the stored bytes) of one per-host summary, checked as
    the readers check it: its body names the capture its key names."""
    body = storage.read_small(key, size)
    e = flowindex.parse_key(key, prefix)
    if e is None:
        raise ValueError("not a summary name")
    s = flowindex.parse_body(body)  # ValueError if not a summary
    where = (s.capture.get("host"), s.capture.get("iface"), s.capture.get("key"))
    if where != (e.host, e.iface, e.key):
        raise ValueError(f"its body describes {where!r}")
    text = gzip.decompress(body).decode()
    lines = [ln for ln in text.split("\n") if ln]
    if not lines[0].startswith(_CAPTURE) or any(ln.startswith(_CAPTURE) for ln in lines[1:]):
        raise ValueError("not one capture row, first")
    return "\n".join(lines), hashlib.sha256(body).hexdigest()


def compact_slot(storage: Storage, prefix: str, slot: datetime, *,
                 workers: int = 16) -> SlotResult:  # fmt: skip
    """Write a new generation for slot if its summaries differ from the
    newest compaction's sources."""
    fbase = flowindex.slot_prefix(prefix, slot)
    listed = sorted((i.key, i.size) for i in storage.list(fbase)
                    if flowindex.parse_key(i.key, prefix) is not None)  # fmt: skip
    prev = latest(storage, prefix, slot)
    gen = prev[2] if prev else 0
    if not listed:
        return SlotResult(slot, "empty")
    if prev is not None:
        old = read(storage, prefix, slot)
        if old is not None and sorted(old.sources.items()) == listed:
            return SlotResult(slot, "current", prev[0], len(listed))
    with ThreadPoolExecutor(max(1, workers)) as pool:

        def one(ks: tuple[str, int]) -> tuple[str, int, str, str] | None:
            try:
                text, digest = _source_text(storage, ks[0], ks[1], prefix)
            except (StorageError, ValueError, OSError, EOFError, zlib.error,
                    UnicodeDecodeError, RecursionError) as err:  # fmt: skip
                log.warning("%s: not compacted (%s)", ks[0], err)
                return None
            return ks[0], ks[1], digest, text

        got = [r for r in pool.map(one, listed) if r is not None]
    sources = [[k, size, digest] for k, size, digest, _t in got]
    digest = hashlib.sha256(json.dumps(sources, separators=(",", ":")).encode()).hexdigest()
    head = {"row": "compaction", "version": VERSION, "slot": f"{slot:%Y-%m-%dT%H:%M}",
            "generation": gen + 1, "sources": sources}  # fmt: skip
    body = "\n".join([json.dumps(head, separators=(",", ":"))] + [t for *_, t in got]) + "\n"
    key = f"{slot_prefix(prefix, slot)}g{gen + 1:06d}-{digest[:16]}.ndjson.gz"
    storage.put_bytes(key, gzip.compress(body.encode(), compresslevel=6, mtime=0),
                      content_type="application/x-ndjson")  # fmt: skip
    return SlotResult(slot, "written", key, len(got), f"generation {gen + 1}")


def compact(storage: Storage, prefix: str, since: datetime, until: datetime,
            workers: int = 16) -> Iterator[SlotResult]:  # fmt: skip
    """Compact every slot of [since, until), one at a time."""
    for slot in manifest.window_slots(since, until):
        try:
            yield compact_slot(storage, prefix, slot, workers=workers)
        except StorageError as e:
            yield SlotResult(slot, "failed", detail=str(e))
