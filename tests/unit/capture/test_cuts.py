"""Cuts on request: `rollcap rotate` is answered in capture.json once the cut
files are handed off (not before, not never), and a keep's window that ended
in the live file cuts it once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from rollcap.capture import cuts
from rollcap.capture.conditions import Condition
from rollcap.keep.request import KeepRequest
from rollcap.keep.store import LocalStore
from rollcap.spool.state import read_state
from tests.unit.capture.fakes import FakeTcpdump, supervisor, the_capture

S = 1_000_000_000


def answer(tmp_path: Path) -> Any:
    """capture.json's last_rotate, which `rollcap rotate` waits for."""
    st = read_state(tmp_path / "spool" / "capture" / "capture.json")
    assert st is not None
    return st["last_rotate"]


def test_a_rotate_with_nothing_listening_is_answered_at_once(tmp_path: Path) -> None:
    sup = supervisor(tmp_path)
    sup.cuts.rotate("rotate requested")
    assert answer(tmp_path)["result"] == "nothing to cut: starting"


def test_a_rotate_is_answered_once_its_files_are_handed_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sup = supervisor(tmp_path)
    the_capture(sup).proc = FakeTcpdump(3, time.monotonic())  # type: ignore[assignment]
    monkeypatch.setattr(cuts, "switch_all", lambda reqs: [True] * len(reqs))
    sup.session.queue.jobs["strip"] = None  # type: ignore[assignment]  # on the strip worker
    sup.cuts.rotate("rotate requested")
    assert sup.cuts.last is None  # `rollcap rotate` still waits
    sup.cuts.finish()
    assert sup.cuts.last is None
    sup.session.queue.jobs.clear()
    sup.n.handed_off_files += 1
    sup.cuts.finish()
    assert answer(tmp_path)["result"] == "handed off"
    sup.cuts.finish()  # answered once
    assert answer(tmp_path)["result"] == "handed off"


def test_a_rotate_whose_switch_failed_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sup = supervisor(tmp_path)
    ic = the_capture(sup)
    ic.proc = FakeTcpdump(3, time.monotonic())  # type: ignore[assignment]

    def failed(reqs: list[Any]) -> list[bool]:
        ic.conditions.set(Condition.SWITCH_FAILED, "tcpdump did not start")
        return [False] * len(reqs)

    monkeypatch.setattr(cuts, "switch_all", failed)
    sup.cuts.rotate("rotate requested")
    assert answer(tmp_path)["result"] == "failed: tcpdump did not start"


def test_a_window_ending_in_the_live_file_cuts_it_once(tmp_path: Path) -> None:
    sup = supervisor(tmp_path)
    root = sup.spool.root
    now = int(time.time())
    (root / "work" / f"g000007-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now - 30))}-any.pcap"
     ).write_bytes(b"")  # fmt: skip

    def keep(rid: str, since: int, until: int) -> KeepRequest:
        return KeepRequest(id=rid, reason="INC-42", since_ns=since * S, until_ns=until * S,
                           created_ns=now * S, source="cli")  # fmt: skip

    LocalStore(root, 10**9).submit(keep("k1", now - 60, now - 5))
    LocalStore(root, 10**9).submit(keep("k2", now - 60, now + 3600))  # not ended yet
    cut: list[str] = []
    sup.cuts.rotate = cut.append  # type: ignore[method-assign]
    sup.enforce_budget()
    sup.cuts.for_keeps()
    sup.cuts.for_keeps()
    assert cut == ["keep k1: its window ended"]
