"""bench.evidence reads tcpdump's drop counters over time; the load bench's
findings rest on these parsers and on never killing a starting tcpdump."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from bench.evidence import DropSource, catches, coincidence


def test_drop_counters_are_summed_over_tcpdumps_from_both_line_forms() -> None:
    d = DropSource()
    # SIGUSR1's one-line form, echoed by the capture daemon's debug log
    d.feed(
        "19:01:23 debug   rollcap.capture.tcpdump: tcpdump: 17885 packets captured, "
        "17985 packets received by filter, 100 packets dropped by kernel  "
        "[tcpdump_pid=12237 generation=1]"
    )
    # the exit form: one counter per line; a later line replaces the earlier value
    d.feed("2407339 packets received by filter  [tcpdump_pid=12237 generation=1]")
    d.feed("250 packets dropped by kernel  [tcpdump_pid=12237 generation=1]")
    # another generation's tcpdump, and bare tcpdump's stderr keyed by the caller
    d.feed("tcpdump: 10 packets captured, 12 packets received by filter, 2 packets "
           "dropped by kernel  [tcpdump_pid=12439 generation=2]")  # fmt: skip
    d.feed("5 packets dropped by kernel", key="bare")
    d.feed("listening on vethB, link-type EN10MB (Ethernet)", key="bare")
    assert d.total() == 250 + 2 + 5
    assert d.total("received by filter") == 2407339 + 12


def test_a_process_is_signalled_only_once_it_catches_the_signal() -> None:
    code = (
        "import signal, sys, time\n"
        "if sys.argv[1] == 'catch': signal.signal(signal.SIGUSR1, lambda *a: None)\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    procs = {
        kind: subprocess.Popen([sys.executable, "-c", code, kind], stdout=subprocess.PIPE)
        for kind in ("catch", "default")
    }
    try:
        for p in procs.values():
            assert p.stdout is not None and p.stdout.readline() == b"ready\n"
        assert catches(procs["catch"].pid, signal.SIGUSR1)
        assert not catches(procs["default"].pid, signal.SIGUSR1)
        assert not catches(procs["catch"].pid, signal.SIGUSR2)
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
    deadline = time.monotonic() + 5
    while catches(procs["catch"].pid, signal.SIGUSR1) and time.monotonic() < deadline:
        time.sleep(0.05)  # reaped: /proc has no such pid any more
    assert not catches(procs["catch"].pid, signal.SIGUSR1)


def test_coincidence_compares_drop_samples_with_the_other_traffic_samples() -> None:
    quiet = {"tcpreplay_cpu_cores": 0.5, "supervisor_cpu_cores": 0.0, "kernel_drops": 0.0}
    rows = [dict(quiet) for _ in range(20)]
    # drops grow at sample 10 while the supervisor is busy; the counter is read late,
    # so the samples just before it count as dropping too
    for i in (8, 9, 10):
        rows[i]["supervisor_cpu_cores"] = 0.6
    for i in range(10, 20):
        rows[i]["kernel_drops"] = 500.0
    c = coincidence(rows)
    assert c["drop_samples"] == 3
    assert c["other_traffic_samples"] == 17
    busy = c["hand-off (supervisor >= 0.2 core)"]
    assert busy == {"when_dropping": 1.0, "otherwise": 0.0}
