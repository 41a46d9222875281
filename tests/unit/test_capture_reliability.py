"""Capture fixes found by the fault suite (docs/reliability.md, "Findings")."""

from __future__ import annotations

import errno
import logging
import os
import pwd
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rollcap.capture import quiet, service, switching
from rollcap.capture.budget import live_reserve, oldest_ready
from rollcap.capture.command import check_config_filter
from rollcap.capture.interface import InterfaceCapture, SwitchRequest
from rollcap.capture.overlap import (
    iter_records,
    read_switch,
    switch_name,
    tail_since,
    write_sidecar,
    write_switch,
)
from rollcap.capture.ratelimit import RepeatLimiter
from rollcap.capture.restart import BACKOFF_MAX, RESTART_AT_ONCE, restart_delay
from rollcap.config.load import validate_data
from rollcap.errors import ConfigError
from rollcap.naming import ReadyName
from rollcap.spool import Spool
from rollcap.spoolfs import Dir
from tests.unit.capture_pcaps import packets, write_pcap

REPO = Path(__file__).resolve().parents[2]


class FakeTcpdump:
    """What the supervisor reads of a running tcpdump."""

    def __init__(self, generation: int, listening_mono: float | None) -> None:
        self.generation = generation
        self.listening_mono = listening_mono
        self.pid = 4242

        class _Ev:
            def is_set(self) -> bool:
                return listening_mono is not None

        self.listening = _Ev()
        self.output_closed_at: float | None = None

    def alive(self) -> bool:
        return True

    def request_counters(self) -> None:
        pass


def _supervisor(tmp_path: Path, **sections: dict[str, object]) -> service.Supervisor:
    # tcpdump's files are this test's (capture.user: the test's own user)
    me = pwd.getpwuid(os.geteuid()).pw_name
    data: dict[str, object] = {
        "spool": {"directory": str(tmp_path / "spool")},
        "capture": {"user": me, "hostname": "h"},
    }
    for k, v in sections.items():
        data[k] = {**data.get(k, {}), **v}  # type: ignore[dict-item]
    cfg = validate_data(data)
    sup = service.Supervisor(str(tmp_path / "rollcap.toml"), cfg)
    sup.open_spool()
    sup.set_interfaces(cfg, dict.fromkeys(cfg.capture.interfaces, ""))
    return sup


def _ic(sup: service.Supervisor) -> InterfaceCapture:
    """The one interface's capture (the default interface, "any")."""
    (ic,) = sup.captures.values()
    return ic


# 1. restart backoff -------------------------------------------------------------


def test_a_tcpdump_that_captured_is_restarted_at_once_every_time() -> None:
    backoff = 1.0
    delays = []
    for _kill in range(5):  # kill -9 1.5-3 s after each restart while packets flow
        delay, backoff = restart_delay(backoff, listened=1.5, wrote=True, returncode=-9)
        delays.append(delay)
    assert delays == [RESTART_AT_ONCE] * 5
    # even after a crash loop had pushed the backoff up
    assert restart_delay(BACKOFF_MAX, listened=6.0, wrote=False) == (RESTART_AT_ONCE, 1.0)
    # kill -9 half a second after it listened: nothing flushed to disk yet, but capturing
    assert restart_delay(8.0, listened=0.5, wrote=False, returncode=-signal.SIGKILL)[0] == 0.2
    assert restart_delay(8.0, listened=None, wrote=False, returncode=-signal.SIGKILL)[0] == 8.0


def test_a_tcpdump_that_wrote_but_keeps_dying_by_itself_waits_one_second_each_time() -> None:
    backoff = 1.0
    delays = []
    for _crash in range(5):  # e.g. a packet that crashes it, a second after each start
        delay, backoff = restart_delay(backoff, listened=0.8, wrote=True, returncode=-11)
        delays.append(delay)
    assert delays == [1.0] * 5


def test_a_tcpdump_that_dies_before_or_right_after_listening_backs_off() -> None:
    backoff = 1.0
    delays = []
    for i in range(8):
        listened = None if i % 2 else 0.2  # never listened / died right after, no packets
        rc = -signal.SIGSEGV if i == 3 else 1  # a crash is not a kill from outside
        delay, backoff = restart_delay(backoff, listened=listened, wrote=False, returncode=rc)
        delays.append(delay)
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]


