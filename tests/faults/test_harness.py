"""The suite's own instruments must be able to fail: planted losses and duplicates are seen."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.faults.bucket import BucketView, StoredObject
from tests.faults.pcaprec import Ledger, parse, synth, timestamps
from tests.support.net import Veth, count_packets


def test_ledger_sees_duplicates_losses_and_cut_tails(all_pcap: Path) -> None:
    src = all_pcap.read_bytes()
    a = synth(src, 1, 1_000_000.0)
    b = synth(src, 1, 2_000_000.0)  # same bytes, other times: distinct packets
    pa, pb = parse(a), parse(b)
    assert len(pa.records) == len(pb.records) == 5374
    assert not set(pa.records) & set(pb.records)
    ledger = Ledger()
    ledger.add(pa.records)
    ledger.add(pb.records[:100])
    ledger.add(pb.records[50:])  # 50 packets stored twice
    # 3 more in a source that holds each twice: within one source equal records
    # are two packets (identical frames stamped in the same microsecond), so
    # one copy of each is a duplicate of source 1's, the other a packet of its own
    ledger.add(pa.records[:3] + pa.records[:3])
    assert ledger.duplicated == 53
    assert ledger.repeats_within == 3
    assert ledger.unique == 2 * 5374 + 3
    assert ledger.missing_from(pa.records + pb.records) == 0
    assert Ledger(counts=ledger.counts.copy()).missing_from([b"x" * 32]) == 1
    cut = parse(a[:-7])
    assert cut.truncated and len(cut.records) == 5373
    assert len(timestamps(a)) == 5374


@pytest.mark.case("0. harness: tcpreplay -> tcpdump -> ledger")
def test_replay_loops_are_distinct_packets(veth: Veth, all_pcap: Path, tmp_path: Path,
                                           reliability) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    """Two replay loops captured by plain tcpdump are 2 x 5,374 distinct records."""
    out = Path("/tmp") / f"{veth.b}.pcap"
    p = subprocess.Popen(["tcpdump", "-Z", "root", "-n", "-i", veth.b, "-w", str(out)],
                         stderr=subprocess.PIPE)  # fmt: skip
    try:
        time.sleep(1.5)
        veth.replay(all_pcap, loop=2, pps=20000)
        time.sleep(1.5)  # tcpdump's last kernel block
    finally:
        p.terminate()
        p.wait(10)
    parsed = parse(out.read_bytes())
    by_capinfos = count_packets(out)  # the suite's reader agrees with Wireshark's
    out.unlink()
    assert by_capinfos == len(parsed.records)
    ledger = Ledger()
    ledger.add(parsed.records)
    reliability.record(runs=1, packets_in=2 * 5374, packets_out=ledger.unique,
                       lost=2 * 5374 - ledger.unique, duplicated=ledger.duplicated,
                       notes="plain tcpdump, no rollcap: the counting method itself")  # fmt: skip
    assert ledger.unique == 2 * 5374
    assert ledger.duplicated == 0


def test_two_tcpdumps_make_near_duplicates(veth: Veth, all_pcap: Path) -> None:
    """What a make-before-break overlap stores twice is caught although the stamps differ."""
    outs = [Path("/tmp") / f"{veth.b}-{i}.pcap" for i in (1, 2)]
    procs = [subprocess.Popen(["tcpdump", "-Z", "root", "-n", "-i", veth.b, "-w", str(o)],
                              stderr=subprocess.DEVNULL) for o in outs]  # fmt: skip
    try:
        time.sleep(1.5)
        veth.replay(all_pcap, loop=1, pps=15000)
        time.sleep(1.5)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
    view = BucketView()
    for o in outs:
        parsed = parse(o.read_bytes())
        o.unlink()
        view.objects.append(StoredObject(o.name, 0, {}, "", "", len(parsed.records), False,
                                         payloads=parsed.payloads))  # fmt: skip
        view.ledger.add(parsed.records)
    # the kernel usually stamps a packet once for all sockets, but not always:
    # the copies with differing stamps are found as near duplicates
    assert view.ledger.duplicated + view.near_duplicates() == 5374


def test_ledger_allows_identical_frames_split_by_a_rotation() -> None:
    """Two identical frames stamped in the same microsecond, a rotation between
    them: the last record of one file equals the first of the next, two packets."""
    a, b, same = b"a" * 32, b"b" * 32, b"s" * 32
    ledger = Ledger()
    ledger.add([a, same])
    ledger.add([same, b])
    assert (ledger.duplicated, ledger.unique) == (0, 4)
    ledger.add([a, b])  # stored again: two duplicates
    assert (ledger.duplicated, ledger.unique) == (2, 4)
