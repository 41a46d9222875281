"""k-way merge of many pcap files by timestamp, with few files open at once.

Parts whose time spans do not overlap (one host's consecutive captures) need
no merge at all: write_ordered copies each in bulk, one after the other, and
merges record by record only the groups of parts that overlap in time.

Files of one host and interface follow each other in time, so they are
chained (read one after the other) instead of all being opened together:
files are assigned greedily to chains whose last packet is not later than the
file's first, which needs as many chains as files overlap at one instant
(about hosts x interfaces). heapq.merge then merges the chains. If there are
still more chains than MAX_OPEN, groups of them are merged into temp files
first, so the number of open files stays bounded.
"""

from __future__ import annotations

import heapq
import itertools
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO

from rollcap.retrieve.records import Record, copy_records, file_header, iter_file

MAX_OPEN = 64


@dataclass(frozen=True)
class Part:
    """A windowed (and filtered) nanosecond pcap with its first/last packet time."""

    path: Path
    first_ns: int
    last_ns: int
    packets: int
    # lowest/highest timestamp in the part (None: first_ns/last_ns, a sorted part)
    low_ns: int | None = None
    high_ns: int | None = None

    @property
    def span(self) -> tuple[int, int]:
        low = self.first_ns if self.low_ns is None else self.low_ns
        return low, self.last_ns if self.high_ns is None else self.high_ns


def chains(parts: Iterable[Part]) -> list[list[Part]]:
    """Partition parts into time-ordered, non-overlapping chains (fewest possible)."""
    out: list[list[Part]] = []
    ends: list[tuple[int, int]] = []  # heap of (last_ns of chain, chain index)
    for p in sorted(parts, key=lambda p: (p.first_ns, p.last_ns, str(p.path))):
        if ends and ends[0][0] <= p.first_ns:
            _end, i = heapq.heappop(ends)
            out[i].append(p)
        else:
            i = len(out)
            out.append([p])
        heapq.heappush(ends, (p.last_ns, i))
    return out


def _chain_records(chain: list[Part], nanos: bool) -> Iterator[Record]:
    return itertools.chain.from_iterable(iter_file(p.path, nanos) for p in chain)


def merge_records(chain_list: list[list[Part]], nanos: bool) -> Iterator[Record]:
    """All records in timestamp order (stable: ties keep chain order)."""
    if len(chain_list) == 1:
        return _chain_records(chain_list[0], nanos)
    return heapq.merge(*(_chain_records(c, nanos) for c in chain_list), key=itemgetter(0))


def reduce_chains(chain_list: list[list[Part]], workdir: Path, *, linktype: int,
                  max_open: int = MAX_OPEN) -> list[list[Part]]:  # fmt: skip
    """Merge groups of chains into temp files until at most max_open remain."""
    while len(chain_list) > max_open:
        merged: list[list[Part]] = []
        for i in range(0, len(chain_list), max_open):
            group = chain_list[i : i + max_open]
            if len(group) == 1:
                merged.append(group[0])
                continue
            fd, name = tempfile.mkstemp(suffix=".pcap", dir=workdir)
            path = Path(name)
            with open(fd, "wb") as f:
                n, first, last = write_merged(
                    f, group, linktype=linktype, snaplen=262144, nanos=True
                )
            for c in group:
                for p in c:
                    p.path.unlink(missing_ok=True)
            merged.append([Part(path, first, last, n)])
        chain_list = sorted(merged, key=lambda c: c[0].first_ns)
    return chain_list


def write_merged(out: BinaryIO, chain_list: list[list[Part]], *, linktype: int, snaplen: int,
                 nanos: bool) -> tuple[int, int, int]:  # fmt: skip
    """Write the merged records; return packets, first and last timestamp (ns)."""
    out.write(file_header(linktype=linktype, snaplen=snaplen, nanos=nanos))
    write = out.write
    n = first = last = 0
    for ts, raw in merge_records(chain_list, nanos):
        if n == 0:
            first = ts
        last = ts
        n += 1
        write(raw)
    return n, first, last


def overlapping(parts: Iterable[Part]) -> list[list[Part]]:
    """Groups of parts in time order: a part joins the group before it when its
    span starts at or before the latest end in that group; the groups' spans
    are then disjoint, every record of one before every record of the next."""
    groups: list[list[Part]] = []
    end = 0
    for p in sorted(parts, key=lambda p: (*p.span, str(p.path))):
        low, high = p.span
        if groups and low <= end:
            groups[-1].append(p)
            end = max(end, high)
        else:
            groups.append([p])
            end = high
    return groups


def write_ordered(out: BinaryIO, parts: Iterable[Part], workdir: Path, *, linktype: int,
                  snaplen: int, nanos: bool) -> int:  # fmt: skip
    """Write all records of parts in timestamp order under one header; return
    the packets. A part that overlaps no other is copied in bulk when its
    records are already in the output format; overlapping parts are merged
    record by record (reduce_chains bounds the open files)."""
    out.write(file_header(linktype=linktype, snaplen=snaplen, nanos=nanos))
    n = 0
    for group in overlapping(parts):
        if len(group) == 1 and copy_records(group[0].path, out, nanos):
            n += group[0].packets
            group[0].path.unlink(missing_ok=True)  # done with: frees its disk at once
            continue
        chain_list = reduce_chains(chains(group), workdir, linktype=linktype)
        for _ts, raw in merge_records(chain_list, nanos):
            out.write(raw)
            n += 1
        for chain in chain_list:  # reduce_chains may have replaced the group's files
            for part in chain:
                part.path.unlink(missing_ok=True)
    return n
