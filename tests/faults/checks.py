"""End-to-end accounting shared by the cases: what reached ready/ vs what is stored."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rollcap.pcapfile import GLOBAL_HEADER_LEN
from tests.faults.bucket import BucketView, object_problems, stale_multipart_uploads
from tests.faults.pcaprec import BadPcap, Ledger
from tests.faults.rig import Rig


@dataclass
class Account:
    replayed: int
    in_files: int  # unique packets in every file that reached ready/
    stored: int  # unique packets in the objects
    lost: int  # packets of ready/ files that no object holds
    duplicated: int  # extra copies across objects
    files_seen: int
    objects: int
    missed: int = 0
    near_duplicates: int = 0  # of `duplicated`: copies stamped apart (two tcpdumps)
    unlogged: int = 0  # deleted files without an "uploaded" line in the offload's log
    restamped: int = 0  # seen in work/ as the new tcpdump's copy, stored as the old one's
    problems: list[str] = field(default_factory=list)

    def files(self) -> str:
        missed = f" ({self.missed} gone before the watcher opened them)" if self.missed else ""
        near = (
            f"; {self.near_duplicates} of the duplicates stamped apart"
            if self.near_duplicates
            else ""
        )
        unlogged = f"; {self.unlogged} uploads not in the offload log" if self.unlogged else ""
        restamped = (
            f"; {self.restamped} overlap copies read in work/ stored under the old "
            "tcpdump's stamp" if self.restamped else ""
        )
        return (
            f"{self.files_seen} files{missed}, {self.objects} objects{near}{unlogged}{restamped}"
        )

    def row(self) -> dict[str, object]:
        return {"packets_in": self.replayed, "packets_out": self.stored,
                "lost": self.lost, "duplicated": self.duplicated}  # fmt: skip


# Two tcpdumps listening at once (a switch's overlap) stamp one frame apart (up
# to 23 µs measured, see BucketView.near_duplicates); the hand-off keeps the old
# one's copy. Stricter than the hand-off's 10 ms: this checks it.
RESTAMP_TOLERANCE = 0.001


def _restamped(record: bytes, extra: dict[bytes, tuple[bytes, float]], view: BucketView) -> bool:
    """A record read from work/ (extra: record -> (payload digest, time)) whose
    bytes an object holds within 1 ms: the new tcpdump's copy of an overlap's
    packet, stored under the old one's stamp. Records of ready/ files must match
    exactly; only the ones caught in work/ before the hand-off can be such copies."""
    if record not in extra:
        return False
    payload, ts = extra[record]
    return any(abs(t - ts) <= RESTAMP_TOLERANCE for t in view.payload_times.get(payload, ()))


def dropped_names(log_text: str) -> set[str]:
    """ready/ file names that capture says it dropped for the spool budget."""
    out = set()
    for line in log_text.splitlines():
        if re.search(r"drop", line, re.I):
            out.update(re.findall(r"\d{8}T\d{6}Z-\d{6,}_[^\s/\]\"',]+\.pcap", line))
    return out


def stored_names(offload_log: str) -> dict[str, str]:
    """ready/ name -> key, from the offload's "uploaded X as KEY" and
    "X was already stored as KEY" lines (its journal, as an operator reads it)."""
    out = {}
    for m in re.finditer(r"(?:uploaded (\S+) as (\S+?):|(\S+) was already stored as (\S+))",
                         offload_log):  # fmt: skip
        name, key = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        out[name] = key
    return out


def account(rig: Rig, *, capture_log: str = "", offload_log: str | None = None,
            expect_quarantine: bool = False,
            extra_records: dict[bytes, tuple[bytes, float]] | None = None
            ) -> Account:  # fmt: skip
    """Compare every file the watcher saw in ready/ with the bucket.

    Problems collected (each one a finding):
    - an object that is cut off, unreadable, or inconsistent with its metadata
    - the same capture stored twice, or a packet stored twice
    - a ready/ file deleted while no listed object held its content
      (deleted before verification) unless capture logged it as budget-dropped
    - a ready/ file that is not a whole pcap (capture must hand off repaired files)
    - a multipart upload left behind
    """
    assert rig.watcher is not None
    rig.watcher.settle()
    view: BucketView = rig.bucket()
    problems = object_problems(view)
    stale = stale_multipart_uploads(rig.client, rig.s3.bucket, rig.prefix + "/")
    if stale:
        problems.append(f"{len(stale)} multipart upload(s) left incomplete: {stale[:3]}")
    dropped = dropped_names(capture_log)
    journal = stored_names(offload_log) if offload_log is not None else None
    by_content = view.by_content
    # multisets: identical frames stamped in the same microsecond are two packets
    written = Ledger()
    if extra_records:
        written.add(sorted(extra_records))
    missed = 0
    unlogged = 0
    for s in rig.watcher.history:
        if s.missed:
            missed += 1  # uploaded and deleted within the watcher's reaction time
            continue
        try:
            parsed = s.parsed()
        except BadPcap as e:
            if not expect_quarantine:
                problems.append(f"ready/{s.name}: not a pcap ({e})")
            continue
        if parsed.truncated:
            cut = parsed.total_bytes - parsed.whole_bytes
            problems.append(f"ready/{s.name}: last record cut off ({cut} bytes)")
        if s.name in dropped:
            continue
        if not parsed.records and parsed.total_bytes == GLOBAL_HEADER_LEN:
            continue  # a coverage marker (an idle period): a manifest entry, by design no object
        written.add(parsed.records)
        if s.gone is not None and s.gone_how == "deleted":
            holders = {o.key for o in by_content.get(s.sha256(), [])}
            if not holders:
                problems.append(f"ready/{s.name}: deleted but no object holds it")
            elif not holders & s.listing_at_gone:
                problems.append(
                    f"ready/{s.name}: deleted before its object {sorted(holders)} was listed"
                )
            if journal is not None and s.name not in journal:
                # deleted, then killed before the log line: the object is there
                unlogged += 1
            elif journal is not None and journal[s.name] not in holders:
                problems.append(
                    f"ready/{s.name}: deleted; the offload log names key "
                    f"{journal[s.name]!r}, the content is in {sorted(holders)}"
                )
    if view.ledger.unique > rig.replayed:
        problems.append(
            f"{view.ledger.unique} packets stored but only {rig.replayed} replayed: "
            "copies of the same packets with other timestamps"
        )
    if missed * 4 > max(len(rig.watcher.history), 1):
        problems.append(f"watcher: {missed} files gone before they could be read")
    if rig.watcher.overflowed:
        problems.append("watcher: inotify queue overflowed, accounting incomplete")
    lost = restamped = 0
    for r, n in written.held.items():
        short = max(0, n - view.ledger.held[r])
        if short and _restamped(r, extra_records or {}, view):
            restamped += short
        else:
            lost += short
    near = view.near_duplicates()
    return Account(
        replayed=rig.replayed, in_files=written.unique - restamped, stored=view.ledger.unique,
        lost=lost,
        duplicated=view.ledger.duplicated + near, files_seen=len(rig.watcher.history),
        objects=len(view.objects), problems=problems, missed=missed, near_duplicates=near,
        unlogged=unlogged, restamped=restamped,
    )  # fmt: skip
