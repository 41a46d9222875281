"""The ring with keeps: capture's budget never drops a pinned file (and drops
nothing when it cannot read the pins), when a window's end is due to be cut
(the cut itself: tests/unit/capture/test_cuts.py), the offload ships and
releases only what keeps hold, and status shows the lookback without calling
the ring a backlog."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rollcap.commands.status import render_table
from rollcap.keep import pins
from rollcap.keep.request import KeepRequest
from rollcap.keep.ring import due_cuts, ring_state
from rollcap.keep.shipping import Shipping
from rollcap.keep.store import LocalStore
from rollcap.spool.fs import Dir
from rollcap.spool.readyname import ReadyName
from rollcap.status import _job_problem
from tests.unit.capture.fakes import supervisor

S = 1_000_000_000
T0 = 1_796_000_000


def keep(rid: str, since: int, until: int) -> KeepRequest:
    return KeepRequest(id=rid, reason="INC-42", since_ns=since * S, until_ns=until * S,
                       created_ns=T0 * S, source="cli")  # fmt: skip


def ready(root: Path, seq: int, start: int, size: int, seconds: int = 59) -> str:
    name = ReadyName(datetime.fromtimestamp(start, UTC), seq, "h", "eth0").format()
    (root / "ready" / name).write_bytes(b"x" * size)
    end = (start + seconds) * S  # its last write
    os.utime(root / "ready" / name, ns=(end, end))
    return name


def work_since(root: Path, **per: object) -> None:
    """Capture's state: each interface's oldest file in work/ opened at per[name]."""
    (root / "capture").mkdir(exist_ok=True)
    (root / "capture" / "capture.json").write_text(
        json.dumps({"interfaces": {n: {"work_since": t} for n, t in per.items()}})
    )


def release_done(sh: Shipping, in_flight: object, now: int) -> list[str]:
    """What the offload does with done keeps (no record: a local destination)."""
    sh.refresh()
    return [k.id for k in sh.done(in_flight, now) if sh.release(k, "s3://x")]  # type: ignore[arg-type]


def test_the_budget_drops_around_a_pinned_file(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, spool={"max_megabytes": 10, "min_free_percent": 0},
                     offload={"mode": "on-demand"}, capture={"rotate_megabytes": 1})  # fmt: skip
    root = sup.spool.root
    names = [ready(root, i + 1, T0 + 60 * i, 2_500_000) for i in range(5)]  # 12.5 MB
    LocalStore(root, 10**9).submit(keep("k1", T0, T0 + 30))  # the oldest file
    sup.enforce_budget()
    left = sorted(os.listdir(root / "ready"))
    assert names[0] in left and names[1] not in left  # the next oldest went instead
    assert sup.n.dropped_files == 1
    ring = sup.session.keeper.ring
    assert ring is not None and ring.keeps == 1 and ring.pinned_bytes == 2_500_000
    assert ring.on_demand and ring.lookback_seconds is not None


def test_the_budget_drops_nothing_while_a_keep_is_being_filed(tmp_path: Path) -> None:
    """`rollcap keep` matches ready/ and files its pin under LOCK_EX on keep/: a
    drop in between would lose a file the new pin was about to hold."""
    import fcntl

    sup = supervisor(tmp_path, spool={"max_megabytes": 10, "min_free_percent": 0},
                     offload={"mode": "on-demand"}, capture={"rotate_megabytes": 1})  # fmt: skip
    root = sup.spool.root
    for i in range(5):
        ready(root, i + 1, T0 + 60 * i, 2_500_000)  # 12.5 MB
    with Dir(root / "keep") as d:
        fcntl.flock(d.fd, fcntl.LOCK_EX)  # as LocalStore.submit holds it
        sup.enforce_budget()
        assert len(os.listdir(root / "ready")) == 5 and sup.n.dropped_files == 0
    sup.enforce_budget()
    assert sup.n.dropped_files == 1


def test_a_pins_directory_read_only_in_part_holds_every_file(tmp_path: Path) -> None:
    """Past its bound the reader stops: a pin it did not read may hold any file, so
    the budget drops nothing, and the offload keeps what it knew (releases nothing)."""
    sup = supervisor(tmp_path, spool={"max_megabytes": 10, "min_free_percent": 0},
                     offload={"mode": "on-demand"}, capture={"rotate_megabytes": 1})  # fmt: skip
    root = sup.spool.root
    for i in range(5):
        ready(root, i + 1, T0 + 60 * i, 2_500_000)
    LocalStore(root, 10**9).submit(keep("k1", T0, T0 + 30))
    work_since(root, eth0=T0 + 600)
    sh = Shipping(root, on_demand=True, interfaces=["eth0"])
    sh.refresh()
    held = {n for n in os.listdir(root / "ready") if sh.wanted(n)}
    assert len(held) == 1
    for i in range(2 * pins.MAX_PINS + pins.MAX_RELEASED):
        (root / "keep" / f".junk{i:04d}").write_bytes(b"")
    sup.enforce_budget()
    assert len(os.listdir(root / "ready")) == 5 and sup.n.dropped_files == 0
    (root / "keep" / "k1.json").rename(root / "keep" / ".k1.moved")  # a read cannot tell
    assert not sh.refresh()  # the previous state stays: k1 and its file
    assert [k.id for k in sh.keeps] == ["k1"] and sh.wanted(held.pop())


def test_pins_capture_cannot_read_hold_every_file(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, spool={"max_megabytes": 10, "min_free_percent": 0},
                     capture={"rotate_megabytes": 1})  # fmt: skip
    root = sup.spool.root
    for i in range(5):
        ready(root, i + 1, T0 + 60 * i, 2_500_000)
    os.rmdir(root / "keep")
    (tmp_path / "elsewhere").mkdir()
    (root / "keep").symlink_to(tmp_path / "elsewhere")  # never followed: unreadable
    sup.enforce_budget()
    assert len(os.listdir(root / "ready")) == 5 and sup.n.dropped_files == 0


def test_due_cuts_needs_a_file_opened_a_whole_second_before_the_end() -> None:
    k = keep("k", T0, T0 + 100)
    assert due_cuts([k], [T0 + 50], now_ns=(T0 + 101) * S) == [k]
    assert due_cuts([k], [T0 + 50], now_ns=(T0 + 99) * S) == []  # not ended
    assert due_cuts([k], [T0 + 99], now_ns=(T0 + 101) * S) == [k]
    assert due_cuts([k], [T0 + 100], now_ns=(T0 + 101) * S) == []  # opened after the end
    assert due_cuts([k], [], now_ns=(T0 + 101) * S) == []


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    (tmp_path / "ready").mkdir()
    (tmp_path / "keep").mkdir()
    return tmp_path


def test_on_demand_ships_only_held_files_and_releases_the_keep_once_they_are_gone(
    spool: Path,
) -> None:
    a = ready(spool, 1, T0, 100)
    b = ready(spool, 2, T0 + 60, 100)
    c = ready(spool, 3, T0 + 120, 100)
    work_since(spool, eth0=T0 + 180)
    LocalStore(spool, 10**9).submit(keep("k1", T0 + 70, T0 + 110))
    sh = Shipping(spool, on_demand=True, interfaces=["eth0"])
    assert sh.refresh()
    assert [n for n in (a, b, c) if sh.wanted(n)] == [b]
    assert sh.keep_of(b) is not None and sh.keep_of(b).id == "k1"  # type: ignore[union-attr]
    after = (T0 + 200) * S
    assert release_done(sh, {b: object()}, after) == []  # in flight
    (spool / "ready" / b).unlink()  # stored and verified: the offload deleted it
    assert release_done(sh, {}, (T0 + 100) * S) == []  # the window has not ended
    assert release_done(sh, {}, after) == ["k1"]
    assert os.listdir(spool / "keep") == ["k1.released"]  # no pin any more
    sh.refresh()
    assert not sh.wanted(a) and not sh.wanted(c)
    # the same keep again (an alert's repeat reaching a restarted offload): nothing new
    again = LocalStore(spool, 10**9).submit(keep("k1", T0 + 70, T0 + 110))
    assert again.repeated
    assert os.listdir(spool / "keep") == ["k1.released"]
    assert Shipping(spool, on_demand=False, interfaces=["eth0"]).wanted(a)  # continuous


def test_a_keep_waits_until_capture_has_cut_the_file_it_ends_in(spool: Path) -> None:
    """Until the oldest file capture has in work/ opened after the end, more of
    the window may come."""
    LocalStore(spool, 10**9).submit(keep("k1", T0 + 500, T0 + 600))
    sh = Shipping(spool, on_demand=True, interfaces=["eth0"])
    work_since(spool, eth0=T0 + 550)
    assert release_done(sh, {}, (T0 + 700) * S) == []  # still writing the window's end
    work_since(spool, eth0=T0 + 650)
    assert release_done(sh, {}, (T0 + 700) * S) == ["k1"]


def test_another_interfaces_newer_file_does_not_release_a_keep(spool: Path) -> None:
    """eth1 cut and handed off a file after the window's end, while eth0 still
    writes the window: the keep holds (eth0's tail would never ship otherwise)."""
    LocalStore(spool, 10**9).submit(keep("k1", T0, T0 + 60))
    sh = Shipping(spool, on_demand=True, interfaces=["eth0", "eth1"])
    name = ReadyName(datetime.fromtimestamp(T0 + 120, UTC), 1, "h", "eth1").format()
    (spool / "ready" / name).write_bytes(b"x")
    work_since(spool, eth0=T0 + 30, eth1=T0 + 180)
    assert release_done(sh, {}, (T0 + 300) * S) == []
    work_since(spool, eth1=T0 + 180)  # eth0 missing: no evidence
    assert release_done(sh, {}, (T0 + 300) * S) == []
    work_since(spool, eth0=T0 + 61, eth1=T0 + 180)
    assert release_done(sh, {}, (T0 + 300) * S) == ["k1"]


def test_a_future_named_file_in_ready_proves_no_cut(spool: Path) -> None:
    LocalStore(spool, 10**9).submit(keep("k1", T0, T0 + 60))
    sh = Shipping(spool, on_demand=True, interfaces=["eth0"])
    name = ReadyName(datetime.fromtimestamp(T0 + 10**6, UTC), 1, "h", "eth0").format()
    (spool / "ready" / name).write_bytes(b"x")  # a clock stepped far ahead once
    work_since(spool, eth0=T0 + 30)
    assert release_done(sh, {}, (T0 + 300) * S) == []


def test_a_finished_file_still_in_work_holds_the_keep(tmp_path: Path) -> None:
    """Hand-off paused (a full disk): a finished file of the window is still in
    work/, while tcpdump writes a newer one; capture publishes the oldest."""
    sup = supervisor(tmp_path)
    root = sup.spool.root
    iface = next(iter(sup.captures))
    for t in (T0, T0 + 600):
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(t))
        (root / "work" / f"g000007-{stamp}-{iface}.pcap").write_bytes(b"")
    assert sup.work_since() == {iface: float(T0)}
    assert sup.snapshot().interfaces[iface]["work_since"] == float(T0)  # type: ignore[index]


