"""A stop does not wait for an overlap strip past its deadline: the strip ends at
its next checkpoint, its file and the interface's later files stay in work/ as
they were, and the next start hands them off, every packet once."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from rollcap.capture import lock
from rollcap.capture.handoff import STOP_STRIPS_ENV, STOP_STRIPS_SECONDS, stop_strips_seconds
from rollcap.capture.service import Supervisor
from rollcap.capture.stripworker import checkpoint
from rollcap.capture.switching import iter_records, sidecar_name, switch_name, write_switch
from tests.support.pcaps import packets, write_pcap
from tests.unit.capture.fakes import supervisor

OLD = "g000004-20261126T120000-eth0.pcap"
NEW = ("g000005-20261126T120000-eth0.pcap", "g000005-20261126T120000-eth0.pcap1")


def switched_files(sup: Supervisor) -> list[tuple[float, bytes]]:
    """An old generation (4) and a new one (5, two -C files) that overlap by 20 packets."""
    pk = packets(100)
    write_pcap(sup.spool.work / OLD, pk[:60])
    write_pcap(sup.spool.work / NEW[0], pk[40:70])
    write_pcap(sup.spool.work / NEW[1], pk[70:])
    sup.session.overlaps.begin(4, 5, pk[40][0])
    return pk


def stored(sup: Supervisor) -> list[float]:
    return sorted(fp.ts for f in sup.spool.ready.iterdir() for _o, _n, fp in iter_records(f))


def restart(tmp_path: Path, sup: Supervisor) -> Supervisor:
    """What the next `rollcap capture` does before its loop (Supervisor.run)."""
    sup.session.queue.worker.stop()  # type: ignore[union-attr]
    os.close(sup.session.lock_fd)  # the first one has exited
    again = supervisor(tmp_path)
    lock.remove_stale_temps(again.dirs.work)
    again.load_switches()
    return again


def test_a_stop_does_not_wait_for_a_starved_worker_it_strips_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker (nice +10) can be starved for many seconds on a busy host: the
    stop cancels its strip and does it on its own thread."""
    sup = supervisor(tmp_path)
    pk = switched_files(sup)
    started = threading.Event()
    fingerprint = sup.session.overlaps.fingerprint

    def starved(*a: object) -> None:
        if not threading.current_thread().name.startswith("strip"):
            return fingerprint(*a)  # type: ignore[arg-type]
        started.set()
        while True:  # never done on the worker
            checkpoint()
            time.sleep(0.01)

    monkeypatch.setattr(sup.session.overlaps, "fingerprint", starved)
    sup.process_work()
    assert started.wait(30) and sup.session.queue.busy
    sup.process_work(block=True, until=time.monotonic() + 60)  # the stop's hand-off
    assert stored(sup) == [ts for ts, _d in pk]  # every packet once, all at the stop
    assert list(sup.spool.work.iterdir()) == [] and not sup.session.queue.busy


def test_a_strip_past_the_stop_deadline_is_left_to_the_next_start_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sup = supervisor(tmp_path)
    pk = switched_files(sup)
    started = threading.Event()
    fingerprint = sup.session.overlaps.fingerprint

    def slow(*a: object) -> None:  # a strip that takes longer than the stop allows
        started.set()
        while True:
            checkpoint()
            time.sleep(0.01)

    monkeypatch.setattr(sup.session.overlaps, "fingerprint", slow)
    sup.process_work()
    assert started.wait(30)
    sup.process_work(block=True, until=time.monotonic() + 0.2)  # the stop's hand-off
    assert not sup.session.queue.busy  # the worker let go of the strip
    assert list(sup.spool.ready.iterdir()) == []  # nothing of eth0 jumped the queue
    left = sorted(p.name for p in sup.spool.work.iterdir())
    assert left == sorted([OLD, *NEW, switch_name(4)])  # as they were: no temp, no sidecar
    assert sup.session.queue.left_in_work()[0] == 3

    monkeypatch.setattr(sup.session.overlaps, "fingerprint", fingerprint)
    again = restart(tmp_path, sup)
    again.process_work(block=True)
    assert stored(again) == [ts for ts, _d in pk]  # every packet exactly once
    assert again.n.duplicates_removed == 20
    assert list(again.spool.work.iterdir()) == []


def test_a_strip_that_finishes_after_the_deadline_is_handed_off_not_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its last checkpoint a strip completes (it may have rewritten its file
    already): the stop hands that file off, so no stripped file waits in work/
    to be stripped a second time; the next one is not begun."""
    sup = supervisor(tmp_path)
    pk = switched_files(sup)
    until = time.monotonic() + 0.2
    fingerprint = sup.session.overlaps.fingerprint

    def late(*a: object) -> None:
        fingerprint(*a)  # type: ignore[arg-type]
        while time.monotonic() < until + 0.2:
            time.sleep(0.01)  # past the last checkpoint: as a rewrite that has begun

    monkeypatch.setattr(sup.session.overlaps, "fingerprint", late)
    sup.process_work(block=True, until=until)
    assert len(list(sup.spool.ready.iterdir())) == 1  # the old file, its tail kept
    assert sorted(p.name for p in sup.spool.work.iterdir()) == sorted(
        [*NEW, sidecar_name(5)]
    )  # the new ones' strip was not started: left with the tail they need
    monkeypatch.undo()
    again = restart(tmp_path, sup)
    again.process_work(block=True)
    assert stored(again) == [ts for ts, _d in pk]
    assert list(again.spool.work.iterdir()) == []


def test_a_start_keeps_the_records_its_leftovers_need_and_removes_the_rest(
    tmp_path: Path,
) -> None:
    sup = supervisor(tmp_path)
    work = sup.spool.work
    write_pcap(work / NEW[0], packets(3))
    for gen in (4, 5):
        write_switch(sup.dirs.work, switch_name(gen), gen + 1, 1_800_000_000.0)
    (work / sidecar_name(5)).write_text("{}")  # generation 5 has a file: kept
    (work / sidecar_name(3)).write_text("{}")  # no file of 3: stale
    (work / f".{NEW[0]}.abc123.strip").write_text("")  # a strip's temp: nothing runs yet
    lock.remove_stale_temps(sup.dirs.work)
    assert sorted(p.name for p in work.iterdir()) == sorted(
        [NEW[0], sidecar_name(5), switch_name(5)]
    )


def test_the_stop_deadline_from_the_environment_is_checked(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert stop_strips_seconds() == STOP_STRIPS_SECONDS
    monkeypatch.setenv(STOP_STRIPS_ENV, "0")
    assert stop_strips_seconds() == 0.0
    for bad in ("soon", "-1", "21", "nan"):
        monkeypatch.setenv(STOP_STRIPS_ENV, bad)
        assert stop_strips_seconds() == STOP_STRIPS_SECONDS
    assert f"ignoring {STOP_STRIPS_ENV}='nan': a number of seconds from 0 to 20" in caplog.text
