"""The two budget cases of tests/faults/test_spool_budget.py as plain functions:
the fault tests assert on what they return, bench/budget.py runs them many
times in a row (with a CPU hog beside them) and counts overshoots.

A sampler measures the spool every 100 ms the way an operator's `du` would:
work/ ready/ quarantine/ must never exceed the budget by more than one file
(bursts tcpdump writes after a stall, before capture could look, aside); the
offload's compressed copies in tmp/ come on top while it empties ready/, never
more than offload.concurrency files (4, the default).
"""

from __future__ import annotations

import contextlib
import stat
import threading
import time
from dataclasses import dataclass

from rollcap.spool.workname import WorkName
from tests.faults.checks import Account, account, dropped_names
from tests.faults.proc import wait_for
from tests.faults.rig import Rig

BUDGET_MB = 10
# Aligned (the default): at 15,000 packets/s with 1 MB files an aligned switch's
# overlap spans several files of each generation, and its duplicates in work/
# count against the budget until the hand-off strips them.
SMALL_FILES = {"rotate_megabytes": 1}


def _work_files(rig: Rig) -> list[str]:
    """tcpdump's files in work/ (not a budget's fence: a directory)."""
    return [p.name for p in (rig.spool / "work").iterdir()
            if WorkName.parse(p.name) and p.is_file()]  # fmt: skip


class Sampler:
    def __init__(self, rig: Rig) -> None:
        self.rig, self.samples, self.biggest_file = rig, 0, 0
        self.max_bytes = 0  # what the budget covers: work/ ready/ quarantine/
        self.max_raw = 0  # the same, bursts included
        self.max_burst = 0  # most finished files waiting in work/ at once
        self.max_tmp = 0  # the offload's compressed copies, while it empties ready/
        self.at_max: dict[str, int] = {}  # per directory, at the peak: says who overshot
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _work_sizes(self) -> list[int]:
        """Sizes of the files in work/, in the order tcpdump wrote them."""
        work = self.rig.spool / "work"
        found = []
        for p in work.iterdir():
            w = WorkName.parse(p.name)
            with contextlib.suppress(FileNotFoundError):
                st = p.lstat()
                if w is not None and stat.S_ISREG(st.st_mode):  # not a budget's fence
                    found.append((w, st.st_size))
        return [size for _w, size in sorted(found, key=lambda t: t[0])]

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self.rig.spool_areas()
            tmp = now.pop("tmp")
            self.max_tmp = max(self.max_tmp, tmp)
            sizes = self._work_sizes()
            finished = sorted(sizes[:-1])  # the newest one is being written
            # After a scheduling stall tcpdump empties its kernel buffer (up to
            # capture.buffer_kib) in one burst, faster than any check: finished
            # files beyond one were never seen by capture yet. The bound is on
            # what capture decides, so those are not counted against it.
            burst = sum(finished[:-1])
            self.max_burst = max(self.max_burst, len(finished))
            raw = sum(now.values())
            self.max_raw = max(self.max_raw, raw)
            if raw - burst > self.max_bytes:
                self.max_bytes, self.at_max = raw - burst, {**now, "burst": burst}
            self.biggest_file = max([self.biggest_file, *sizes])
            for p in (self.rig.spool / "ready").glob("*"):
                with contextlib.suppress(FileNotFoundError):
                    self.biggest_file = max(self.biggest_file, p.lstat().st_size)
            self.samples += 1
            time.sleep(0.1)

    def peaks(self) -> str:
        return (
            f"spool peak {self.max_bytes / 1e6:.2f} MB ({self.max_raw / 1e6:.2f} MB with "
            f"bursts of up to {self.max_burst} finished files in work/), tmp/ peak "
            f"{self.max_tmp / 1e6:.2f} MB"
        )

    def __enter__(self) -> Sampler:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join(5)


@dataclass
class BudgetRun:
    sampler: Sampler
    limit: int  # the budget plus one file
    log: str  # capture's
    acc: Account
    dropped: set[str]  # named in a "dropped" log line
    vanished: set[str]  # gone from ready/ (drop-oldest: no offload ran meanwhile)

    @property
    def overshoot(self) -> int:
        return max(0, self.sampler.max_bytes - self.limit)

    def peak(self) -> str:
        s = self.sampler
        return f"spool reached {s.max_bytes} bytes ({s.at_max}), limit {self.limit}"


def drop_oldest(rig: Rig) -> BudgetRun:
    rig.configure(capture=SMALL_FILES,
                  spool={"max_megabytes": BUDGET_MB, "on_full": "drop-oldest"})  # fmt: skip
    cap = rig.daemon("capture")
    cap.start()
    rig.wait_capturing(cap)
    rig.watch()
    with Sampler(rig) as s:
        rig.replay(loops=24, pps=15000)  # ~31 MB into a 10 MB budget
        time.sleep(1.5)
        assert cap.stop(timeout=30) == 0, cap.tail()
    log = cap.text()
    w = rig.watcher
    assert w is not None
    vanished = {x.name for x in w.history if x.gone is not None}
    # the offload then drains what was kept: nothing kept may be lost on the way
    off = rig.daemon("offload")
    off.start()
    rig.wait_drained(90)
    assert off.stop() == 0, off.tail()
    acc = account(rig, capture_log=log, offload_log=off.text())
    limit = BUDGET_MB * 1_000_000 + s.biggest_file
    return BudgetRun(s, limit, log, acc, dropped_names(log), vanished)


def pause_capture(rig: Rig) -> BudgetRun:
    rig.configure(capture=SMALL_FILES,
                  spool={"max_megabytes": BUDGET_MB, "on_full": "pause-capture"})  # fmt: skip
    cap = rig.daemon("capture")
    cap.start()
    rig.wait_capturing(cap)
    rig.watch()
    with Sampler(rig) as s:
        rig.replay(loops=16, pps=15000)  # ~21 MB: more than the budget
        wait_for(lambda: not rig.tcpdumps(), 30, what="capture to pause (tcpdump stopped)")
        wait_for(lambda: not _work_files(rig), 30, what="the last file's hand-off")
        paused_files = set(rig.ready_files())
        rig.replay(loops=1, pps=15000)  # sent while paused: not captured, by design
        time.sleep(2)
        assert cap.running(), "capture exited instead of pausing:\n" + cap.tail()
        assert set(rig.ready_files()) == paused_files, "files changed while paused"
        off = rig.daemon("offload")
        off.start()  # makes room
        wait_for(rig.tcpdumps, 60, what="capture to resume after the offload made room")
        rig.wait_listening(cap)
        rig.replay(loops=2, pps=15000)
        time.sleep(1.5)
        assert cap.stop(timeout=30) == 0, cap.tail()
    rig.wait_drained(90)
    assert off.stop() == 0, off.tail()
    log = cap.text()
    acc = account(rig, capture_log=log, offload_log=off.text())
    limit = BUDGET_MB * 1_000_000 + s.biggest_file
    return BudgetRun(s, limit, log, acc, dropped_names(log), set())