def test_the_loop_wakes_for_a_due_restart_and_a_dying_tcpdump_but_never_spins(
    tmp_path: Path,
) -> None:
    import time

    sup = _supervisor(tmp_path)
    _ic(sup).proc = None
    _ic(sup).next_start = time.monotonic() + 0.2  # restart due in 0.2 s, not at the next tick
    assert 0.1 < sup.loop_timeout(None) <= 0.21
    _ic(sup).next_start = time.monotonic() - 5  # long past (waiting for an interface)
    assert sup.loop_timeout(None) == service.TICK
    assert sup.loop_timeout(0.3) == 0.3  # quiet-link rotation due first
    dying = FakeTcpdump(1, 0.0)
    _ic(sup).proc = dying  # type: ignore[assignment]
    assert sup.loop_timeout(None) == service.TICK
    dying.output_closed_at = time.monotonic()  # stderr EOF: reaped any moment
    assert sup.loop_timeout(None) <= 0.05
    dying.output_closed_at -= 10  # an exit stuck in the kernel
    assert sup.loop_timeout(None) == service.TICK


# 2. spool budget with drop-oldest ------------------------------------------------


def test_live_reserve_is_what_the_live_file_may_still_grow_by() -> None:
    assert live_reserve(1_000_000, 200_000) == 800_000
    assert live_reserve(1_000_000, 1_000_050) == 0  # -C overshoots by one packet
    assert live_reserve(1_000_000, None) == 0  # no tcpdump running


def test_drop_oldest_reserves_the_live_files_full_size(tmp_path: Path) -> None:
    sup = _supervisor(
        tmp_path,
        spool={"max_megabytes": 10, "on_full": "drop-oldest", "min_free_percent": 0},
        capture={"rotate_megabytes": 1},
    )
    for seq in (1, 2, 3):
        (sup.spool.ready / f"20261126T12000{seq}Z-00000{seq}_h_eth0.pcap").write_bytes(
            b"x" * 3_100_000
        )
    live = sup.spool.work / "g000007-20261126T120004-eth0.pcap"
    live.write_bytes(b"x" * 200_000)
    _ic(sup).proc = FakeTcpdump(7, time.monotonic())  # type: ignore[assignment]
    sup.enforce_budget()  # 9.5 MB used: within 10 MB, but not once the live file is full
    left = sorted(ReadyName.parse(p.name).seq for p in sup.spool.ready.iterdir())  # type: ignore[union-attr]
    assert left == [2, 3]
    assert sup.n["dropped_files"] == 1 and live.exists()
    sup.enforce_budget()  # 6.4 MB + 0.8 MB reserved: nothing more to drop
    assert sup.n["dropped_files"] == 1


def test_pause_capture_pauses_before_the_live_file_can_cross_the_budget(tmp_path: Path) -> None:
    """9.9 MB used of 10: the live file may still grow by 0.8 MB, so capture
    pauses now, not one file too late; nothing is ever dropped for it."""
    sup = _supervisor(
        tmp_path,
        spool={"max_megabytes": 10, "on_full": "pause-capture", "min_free_percent": 0},
        capture={"rotate_megabytes": 1},
    )
    (sup.spool.ready / "20261126T120001Z-000001_h_eth0.pcap").write_bytes(b"x" * 8_900_000)
    (sup.spool.work / "g000007-20261126T120004-eth0.pcap").write_bytes(b"x" * 200_000)
    _ic(sup).proc = FakeTcpdump(7, time.monotonic())  # type: ignore[assignment]
    sup.enforce_budget()
    assert not sup.paused  # 8.9 + 0.2 + 0.8 reserve: exactly the budget
    (sup.spool.ready / "20261126T120002Z-000002_h_eth0.pcap").write_bytes(b"x" * 800_000)
    stopped: list[bool] = []
    sup.stop_capture = lambda drain=True: stopped.append(drain)  # type: ignore[method-assign]
    sup.enforce_budget()
    assert sup.paused and stopped == [False] and sup.n["dropped_files"] == 0


# 3. clock steps ---------------------------------------------------------------------