def test_the_file_capture_writes_now_proves_the_cut_when_none_followed(spool: Path) -> None:
    """A quiet link: no file after the window's end reaches ready/, but capture's
    state says the file it writes now opened after it."""
    LocalStore(spool, 10**9).submit(keep("k1", T0, T0 + 60))
    sh = Shipping(spool, on_demand=True, interfaces=["eth0"])
    work_since(spool, eth0=T0 + 30)
    assert release_done(sh, {}, (T0 + 100) * S) == []  # still writing the window's end
    work_since(spool, eth0=T0 + 61)
    assert release_done(sh, {}, (T0 + 100) * S) == ["k1"]
    LocalStore(spool, 10**9).submit(keep("k2", T0, T0 + 60))
    state = spool / "capture" / "capture.json"
    state.unlink()
    state.symlink_to(spool / "elsewhere.json")  # another user's link: never followed
    (spool / "elsewhere.json").write_text(
        json.dumps({"interfaces": {"eth0": {"work_since": T0 + 61}}})
    )
    assert release_done(sh, {}, (T0 + 100) * S) == []


@pytest.mark.parametrize("bad", ["Infinity", "-Infinity", "NaN", "1e300", "-1", "true", "null"])
def test_capture_state_out_of_range_is_no_evidence_and_never_a_crash(spool: Path, bad: str) -> None:
    LocalStore(spool, 10**9).submit(keep("k1", T0, T0 + 60))
    sh = Shipping(spool, on_demand=True, interfaces=["eth0"])
    (spool / "capture").mkdir()
    (spool / "capture" / "capture.json").write_text(
        '{"interfaces": {"eth0": {"work_since": ' + bad + "}}}"
    )
    assert release_done(sh, {}, (T0 + 100) * S) == []


