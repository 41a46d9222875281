"""When a tcpdump that exited is started again: at once after it captured, backing
off while it cannot start.

capture.interface as a list, [capture.per_interface.NAME], and rotate_align's clock."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rollcap.capture import interface, rotation
from rollcap.capture.counters import Counters
from rollcap.capture.interface import (
    BACKOFF_MAX,
    RESTART_AT_ONCE,
    SwitchRequest,
    restart_delay,
    switch_all,
)
from rollcap.capture.switching import Switched
from rollcap.commands.status import render_table
from rollcap.config.load import parse_config
from rollcap.errors import ConfigError
from rollcap.spool.readyname import ReadyName
from tests.support.pcaps import packets, write_pcap
from tests.unit.capture.fakes import FakeTcpdump, supervisor


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


class _Fake(FakeTcpdump):
    def __init__(self, generation: int) -> None:
        super().__init__(generation, 0.0)
        self.counters = Counters()


def _errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        parse_config(text)
    return e.value.problems


def test_one_interface_or_a_list() -> None:
    assert parse_config('[capture]\ninterface = "eth0"\n').capture.interfaces == ["eth0"]
    cfg = parse_config('[capture]\ninterface = ["eth0", "eth1"]\n')
    assert cfg.capture.interfaces == ["eth0", "eth1"]
    assert parse_config("").capture.interfaces == ["any"]


@pytest.mark.parametrize(
    ("value", "wanted"),
    [
        ("[]", "capture.interface: must name at least one interface, got []"),
        ('["eth0", "eth0"]', "capture.interface: must not name an interface twice"),
        ('["any", "eth0"]', 'capture.interface: "any" already captures every interface'),
        ('["eth0", "$(id)"]', 'capture.interface: "any" or interface names of 1-15'),
        ("[3]", "capture.interface: must be a string or a list of strings"),
        ("3", "capture.interface: must be a string or a list of strings"),
    ],
)
def test_bad_interface_lists_are_one_line_errors(value: str, wanted: str) -> None:
    (line,) = _errors(f"[capture]\ninterface = {value}\n")
    assert line.startswith(f"<config>: {wanted}"), line


def test_per_interface_overrides_filter_and_snaplen() -> None:
    cfg = parse_config(
        '[capture]\ninterface = ["eth0", "eth1"]\nfilter = "tcp"\nsnaplen = 2000\n'
        '[capture.per_interface.eth1]\nfilter = ""\nsnaplen = 128\n'
    )
    eth0, eth1 = (cfg.capture.for_interface(n) for n in ("eth0", "eth1"))
    assert (eth0.interface, eth0.filter, eth0.snaplen) == ("eth0", "tcp", 2000)
    assert (eth1.interface, eth1.filter, eth1.snaplen) == ("eth1", "", 128)  # "" = no filter
    assert eth1.per_interface == {} and eth1.rotate_seconds == cfg.capture.rotate_seconds


def test_per_interface_errors_name_the_key() -> None:
    head = '[capture]\ninterface = "eth0"\n'
    (line,) = _errors(head + "[capture.per_interface.eth9]\nsnaplen = 100\n")
    assert line == (
        "<config>: capture.per_interface.eth9: no interface 'eth9' in capture.interface (eth0)"
    )
    (line,) = _errors('[capture]\ninterface = "eth0"\n[capture.per_interface.eth0]\nsnaplen = 10\n')
    assert line.startswith("<config>: capture.per_interface.eth0.snaplen: must be at least 64")
    (line,) = _errors('[capture]\ninterface = "eth0"\n[capture.per_interface.eth0]\nbuffer = 1\n')
    assert line.startswith("<config>: capture.per_interface.eth0.buffer: unknown key")


def _t(h: int, m: int, s: float = 0) -> float:
    return datetime(2026, 11, 26, h, m, tzinfo=UTC).timestamp() + s


def test_interfaces_switched_together_keep_every_new_live_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two interfaces cut at one boundary: the hand-off after the switch must see
    both new tcpdumps as live (it once handed the second one's live file off)."""
    sup = supervisor(tmp_path, capture={"interface": ["eth0", "eth1"], "rotate_align": True})
    ic0, ic1 = sup.captures.values()
    pk = packets(4)
    for gen, iface in ((1, "eth0"), (2, "eth1"), (3, "eth0"), (4, "eth1")):
        write_pcap(sup.spool.work / f"g00000{gen}-20261126T120000-{iface}.pcap", pk)
    ic0.proc, ic1.proc = _Fake(1), _Fake(2)  # type: ignore[assignment]
    news = [Switched(_Fake(3), 0, ""), Switched(_Fake(4), 0, "")]  # type: ignore[arg-type]
    monkeypatch.setattr(interface, "make_before_break_many", lambda *_a: news)
    assert switch_all([SwitchRequest(ic0, "t"), SwitchRequest(ic1, "t")]) == [True, True]
    assert (ic0.proc.generation, ic1.proc.generation) == (3, 4)
    left = sorted(p.name for p in sup.spool.work.iterdir() if p.name.startswith("g"))
    assert left == ["g000003-20261126T120000-eth0.pcap", "g000004-20261126T120000-eth1.pcap"]
    assert sup.n.handed_off_files == 2