def test_ready_files_are_dropped_in_hand_off_order_after_a_clock_step_back(
    tmp_path: Path,
) -> None:
    spool = Spool.at(tmp_path)
    spool.ready.mkdir(parents=True)
    t = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)
    # seq 2 was handed off after the clock stepped back an hour
    for seq, start in ((1, t), (2, t - timedelta(hours=1)), (3, t - timedelta(minutes=59))):
        (spool.ready / ReadyName(start, seq, "h", "eth0").format()).write_bytes(b"x")
    got = [ReadyName.parse(n).seq for n in oldest_ready(Dir(spool.ready))]  # type: ignore[union-attr]
    assert got == [1, 2, 3]


def test_quiet_deadline_ignores_the_wall_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sup = _supervisor(tmp_path, capture={"rotate_seconds": 10, "rotate_align": False})
    switched: list[str] = []

    def switch_all(reqs: list[SwitchRequest]) -> list[bool]:
        switched.extend(r.reason for r in reqs)
        return [True for _r in reqs]

    monkeypatch.setattr(service, "switch_all", switch_all)
    # tcpdump named its file at 13:00; the clock then stepped back an hour
    (sup.spool.work / "g000003-20261126T130000-eth0.pcap").write_bytes(b"")
    monkeypatch.setattr(
        time, "time", lambda: datetime(2026, 11, 26, 12, 0, 5, tzinfo=UTC).timestamp()
    )
    _ic(sup).proc = FakeTcpdump(3, time.monotonic() - 2.0)  # type: ignore[assignment]
    left = sup.check_quiet()
    assert left is not None and 9 < left <= 10 + quiet.QUIET_GRACE - 2.0
    # a new generation: its first period is aged from when it listened
    (sup.spool.work / "g000003-20261126T130000-eth0.pcap").unlink()
    (sup.spool.work / "g000004-20261126T130000-eth0.pcap").write_bytes(b"")
    _ic(sup).proc = FakeTcpdump(4, time.monotonic() - 12.0)  # type: ignore[assignment]
    assert sup.check_quiet() is None and switched == ["quiet link"]


def test_a_later_period_is_aged_from_when_it_was_first_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sup = _supervisor(tmp_path, capture={"rotate_seconds": 10, "rotate_align": False})
    monkeypatch.setattr(service, "switch_all", lambda reqs: [True for _r in reqs])
    _ic(sup).proc = FakeTcpdump(3, time.monotonic() - 8.0)  # type: ignore[assignment]
    (sup.spool.work / "g000003-20261126T130000-eth0.pcap").write_bytes(b"")
    first = sup.check_quiet()
    assert first is not None and first < 4
    (sup.spool.work / "g000003-20261126T130000-eth0.pcap1").write_bytes(b"")
    left = sup.check_quiet()  # a -C continuation keeps its period's deadline
    assert left is not None and left <= first
    # the -G period of 13:00:10 began; the first one was handed off meanwhile
    (sup.spool.work / "g000003-20261126T130000-eth0.pcap").unlink()
    (sup.spool.work / "g000003-20261126T130000-eth0.pcap1").unlink()
    (sup.spool.work / "g000003-20261126T130010-eth0.pcap").write_bytes(b"")
    left = sup.check_quiet()
    assert left is not None and left > 10


# 4. repeated errors ---------------------------------------------------------------


def test_repeated_errors_are_logged_once_then_summarised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    lim = RepeatLimiter(logging.getLogger("t.rl"), every=60.0, clock=lambda: now[0])
    caplog.set_level(logging.INFO, "t.rl")
    for _ in range(121):  # two a second for a minute
        lim.error("handoff:No space left on device", "hand-off of a failed: No space")
        now[0] += 0.5
    lim.error("state:No space left on device", "cannot write the state file")
    lim.clear("handoff:", "hand-off")
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs == [
        "hand-off of a failed: No space",
        "hand-off of a failed: No space (120 more times in the last 60 s)",
        "cannot write the state file",
        "hand-off works again after 121 failures in 60 s",
    ]
    assert lim.active() == 1  # the state file still fails


# 6. a switch survives a supervisor crash --------------------------------------------


def test_switch_record_round_trip_and_reload(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path)
    write_pcap(sup.spool.work / "g000004-20261126T120000-eth0.pcap", packets(3))
    write_switch(sup.dirs.work, switch_name(4), 5, 1_800_000_000.5)
    assert read_switch(sup.dirs.work, switch_name(4)) == (5, 1_800_000_000.5)
    sup.load_switches()
    assert sup.overlaps is not None
    assert sup.overlaps.next_of == {4: 5} and sup.overlaps.since == {5: 1_800_000_000.5}
    (sup.spool.work / ".switch-g000009.json").write_text("{not json")
    assert read_switch(sup.dirs.work, ".switch-g000009.json") is None


