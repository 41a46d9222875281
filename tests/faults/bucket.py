"""Read back everything the offload stored: list, download, decompress, count."""

from __future__ import annotations

import functools
import hashlib
import zlib
from dataclasses import dataclass, field
from typing import Any

from tests.faults.pcaprec import Ledger, decompress, parse, timestamps


@dataclass
class StoredObject:
    key: str
    size: int
    metadata: dict[str, str]
    stored_sha256: str
    content_sha256: str  # of the decompressed pcap
    packets: int
    truncated: bool
    error: str = ""
    content_crc32: str = ""  # of the decompressed pcap, as rollcap-pcap-crc32 spells it
    times: list[float] = field(default_factory=list)  # capture time of each record
    payloads: list[tuple[bytes, float]] = field(default_factory=list)


@dataclass
class BucketView:
    objects: list[StoredObject] = field(default_factory=list)
    ledger: Ledger = field(default_factory=Ledger)

    def near_duplicates(self, tolerance: float = 0.001, run: int = 50) -> int:
        """Packets stored in two objects with timestamps a hair apart.

        Two tcpdumps listening at once (a make-before-break switch) stamp the
        same packet separately, microseconds apart, so exact (time, bytes)
        matching misses such copies (measured here: up to 23 µs apart). But
        tcpreplay also sends identical frames 2 µs apart, which can fall on both
        sides of a file boundary, so only pairs of objects sharing at least
        `run` such copies count: an overlap shares hundreds or thousands.
        """
        seen: dict[bytes, list[tuple[float, int]]] = {}
        for i, o in enumerate(self.objects):
            for digest, ts in o.payloads:
                seen.setdefault(digest, []).append((ts, i))
        pairs: dict[tuple[int, int], int] = {}
        for stamps in seen.values():
            if len(stamps) < 2:
                continue
            stamps.sort()
            used = [False] * len(stamps)
            for k in range(len(stamps) - 1):  # pair each copy at most once
                (t1, i1), (t2, i2) = stamps[k], stamps[k + 1]
                if used[k] or used[k + 1] or i1 == i2 or t2 - t1 > tolerance:
                    continue
                used[k] = used[k + 1] = True
                if t2 != t1:  # exact copies are the ledger's
                    key = (min(i1, i2), max(i1, i2))
                    pairs[key] = pairs.get(key, 0) + 1
        return sum(n for n in pairs.values() if n >= run)

    @functools.cached_property
    def payload_times(self) -> dict[bytes, list[float]]:
        """Digest of a record's bytes -> the capture times of its stored copies."""
        out: dict[bytes, list[float]] = {}
        for o in self.objects:
            for digest, ts in o.payloads:
                out.setdefault(digest, []).append(ts)
        return out

    def packets_since(self, t: float) -> int:
        return sum(1 for o in self.objects for x in o.times if x >= t)

    @property
    def by_content(self) -> dict[str, list[StoredObject]]:
        out: dict[str, list[StoredObject]] = {}
        for o in self.objects:
            out.setdefault(o.content_sha256, []).append(o)
        return out


def list_keys(client: Any, bucket: str, prefix: str) -> list[str]:
    """Capture objects below prefix (not the offload's manifest entries)."""
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", []) if "_index/" not in o["Key"]]
    return keys


def read_bucket(client: Any, bucket: str, prefix: str) -> BucketView:
    view = BucketView()
    for key in list_keys(client, bucket, prefix):
        got = client.get_object(Bucket=bucket, Key=key)
        blob = got["Body"].read()
        meta = {k.lower(): v for k, v in got.get("Metadata", {}).items()}
        try:
            raw = decompress(key, blob)
            parsed = parse(raw)
            err = ""
        except Exception as e:  # every failure is a finding
            raw, parsed, err = b"", None, f"{type(e).__name__}: {e}"
        obj = StoredObject(
            key=key,
            size=len(blob),
            metadata=meta,
            stored_sha256=hashlib.sha256(blob).hexdigest(),
            content_sha256=hashlib.sha256(raw).hexdigest(),
            content_crc32=f"{zlib.crc32(raw):08x}",
            packets=len(parsed.records) if parsed else 0,
            truncated=parsed.truncated if parsed else True,
            error=err,
            times=timestamps(raw) if parsed else [],
            payloads=parsed.payloads if parsed else [],
        )
        view.objects.append(obj)
        if parsed:
            view.ledger.add(parsed.records)
    return view


def stale_multipart_uploads(client: Any, bucket: str, prefix: str) -> list[str]:
    resp = client.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    return [u["Key"] for u in resp.get("Uploads", [])]


def object_problems(view: BucketView) -> list[str]:
    """Partial, unreadable or self-inconsistent objects."""
    out = []
    for o in view.objects:
        if o.error:
            out.append(f"{o.key}: unreadable ({o.error})")
        elif o.truncated:
            out.append(f"{o.key}: pcap is cut off")
        sha = o.metadata.get("rollcap-sha256")
        if sha and sha != o.stored_sha256:
            out.append(f"{o.key}: rollcap-sha256 {sha} != stored bytes {o.stored_sha256}")
        pcrc = o.metadata.get("rollcap-pcap-crc32")
        if pcrc and not o.error and pcrc != o.content_crc32:
            out.append(f"{o.key}: rollcap-pcap-crc32 does not match the decompressed pcap")
        n = o.metadata.get("rollcap-packets")
        if n and not o.error and int(n) != o.packets:
            out.append(f"{o.key}: rollcap-packets {n} != {o.packets} records")
    for sha, objs in view.by_content.items():
        if len(objs) > 1 and sha != hashlib.sha256(b"").hexdigest():
            out.append(f"same capture stored twice: {[o.key for o in objs]}")
    return out