def test_ring_state_is_the_lookback_and_the_budget_at_the_current_rate(spool: Path) -> None:
    for i in range(4):
        ready(spool, i + 1, T0 + 100 * i, 1000, seconds=100)  # 10 bytes/s
    with Dir(spool / "ready") as d:
        files = pins.held_files(d)
    st = ring_state(files, {}, 0, 100_000, (T0 + 400) * S)
    assert st.lookback_seconds == 400
    assert st.projected_seconds == pytest.approx(100_000 / 10)


def test_status_shows_the_ring_and_no_backlog_problem_on_demand() -> None:
    now = time.time()
    report = {
        "capture": {"verdict": "running", "state": "capturing", "dropped_files": 40,
                    "ring": {"lookback_seconds": 7980, "projected_seconds": 11100, "keeps": 1,
                             "pinned_bytes": 1_200_000, "on_demand": True}},
        "offload": {"verdict": "running", "state": "running"},
        "spool": {"directory": "/s", "ready_files": 500, "ready_bytes": 10**9,
                  "ready_oldest": now - 86400, "ring": True},
    }  # fmt: skip
    text = render_table(report, now)
    assert "ring: reaches back 2h 13m (3h 05m at the current rate); 1 keep pins 1.2 MB" in text
    assert "dropped" not in text and "backlog" not in text
    assert _job_problem("offload", report["offload"], report["spool"], now, 600) is None
    report["spool"]["ring"] = False
    assert _job_problem("offload", report["offload"], report["spool"], now, 600) is not None