def test_a_live_file_holds_back_only_its_own_interface(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, capture={"interface": ["eth0", "eth1"], "rotate_align": True})
    ic0, ic1 = sup.captures.values()
    for gen, iface in ((5, "eth0"), (6, "eth1")):
        write_pcap(sup.spool.work / f"g00000{gen}-20261126T120000-{iface}.pcap", packets(3))
    write_pcap(sup.spool.work / "g000006-20261126T120010-eth1.pcap", packets(3))
    ic0.proc, ic1.proc = _Fake(5), _Fake(6)  # type: ignore[assignment]
    sup.process_work(block=True)  # eth0's live file comes first in work/; eth1's finished one goes
    ready = [ReadyName.parse(p.name) for p in sup.spool.ready.iterdir()]
    assert [(r.iface, r.start.second) for r in ready if r] == [("eth1", 0)]


def test_an_aligned_deadline_survives_clock_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sup = supervisor(tmp_path, capture={"rotate_seconds": 10, "rotate_align": True})
    (ic,) = sup.captures.values()
    (sup.spool.work / "g000003-20261126T130000-eth0.pcap").write_bytes(b"")
    ic.proc = _Fake(3)  # type: ignore[assignment]
    ic.proc.listening_mono = time.monotonic() - 2.0
    now = [_t(13, 0, 3)]
    monkeypatch.setattr(time, "time", lambda: now[0])
    left = ic.seconds_left()
    assert left == pytest.approx(10 - rotation.LEAD - 3, abs=0.01)  # the boundary 13:00:10
    now[0] = _t(12, 0, 5)  # stepped back an hour: the monotonic quiet deadline still holds
    left = ic.seconds_left()
    assert left is not None and left <= 10 + rotation.QUIET_GRACE - 2.0
    now[0] = _t(14, 0, 5.5)  # stepped forward: due now, and named for now
    req = ic.rotation_due()
    assert req is not None and req.opened == _t(14, 0, 5)


def test_the_budget_holds_every_interfaces_live_file() -> None:
    (line,) = _errors(
        '[capture]\ninterface = ["eth0", "eth1"]\nrotate_megabytes = 100\n'
        "[spool]\nmax_megabytes = 250\n"
    )
    assert line == (
        "<config>: spool.max_megabytes: must be at least 3 times capture.rotate_megabytes (300) "
        "so a finished file and the 2 being written (one per interface) fit, got 250"
    )


def test_the_budget_is_kept_during_a_switchs_overlap(tmp_path: Path) -> None:
    """An aligned switch waits up to 3 s for its boundary: on a busy link the spool
    must not grow unchecked meanwhile (pause-capture pauses at once after it)."""
    sup = supervisor(
        tmp_path,
        spool={"max_megabytes": 10, "on_full": "pause-capture", "min_free_percent": 0},
        capture={"rotate_megabytes": 1},
    )
    (ic,) = sup.captures.values()
    ic.proc = _Fake(7)  # type: ignore[assignment]
    (sup.spool.work / "g000007-20261126T120000-eth0.pcap").write_bytes(b"x" * 200_000)
    assert sup.during_switch({7, 8}) is False  # within the budget: the overlap goes on
    (sup.spool.ready / "20261126T115950Z-000001_h_eth0.pcap").write_bytes(b"x" * 9_500_000)
    stopped: list[bool] = []
    sup.interfaces.stop = lambda drain=True: stopped.append(drain)  # type: ignore[method-assign]
    assert sup.during_switch({7, 8}) is True  # ends the wait
    assert stopped == []  # nothing is stopped in the middle of the switch ...
    sup.after_switch()
    assert stopped == [False] and ic.state_name == "paused"  # ... but right after it


def test_status_says_how_files_are_cut_and_the_precision(tmp_path: Path) -> None:
    """An operator reading `rollcap status` sees whether files follow the UTC clock
    and whether timestamps are nanoseconds, without opening the config."""
    sup = supervisor(tmp_path, capture={"rotate_seconds": 600, "rotate_megabytes": 200,
                                         "timestamp_precision": "nano"})  # fmt: skip
    st = sup.state()
    assert st["rotation"] == "every 600 s on the UTC clock, or at 200 MB"
    assert st["timestamp_precision"] == "nano"
    table = render_table({"capture": {**st, "running": True}}, verbose=True)
    assert ["rotation", "every", "600", "s", "on", "the", "UTC", "clock,", "or", "at", "200",
            "MB"] in [ln.split() for ln in table.splitlines()]  # fmt: skip
    sup = supervisor(tmp_path / "b", capture={"rotate_seconds": 60, "rotate_align": False})
    assert sup.state()["rotation"] == "every 60 s, or at 1000 MB"  # the default size
    assert sup.state()["timestamp_precision"] == "micro"
