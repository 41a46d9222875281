"""The ring with keeps: capture's budget never drops a pinned file (and drops
nothing when it cannot read the pins), it cuts the live file when a window
ends, the offload ships and releases only what keeps hold, and status shows
the lookback without calling the ring a backlog."""

from __future__ import annotations

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


def test_a_window_ending_in_the_live_file_cuts_it_once(tmp_path: Path) -> None:
    sup = supervisor(tmp_path)
    root = sup.spool.root
    now = int(time.time())
    (root / "work" / f"g000007-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now - 30))}-any.pcap"
     ).write_bytes(b"")  # fmt: skip
    LocalStore(root, 10**9).submit(keep("k1", now - 60, now - 5))
    LocalStore(root, 10**9).submit(keep("k2", now - 60, now + 3600))  # not ended yet
    cuts: list[str] = []
    sup.rotate = cuts.append  # type: ignore[method-assign]
    sup.enforce_budget()
    sup.cut_for_keeps()
    sup.cut_for_keeps()
    assert cuts == ["keep k1: its window ended"]


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
    LocalStore(spool, 10**9).submit(keep("k1", T0 + 70, T0 + 110))
    sh = Shipping(spool, on_demand=True)
    assert sh.refresh()
    assert [n for n in (a, b, c) if sh.wanted(n)] == [b]
    assert sh.keep_of(b) is not None and sh.keep_of(b).id == "k1"  # type: ignore[union-attr]
    after = (T0 + 200) * S
    assert sh.release_done({b: object()}, "s3://x", after) == []  # in flight
    (spool / "ready" / b).unlink()  # stored and verified: the offload deleted it
    sh.refresh()
    assert sh.release_done({}, "s3://x", (T0 + 100) * S) == []  # the window has not ended
    assert sh.release_done({}, "s3://x", after) == ["k1"]
    assert os.listdir(spool / "keep") == []
    assert Shipping(spool, on_demand=False).wanted(a)  # continuous: everything


def test_a_keep_waits_for_the_file_after_its_end(spool: Path) -> None:
    """Until capture has cut the file the window ends in, more of it may come."""
    ready(spool, 1, T0, 100, seconds=550)  # written until T0 + 550: holds the window's start
    LocalStore(spool, 10**9).submit(keep("k1", T0 + 500, T0 + 600))
    sh = Shipping(spool, on_demand=True)
    sh.refresh()
    (spool / "ready" / ReadyName(datetime.fromtimestamp(T0, UTC), 1, "h", "eth0").format()
     ).unlink()  # fmt: skip
    sh.refresh()
    assert sh.release_done({}, "s3://x", (T0 + 700) * S) == []  # no file after the end yet
    ready(spool, 2, T0 + 650, 100)
    sh.refresh()
    assert sh.release_done({}, "s3://x", (T0 + 700) * S) == ["k1"]


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


def test_the_file_capture_writes_now_proves_the_cut_when_none_followed(spool: Path) -> None:
    """A quiet link: no file after the window's end reaches ready/, but capture's
    state says the file it writes now opened after it."""
    import json

    LocalStore(spool, 10**9).submit(keep("k1", T0, T0 + 60))
    sh = Shipping(spool, on_demand=True)
    sh.refresh()
    (spool / "capture").mkdir()
    state = spool / "capture" / "capture.json"
    state.write_text(json.dumps({"interfaces": {"eth0": {"active_since": T0 + 30}}}))
    assert sh.done({}, (T0 + 100) * S) == []  # still writing the window's end
    state.write_text(json.dumps({"interfaces": {"eth0": {"active_since": T0 + 61}}}))
    assert [k.id for k in sh.done({}, (T0 + 100) * S)] == ["k1"]
    state.unlink()
    state.symlink_to(spool / "elsewhere.json")  # another user's link: never followed
    (spool / "elsewhere.json").write_text(json.dumps({"active_since": T0 + 61}))
    assert sh.done({}, (T0 + 100) * S) == []


def test_the_ring_series_are_captures_own_in_the_published_copy() -> None:
    from rollcap.metrics.publish import own_series

    text = (b"# TYPE rollcap_ring_lookback_seconds gauge\nrollcap_ring_lookback_seconds 7980.0\n"
            b"# TYPE rollcap_ring_keeps gauge\nrollcap_ring_keeps 1.0\n")  # fmt: skip
    kept, dropped = own_series("capture", text)
    assert dropped == 0 and b"rollcap_ring_lookback_seconds 7980.0" in kept
    assert own_series("offload", text)[1] == 2  # not the offload's to write