# 5. check-config compiles the filter ------------------------------------------------


def test_check_config_filter() -> None:
    if not Path("/usr/bin/tcpdump").exists():
        pytest.fail("tcpdump is not installed (.ci/run installs it)")
    with pytest.raises(ConfigError) as e:
        check_config_filter(
            validate_data({"capture": {"interface": "lo", "filter": "tcp and and"}}).capture
        )
    assert e.value.exit_code == 78 and "syntax error" in str(e.value)
    missing = {"interface": "rcNoSuch0", "filter": "tcp port 80"}
    note = check_config_filter(validate_data({"capture": missing}).capture)
    assert note is not None and "EN10MB" in note and "interface is missing" in note
    no_tcpdump = {**missing, "tcpdump_path": "/nonexistent/tcpdump"}
    note = check_config_filter(validate_data({"capture": no_tcpdump}).capture)
    assert note is not None and "not compiled" in note
    assert (
        check_config_filter(validate_data({"capture": {"interface": "rcNoSuch0"}}).capture) is None
    )


# a full disk never stops the supervisor ----------------------------------------------


def _enospc(*_a: object, **_kw: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_counters_that_cannot_be_saved_do_not_stop_capture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sup = _supervisor(tmp_path)
    monkeypatch.setattr(sup.launcher.persistent, "save", _enospc)
    _ic(sup).proc = FakeTcpdump(3, time.monotonic())  # type: ignore[assignment]
    sup.track_pids()
    sup.stop_orphans()
    assert "No space left on device" in sup.last_error
    assert sup.launcher.persistent.tcpdump_pids == []  # the memory copy is right
    _ic(sup).proc = None
    assert "error: cannot save" in sup.status_line()  # systemctl status shows it


def test_a_tail_that_cannot_be_remembered_holds_the_hand_off_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sup = _supervisor(tmp_path)
    old = write_pcap(sup.spool.work / "g000004-20261126T120000-eth0.pcap", packets(5))
    assert sup.overlaps is not None
    sup.overlaps.begin(4, 5, packets(5)[2][0])  # generation 5 replaced 4
    monkeypatch.setattr(switching, "append_sidecar", _enospc)
    sup.process_work()  # generation 4 is not live: its file is finished
    assert old.exists() and sup.overlaps.next_of == {4: 5}
    assert "No space left on device" in sup.last_error
    monkeypatch.undo()
    sup.process_work()
    assert not old.exists() and sup.overlaps.next_of == {}
    assert (sup.spool.work / ".overlap-g000005.json").exists()
    assert sup.n["handed_off_files"] == 1


def test_check_config_exits_78_with_tcpdumps_message(tmp_path: Path) -> None:
    cfg = tmp_path / "rollcap.toml"
    cfg.write_text('[capture]\ninterface = "rcNoSuch0"\nfilter = "tcp porrt 80"\n')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run(
        [sys.executable, "-m", "rollcap", "check-config", str(cfg)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 78, r.stderr
    assert r.stderr == (
        "rollcap: capture.filter: tcpdump rejects 'tcp porrt 80': "
        "tcpdump: can't parse filter expression: syntax error\n"
    )
    cfg.write_text('[capture]\ninterface = "rcNoSuch0"\nfilter = "tcp port 80"\n')
    r = subprocess.run(
        [sys.executable, "-m", "rollcap", "check-config", str(cfg)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (r.returncode, r.stdout) == (0, f"{cfg}: OK\n")
    assert "compiled for Ethernet (EN10MB): the interface is missing" in r.stderr
    assert "capture.interface: no interface 'rcNoSuch0' on this machine (yet)" in r.stderr


# reload never stops the daemon -----------------------------------------------------


def test_reload_to_a_user_that_cannot_reach_the_spool_keeps_the_old_config(
    tmp_path: Path,
) -> None:
    """A new capture.user that cannot enter the spool's parents is a rejected reload
    (logged, old config kept), not an exception that ends the daemon with 78."""
    if os.geteuid() != 0:
        pytest.fail("needs root (chown of the spool)")
    tmp_path.chmod(0o700)  # capture.user 'nobody' cannot pass through it
    sup = _supervisor(tmp_path, capture={"user": "root", "interface": "rcNoSuch0"})
    sup.identity = replace(sup.identity, uid=0)
    (tmp_path / "rollcap.toml").write_text(
        f'[capture]\nuser = "nobody"\ninterface = "rcNoSuch0"\n'
        f'[spool]\ndirectory = "{sup.spool.root}"\n'
    )
    sup.reload()  # before the fix: ConfigError escaped the main loop
    assert sup.cfg.capture.user == "root" and sup.identity.uid == 0
    assert "reload rejected" in sup.last_error and "cannot enter" in sup.last_error
    assert sup.spool.work.stat().st_uid == 0  # the running tcpdump's work/ left as it was


def test_a_quarantined_work_file_is_not_reported_as_discarded_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Quarantine keeps the file: the log and status must not say it was deleted."""
    sup = _supervisor(tmp_path)
    (sup.spool.work / "g000004-20261126T120000-eth0.pcap").write_bytes(b"x" * 100)
    with caplog.at_level(logging.INFO, logger="rollcap.capture"):
        sup.process_work()
    kept = [p.name for p in sup.spool.quarantine.iterdir() if not p.name.endswith(".reason")]
    assert kept == ["g000004-20261126T120000-eth0.pcap"]
    assert sup.n["discarded_empty"] == 0
    assert "no packets" not in caplog.text and "quarantine" in caplog.text


def test_a_filter_compile_that_hangs_is_a_one_line_config_error(tmp_path: Path) -> None:
    """tcpdump -d stuck (e.g. resolving a host name in the filter) must not end in a
    TimeoutExpired traceback (check-config, start) or a crash out of a reload."""
    slow = tmp_path / "tcpdump"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    cap = validate_data(
        {"capture": {"interface": "rcNoSuch0", "filter": "tcp", "tcpdump_path": str(slow)}}
    ).capture
    with pytest.raises(ConfigError) as e:
        check_config_filter(cap, timeout=0.5)
    assert e.value.exit_code == 78 and "did not finish" in str(e.value)


def test_an_overlap_over_several_files_on_both_sides_is_stored_once(tmp_path: Path) -> None:
    """A burst during a quiet-link switch with small -C files: the old tcpdump
    wrote the overlap into two files, the new one into three."""
    sup = _supervisor(tmp_path)
    pk = packets(100)
    old_gen = [pk[:50], pk[50:80]]  # the old tcpdump ran until packet 79
    new_gen = [pk[40:55], pk[55:75], pk[75:]]  # the new one listened from packet 40
    for i, part in enumerate(old_gen):
        write_pcap(sup.spool.work / f"g000004-20261126T120000-eth0.pcap{i or ''}", part)
    for i, part in enumerate(new_gen):
        write_pcap(sup.spool.work / f"g000005-20261126T120000-eth0.pcap{i or ''}", part)
    assert sup.overlaps is not None
    sup.overlaps.begin(4, 5, pk[40][0])
    sup.process_work()  # neither generation is live
    stored = sorted(fp.ts for f in sup.spool.ready.iterdir() for _o, _n, fp in iter_records(f))
    assert stored == [ts for ts, _d in pk]  # every packet exactly once
    assert sup.n["duplicates_removed"] == 40
    assert list(sup.spool.work.iterdir()) == []  # no sidecar or switch record left


def test_a_failed_sidecar_update_leaves_duplicates_never_a_double_strip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rollcap.capture import handoff as handoff_mod

    sup = _supervisor(tmp_path)
    pk = packets(60)
    old = write_pcap(tmp_path / "old.pcap", pk[:40])  # already handed off
    write_sidecar(sup.dirs.work, ".overlap-g000005.json", tail_since(old, pk[20][0]))
    all_dup = write_pcap(sup.spool.work / "g000005-20261126T120000-eth0.pcap", pk[20:30])
    write_pcap(sup.spool.work / "g000005-20261126T120000-eth0.pcap1", pk[30:60])
    monkeypatch.setattr(handoff_mod, "write_sidecar", _enospc)
    sup.process_work()
    assert all_dup.read_bytes().count(b"p000020") == 8  # untouched: sidecar first
    monkeypatch.undo()
    sup.process_work()
    stored = sorted(fp.ts for f in sup.spool.ready.iterdir() for _o, _n, fp in iter_records(f))
    assert stored == [ts for ts, _d in pk[40:]]  # the 20 duplicates gone, nothing else
