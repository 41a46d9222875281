"""Filing keeps on this host: durable pins, one per id, the pinned cap, and a
pins directory another user can plant things in."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from rollcap.keep import pins
from rollcap.keep.request import KeepRefused, KeepRequest
from rollcap.keep.store import LocalStore, local_submitter
from rollcap.spool.fs import Dir

S = 1_000_000_000
T0 = 1_796_000_000  # a whole second, epoch


def ready_file(root: Path, seq: int, start: int, size: int, iface: str = "eth0") -> str:
    from datetime import UTC, datetime

    ts = datetime.fromtimestamp(start, UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"{ts}-{seq:06d}_web1_{iface}.pcap"
    (root / "ready" / name).write_bytes(b"x" * size)
    end = (start + 59) * S  # its last write: a minute's file
    os.utime(root / "ready" / name, ns=(end, end))
    return name


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    root = tmp_path / "spool"
    (root / "ready").mkdir(parents=True)
    (root / "keep").mkdir(mode=0o770)
    # ten 60 s files of 1000 bytes: T0 .. T0+600, the last one still open-ended
    for i in range(10):
        ready_file(root, i + 1, T0 + 60 * i, 1000)
    return root


def req(rid: str, since: int, until: int, reason: str = "INC-42") -> KeepRequest:
    return KeepRequest(
        id=rid,
        reason=reason,
        since_ns=since * S,
        until_ns=until * S,
        created_ns=(T0 + 600) * S,
        source="cli",
    )


def store(root: Path, cap: int = 100_000, now: int = T0 + 650) -> LocalStore:
    return LocalStore(root, cap, now=lambda: now * S)


def test_a_keep_pins_the_files_covering_its_window_durably(spool: Path) -> None:
    out = local_submitter(spool, 100_000)(req("k1", T0 + 90, T0 + 150))
    # the files opened at +60 and +120 (each written for 59 s) cover 90..150
    assert (out.request_id, out.files, out.bytes, out.repeated) == ("k1", 2, 2000, False)
    assert out.unheld == ()
    filed = pins.decode((spool / "keep" / "k1.json").read_bytes())
    assert filed == req("k1", T0 + 90, T0 + 150)
    assert not [n for n in os.listdir(spool / "keep") if n.startswith(".")]  # no temp left


def test_the_same_id_twice_is_one_keep(spool: Path) -> None:
    s = store(spool)
    first = s.submit(req("k1", T0 + 90, T0 + 150))
    again = s.submit(req("k1", T0 + 90, T0 + 150))
    assert again.repeated and not first.repeated
    assert (again.files, again.bytes) == (first.files, first.bytes)
    assert os.listdir(spool / "keep") == ["k1.json"]


def test_concurrent_submits_of_one_id_file_one_pin(spool: Path) -> None:
    outs = []

    def go() -> None:
        outs.append(store(spool).submit(req("k-same", T0, T0 + 60)))

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o.repeated for o in outs) == [False] + [True] * 7


def test_a_window_before_the_ring_is_reported_unheld(spool: Path) -> None:
    out = store(spool).submit(req("old", T0 - 300, T0 + 30))
    assert out.unheld == (((T0 - 300) * S, T0 * S),)
    assert out.files == 1


def test_over_the_pinned_cap_is_refused_in_one_line_and_nothing_is_filed(spool: Path) -> None:
    s = store(spool, cap=3500)
    s.submit(req("k1", T0, T0 + 120))  # 2 files, 2000 bytes
    with pytest.raises(KeepRefused) as e:
        s.submit(req("k2", T0 + 120, T0 + 240))  # 2 more: 4000 > 3500
    msg = str(e.value)
    assert "\n" not in msg
    assert "3500" in msg or "0.0 MB" in msg  # the cap is named
    assert "1 keep(s) pin" in msg  # ... and what is pinned
    assert sorted(os.listdir(spool / "keep")) == ["k1.json"]
    # files a pin holds already are not counted twice
    assert not s.submit(req("k3", T0 + 10, T0 + 100)).repeated


def test_a_window_in_the_future_counts_at_the_rings_rate(spool: Path) -> None:
    # the ring fills at 1000 bytes / 60 s; 600 s ahead is 10000 bytes
    with pytest.raises(KeepRefused, match="still to capture"):
        store(spool, cap=5000).submit(req("ahead", T0 + 650, T0 + 1250))


def test_no_pins_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ready").mkdir()
    with pytest.raises(KeepRefused, match="no pins directory"):
        store(tmp_path).submit(req("k1", T0, T0 + 60))


# ---------------------------------------------------------------- hostile entries
def _plant(keep: Path, outside: Path) -> None:
    (keep / "link.json").symlink_to(outside)
    (keep / "huge.json").write_bytes(b"{" * (pins.MAX_PIN_BYTES + 10))
    (keep / "garbage.json").write_bytes(b"\x00\xff not json")
    (keep / "other.json").write_bytes(pins.encode(req("k9", T0, T0 + 60)))  # id != name
    os.mkfifo(keep / "fifo.json")
    (keep / "dir.json").mkdir()


def test_hostile_entries_get_one_log_line_each_and_are_ignored(
    spool: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outside = tmp_path / "outside.json"
    outside.write_bytes(pins.encode(req("link", T0, T0 + 600)))
    _plant(spool / "keep", outside)
    caplog.set_level(logging.WARNING, "rollcap.keep")
    store(spool).submit(req("good", T0, T0 + 60))  # keep's own process logs them too
    caplog.clear()
    reader = pins.PinReader()
    with Dir(spool / "keep") as d:
        got = reader.read(d)
        first = len(caplog.records)
        assert [p.id for p in got] == ["good"]  # the link's target pins nothing
        assert reader.bad == 6 and first == 6
        for r in caplog.records:
            assert "ignored" in r.getMessage() and "\n" not in r.getMessage()
        reader.read(d)  # a second tick: no new lines
        assert len(caplog.records) == first
    assert outside.read_bytes() == pins.encode(req("link", T0, T0 + 600))  # untouched


def test_pins_beyond_the_cap_are_not_read_and_new_keeps_are_refused(spool: Path) -> None:
    for i in range(2 * pins.MAX_PINS + pins.MAX_RELEASED + 5):
        (spool / "keep" / f"junk{i}").write_bytes(b"")
    with Dir(spool / "keep") as d:
        reader = pins.PinReader()
        reader.read(d)
        assert reader.truncated
    with pytest.raises(KeepRefused, match="keeps are pinned already"):
        store(spool).submit(req("k1", T0, T0 + 60))


def test_a_files_span_is_its_start_to_its_last_write(spool: Path) -> None:
    name = ready_file(spool, 11, T0 + 30, 500, iface="eth1")
    with Dir(spool / "ready") as d:
        (f,) = [f for f in pins.held_files(d) if f.name == name]
    assert (f.start_ns, f.end_ns) == ((T0 + 30) * S, (T0 + 89) * S)
    assert f.overlaps((T0 + 88) * S, (T0 + 200) * S)
    assert not f.overlaps((T0 + 89) * S, (T0 + 200) * S)
    assert not f.overlaps(0, (T0 + 30) * S)  # half-open windows


def test_on_demand_needs_drop_oldest_and_the_cap_comes_from_the_config() -> None:
    from rollcap.config.load import validate_data
    from rollcap.errors import ConfigError
    from rollcap.keep.store import cap_of

    with pytest.raises(ConfigError, match=r'needs spool\.on_full = "drop-oldest"'):
        validate_data({"offload": {"mode": "on-demand"}, "spool": {"on_full": "pause-capture"}})
    cfg = validate_data({"offload": {"mode": "on-demand"}, "keep": {"pinned_percent": 25}})
    cap, text = cap_of(cfg.spool.max_megabytes, cfg.keep.pinned_percent)
    assert cap == 2_500_000_000 and "keep.pinned_percent = 25" in text


def test_every_source_files_a_window_starting_at_most_5_min_ahead(spool: Path) -> None:
    """The rule LocalStore applies for every source (the CLI, the fleet poller, the
    listener): a pin whose window never comes would hold one of MAX_PINS for ever."""
    with pytest.raises(KeepRefused, match="at most 300 s ahead"):
        store(spool, cap=10**12).submit(req("later", T0 + 650 + 301, T0 + 650 + 400))
    assert not os.path.exists(spool / "keep" / "later.pin")
    store(spool, cap=10**12).submit(req("soon", T0 + 650 + 299, T0 + 650 + 400))


@pytest.mark.parametrize("field", ["since_ns", "until_ns", "created_ns"])
def test_times_beyond_64_bits_are_not_a_request(field: str) -> None:
    from pydantic import ValidationError

    body = {"id": "k", "reason": "r", "since_ns": 1, "until_ns": 2, "created_ns": 1,
            "source": "cli", field: 2**63}  # fmt: skip
    if field == "since_ns":
        body["until_ns"] = 2**63 + 1
    with pytest.raises(ValidationError):
        KeepRequest(**body)  # type: ignore[arg-type]


def test_the_future_of_pins_already_filed_counts_against_the_cap(spool: Path) -> None:
    """The ring fills at 1000 bytes / 60 s. A pin reaching 600 s ahead will take
    10000 bytes: a second keep finds the cap taken by it, not just by its files."""
    cap = 12_000
    store(spool, cap=cap).submit(req("first", T0 + 650, T0 + 1250))  # ~10 KB ahead
    with pytest.raises(KeepRefused, match="counting their windows still to come"):
        store(spool, cap=cap).submit(req("second", T0, T0 + 180))  # 3 files, 3000 bytes
    # the same future counted once: an overlapping window adds only its own part
    store(spool, cap=cap).submit(req("overlap", T0 + 650, T0 + 1250))


def test_pinned_bytes_past_the_cap_are_said_once_and_shown(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    from tests.unit.capture.fakes import supervisor

    sup = supervisor(tmp_path, spool={"max_megabytes": 10, "min_free_percent": 0},
                     offload={"mode": "on-demand"}, capture={"rotate_megabytes": 1},
                     keep={"pinned_percent": 10})  # fmt: skip
    root = sup.spool.root
    for i in range(3):
        ready_file(root, i + 1, T0 + 60 * i, 600_000)
    LocalStore(root, 10**9, now=lambda: (T0 + 650) * S).submit(req("k1", T0, T0 + 180))
    with caplog.at_level(logging.WARNING, "rollcap.capture"):
        sup.enforce_budget()
        sup.enforce_budget()
    over = [r for r in caplog.records if "more than the pinned cap" in r.getMessage()]
    assert len(over) == 1
    ring = sup.session.keeper.ring
    assert ring is not None and ring.as_dict()["pinned_over_cap"] is True
    assert ring.pinned_cap_bytes == 1_000_000
    from prometheus_client import CollectorRegistry, generate_latest

    from rollcap.capture.status import state_dict
    from rollcap.metrics.capture import CaptureCollector

    reg = CollectorRegistry()
    c = CaptureCollector(sup.spool)
    c.update(state_dict(sup.snapshot()))
    reg.register(c)
    assert b"rollcap_ring_pinned_over_cap 1.0" in generate_latest(reg)