def test_list_local_shows_the_rings_files_for_a_window_kept_or_not(spool: Path) -> None:
    from rollcap.keep.local import held

    names = [ready(spool, i + 1, T0 + 60 * i, 100) for i in range(4)]
    LocalStore(spool, 10**9).submit(keep("k1", T0 + 70, T0 + 110))
    got = held(spool, (T0 + 30) * S, (T0 + 130) * S)
    assert [(f.name, f.state) for f in got] == [
        (names[0], "ring"), (names[1], "kept (k1)"), (names[2], "ring"),
    ]  # fmt: skip
    assert held(spool, (T0 + 30) * S, (T0 + 130) * S, iface="eth1") == []


def test_a_keep_record_names_every_object_of_the_host_in_the_window(tmp_path: Path) -> None:
    """Stored objects are write-once: a keep on objects already stored is a
    record beside them, scoped to the host's own index names."""
    import json

    from rollcap.config.schema import OffloadConfig
    from rollcap.keep.shipping import record_key, write_record
    from rollcap.storage import manifest, open_storage

    storage = open_storage(OffloadConfig(destination=f"file://{tmp_path}/archive"))

    def stored(host: str, start: int, key: str) -> None:
        manifest.write_entries(storage, manifest.Entry(
            key=key, host=host, iface="eth0", opened=datetime.fromtimestamp(start, UTC),
            closed_ts=start + 59, first_ns=start * S, last_ns=(start + 59) * S, packets=1,
            pcap_bytes=100, size=50, linktype=1,
        ), storage.key_prefix)  # fmt: skip

    stored("h", T0, "h/a.pcap.zst")  # before the window
    stored("h", T0 + 60, "h/b.pcap.zst")  # in it
    stored("other", T0 + 60, "other/b.pcap.zst")  # another host's
    k = keep("k1", T0 + 70, T0 + 110)
    key = write_record(storage, storage.key_prefix, "h", k, ["h/c.pcap.zst"])
    assert key == record_key(storage.key_prefix, "h", "k1")
    assert "/_index/keeps/v1/h~k1.json" in f"/{key}"
    rec = json.loads((tmp_path / "archive" / key).read_bytes())
    assert rec["objects"] == ["h/b.pcap.zst", "h/c.pcap.zst"]
    assert rec["keep"]["id"] == "k1" and rec["keep"]["reason"] == "INC-42" and rec["host"] == "h"


def test_the_ring_series_are_captures_own_in_the_published_copy() -> None:
    from rollcap.metrics.publish import own_series

    text = (b"# TYPE rollcap_ring_lookback_seconds gauge\nrollcap_ring_lookback_seconds 7980.0\n"
            b"# TYPE rollcap_ring_keeps gauge\nrollcap_ring_keeps 1.0\n")  # fmt: skip
    kept, dropped = own_series("capture", text)
    assert dropped == 0 and b"rollcap_ring_lookback_seconds 7980.0" in kept
    assert own_series("offload", text)[1] == 2  # not the offload's to write


def test_a_window_ending_within_a_second_is_cut_at_the_next_whole_second() -> None:
    """The file opened by the cut is named in whole seconds: cut at 100.5 s it would be
    named 100 s, inside a window ending at 100.4 s, and ship (and hold the keep) too."""
    k = KeepRequest(id="k", reason="r", since_ns=T0 * S, until_ns=(T0 + 100) * S + 400_000_000,
                    created_ns=T0 * S, source="cli")  # fmt: skip
    assert due_cuts([k], [T0 + 50], now_ns=(T0 + 100) * S + 500_000_000) == []
    assert due_cuts([k], [T0 + 50], now_ns=(T0 + 101) * S) == [k]


def test_released_pins_are_forgotten_after_a_week_and_beyond_the_bound(spool: Path) -> None:
    from rollcap.keep import pins

    d = spool / "keep"
    for i in range(pins.MAX_RELEASED + 5):
        (d / f"r{i:04d}.released").write_text("{}")
        os.utime(d / f"r{i:04d}.released", ns=(T0 * S + i * S, T0 * S + i * S))
    (d / "old.released").write_text("{}")
    os.utime(d / "old.released", ns=(0, 0))
    with Dir(d) as fd:
        pins.prune_released(fd, (T0 + 1000) * S)
    left = sorted(os.listdir(d))
    assert len(left) == pins.MAX_RELEASED and "old.released" not in left
    assert left[0] == "r0005.released"  # the newest kept
