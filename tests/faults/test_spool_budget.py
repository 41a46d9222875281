"""Case 4: offload stopped, small spool budget (the cases: tests/faults/budget_cases.py).

work/ ready/ quarantine/ must never exceed the budget by more than one file;
tmp/ never more than offload.concurrency files. drop-oldest: every file that
vanished from ready/ (no offload runs) is named in a "dropped" log line.
pause-capture: tcpdump stops before the budget is reached (at the budget's
fence at the latest, rollcap.capture.fences) and starts again once the offload
made room. bench/budget.py runs both many times, with a CPU hog beside them.
"""

from __future__ import annotations

import pytest

from tests.faults import budget_cases
from tests.faults.budget_cases import BUDGET_MB
from tests.faults.rig import Rig


@pytest.mark.case("4a. spool budget, offload stopped, drop-oldest")
@pytest.mark.hard_timeout(150)
def test_budget_drop_oldest(rig: Rig, reliability) -> None:  # type: ignore[no-untyped-def]
    r = budget_cases.drop_oldest(rig)
    s, acc = r.sampler, r.acc
    reliability.record(
        runs=1, **acc.row(),
        notes=f"{len(r.dropped)} files dropped and logged; {s.peaks()} for a {BUDGET_MB} MB "
        f"budget ({s.samples} samples); packets out = kept packets; {acc.files()}",
    )  # fmt: skip
    assert s.max_bytes <= r.limit, (
        f"spool reached {s.max_bytes} bytes ({s.at_max}), limit {r.limit}"
    )
    assert r.dropped, "nothing was dropped: the case did not fill the budget"
    assert r.vanished == r.dropped, f"vanished but not logged: {sorted(r.vanished - r.dropped)}"
    assert not acc.problems, "\n".join(acc.problems)
    assert acc.lost == 0 and acc.duplicated == 0


@pytest.mark.case("4b. spool budget, offload stopped, pause-capture")
@pytest.mark.hard_timeout(150)
def test_budget_pause_capture(rig: Rig, reliability) -> None:  # type: ignore[no-untyped-def]
    r = budget_cases.pause_capture(rig)
    s, acc = r.sampler, r.acc
    reliability.record(
        runs=1, **acc.row(),
        notes=f"paused and resumed; 1 loop (5374) sent while paused is not captured by design; "
        f"{s.peaks()} for {BUDGET_MB} MB; {acc.files()}",
    )  # fmt: skip
    assert s.max_bytes <= r.limit, (
        f"spool reached {s.max_bytes} bytes ({s.at_max}), limit {r.limit}"
    )
    assert s.max_tmp <= 4 * s.biggest_file, f"tmp/ reached {s.max_tmp} bytes: over concurrency 4"
    assert not r.dropped, "pause-capture must not drop files"
    assert not acc.problems, "\n".join(acc.problems)
    assert acc.lost == 0 and acc.duplicated == 0
