"""Which manifest entries a reader may believe: one rule, for list, fetch and hold.

An entry is a claim written by some host. With the host policy
(storage/s3/policy.py) a host can write only entries whose name starts with its
own name, so an entry is believed only when:

- its capture key lies under the prefix of the host it names (policy.key_in_scope):
  web2 may write ``web2~...`` entries, but one naming a key below ``web1/`` is
  refused, so it can neither relabel its own objects as web1's nor describe
  web1's objects;
- it agrees with every other entry about the same capture key. Entries that
  disagree are settled by the object's own metadata (one HEAD), never by which
  one sorts first: the entries that disagree with the object are refused, and
  if none agrees the object's metadata is used.

``rollcap list`` reads no entry bodies: an entry's key name is the whole
record (storage/manifest.py), so there is no body to disagree with it.
Refused entries are reported (`list`'s ``#`` lines and ``--json``), never used.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass

from rollcap.retrieve.catalog import Capture, from_metadata
from rollcap.storage import manifest
from rollcap.storage.base import ObjectInfo, Storage
from rollcap.storage.s3.policy import host_scope, under_scope

# first/last packet times in an entry's name and in the object's metadata may
# be written at different precisions (ns in the name, µs in older metadata)
_TIME_SLACK_NS = 1000


@dataclass(frozen=True)
class Rejected:
    entry: str  # the entry's own key (what to look at, or delete)
    host: str  # the host it names
    key: str  # the capture key it names
    reason: str


def capture_of(e: manifest.Entry) -> Capture:
    return Capture(
        key=e.key, size=e.size, host=e.host, iface=e.iface, start=e.opened,
        first_ns=e.first_ns, last_ns=e.last_ns, packets=e.packets,
        pcap_bytes=e.pcap_bytes, linktype=e.linktype, end_ts=float(e.closed_ts),
    )  # fmt: skip


def _near(a: int | None, b: int | None) -> bool:
    return (a is None) == (b is None) and (a is None or b is None or abs(a - b) <= _TIME_SLACK_NS)


def agrees(e: manifest.Entry, obj: Capture) -> bool:
    """Whether an entry says what the object's own metadata says."""
    return (
        e.host == obj.host
        and e.iface == obj.iface
        and e.linktype == obj.linktype
        and e.packets == obj.packets
        and e.pcap_bytes == obj.pcap_bytes
        and e.size == obj.size
        and _near(e.first_ns, obj.first_ns)
        and _near(e.last_ns, obj.last_ns)
    )


# believed entries (capture key -> entry), captures known from the object
# alone (no entry agreed with it), refused entries
Settled = tuple[dict[str, manifest.Entry], dict[str, Capture], list[Rejected]]


def body_agrees(e: manifest.Entry, body: bytes) -> bool:
    """Whether an entry's body (gzip NDJSON, read by SQL engines or anyone who
    GETs it) says what its name says. `rollcap list` reads only names; a
    reader of bodies must refuse an entry whose body disagrees."""
    try:
        got = json.loads(gzip.decompress(body))
    except (OSError, EOFError, ValueError):
        return False
    if not isinstance(got, dict):
        return False
    want = json.loads(gzip.decompress(manifest.entry_body(e)))
    got.pop("home_slot", None)  # which of its slots the copy is filed under
    want.pop("home_slot", None)
    return bool(got == want)


class EntryCheck:
    """Sorts one host's entries into believed ones and Rejected."""

    def __init__(self, storage: Storage, template: str, prefix: str) -> None:
        self.storage = storage
        self.template = template
        self.prefix = prefix
        # a custom template may give hosts no prefix of their own: then no key
        # can be attributed by where it lies, and only agreement is checked
        self.scoped = host_scope(template, prefix, "h")[1]
        self._last = ("", "")  # (host, its scope): entries come host by host

    def in_scope(self, key: str, host: str) -> bool:
        if not self.scoped:
            return True
        last_host, scope = self._last
        if host != last_host or not scope:  # one template parse per host, not per entry
            scope = host_scope(self.template, self.prefix, host)[0]
            self._last = (host, scope)
        return under_scope(key, scope)

    def settle(self, named: dict[str, manifest.Entry]) -> Settled:
        """``named``: entry key -> entry, for one host. Returns the believed
        entries (capture key, or a coverage entry's ident -> entry), captures
        known from the object alone (where no entry agreed with it) and the
        refused entries."""
        by_key: dict[str, dict[manifest.Entry, list[str]]] = {}
        rejected: list[Rejected] = []
        believed: dict[str, manifest.Entry] = {}
        for name, e in sorted(named.items()):
            if not e.has_object:
                # a coverage entry names no capture (nothing to scope, agree
                # with or HEAD); its name starts with its host, as the policy
                # allows only that host to write
                believed.setdefault(e.ident, e)
                continue
            if not self.in_scope(e.key, e.host):
                why = f"capture key is not under {e.host}'s prefix"
                rejected.append(Rejected(name, e.host, e.key, why))
                continue
            # one capture is filed under several slots with the same name: same Entry
            by_key.setdefault(e.key, {}).setdefault(e, []).append(name)
        from_object: dict[str, Capture] = {}
        for key, claims in by_key.items():
            if len(claims) == 1:
                believed[key] = next(iter(claims))
                continue
            obj = self._object(key, next(iter(claims)))
            good = [e for e in claims if obj is not None and agrees(e, obj)]
            for e, names in claims.items():
                if e in good[:1]:
                    continue
                why = (
                    "the object is gone"
                    if obj is None
                    else "disagrees with the object's metadata"
                    if e not in good
                    else "agrees too, but another that agrees was used"
                )
                why = f"{len(claims)} entries disagree about this capture; this one {why}"
                rejected += [Rejected(n, e.host, key, why) for n in names]
            if good:
                believed[key] = good[0]
            elif obj is not None:
                from_object[key] = obj
        return believed, from_object, rejected

    def _object(self, key: str, e: manifest.Entry) -> Capture | None:
        head: ObjectInfo | None = self.storage.head(key)
        if head is None:
            return None
        return from_metadata(key, head.size, dict(head.metadata), e.host, e.iface, e.opened)
