"""Spool budget under repetition and load: the fault suite's two budget cases
(tests/faults/budget_cases.py: 10 MB budget, 1 MB files, 15,000 packets/s
replayed on a veth pair, real `rollcap capture` and `rollcap offload`
processes against a local SeaweedFS) run N times in a row, first plain, then
with a CPU hog beside them (HOG_LOOPS busy loops at nice 0, as many as a
2-core machine has cores).

Reported per case and load: the spool's peak as the case's sampler sees it
(work/ ready/ quarantine/, bursts in work/ aside), how many runs went over
the budget plus one file (an overshoot: the fault test's failure), and runs
that failed otherwise (lost packets, an assertion of the case). The number to
expect is 0 overshoots. Not part of CI: it takes about 30 s per run.

    python3 -m bench.budget [--runs 20] [--cases pause-capture,drop-oldest]
                            [--loads plain,hog]
(as root: the cases create veth pairs.)
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.common import MB, seaweedfs, workdir, write_result
from tests.faults import budget_cases
from tests.faults.budget_cases import BudgetRun
from tests.faults.rig import Rig
from tests.support.net import Veth, merged_pcaps
from tests.support.seaweedfs import SeaweedFS

CASES: dict[str, Callable[[Rig], BudgetRun]] = {
    "pause-capture": budget_cases.pause_capture,
    "drop-oldest": budget_cases.drop_oldest,
}
HOG_LOOPS = 2


@contextlib.contextmanager
def cpu_hog(on: bool) -> Iterator[None]:
    """HOG_LOOPS busy loops at nice 0 (our own children, stopped by pid)."""
    procs = [
        subprocess.Popen(["nice", "-n", "0", "sh", "-c", "while :; do :; done"])
        for _ in range(HOG_LOOPS if on else 0)
    ]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def one_run(s3: SeaweedFS, pcap: Path, work: Path, case: str) -> dict[str, Any]:
    veth = Veth.create()
    rig = Rig(s3=s3, veth=veth, pcap=pcap, workdir=work)
    t = time.monotonic()
    try:
        r = CASES[case](rig)
    except AssertionError as e:
        # the case's message carries the daemon's log tail: what went wrong
        return {"ok": False, "error": str(e)[-4000:]}
    finally:
        rig.close()
        veth.delete()
    s, acc = r.sampler, r.acc
    problems = list(acc.problems)
    if acc.lost or acc.duplicated:
        problems.append(f"{acc.lost} packets lost, {acc.duplicated} duplicated")
    if case == "pause-capture" and r.dropped:
        problems.append(f"{len(r.dropped)} files dropped")
    if case == "drop-oldest" and r.vanished != r.dropped:
        problems.append(f"vanished but not logged: {sorted(r.vanished - r.dropped)}")
    return {
        "ok": r.overshoot == 0 and not problems,
        "peak_bytes": s.max_bytes,
        "peak_raw_bytes": s.max_raw,  # bursts in work/ included
        "limit_bytes": r.limit,
        "overshoot_bytes": r.overshoot,
        "at_peak": s.at_max,
        "tmp_peak_bytes": s.max_tmp,
        "fence_stops": r.log.count("stopped at the spool budget's fence"),
        "problems": problems[:5],
        "seconds": round(time.monotonic() - t, 1),
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    peaks = [r["peak_bytes"] / MB for r in runs if "peak_bytes" in r]
    return {
        "runs": len(runs),
        "overshoots": sum(1 for r in runs if r.get("overshoot_bytes", 0) > 0),
        "failed_otherwise": sum(1 for r in runs if not r["ok"] and not r.get("overshoot_bytes")),
        "peak_mb_min": round(min(peaks), 2) if peaks else None,
        "peak_mb_median": round(statistics.median(peaks), 2) if peaks else None,
        "peak_mb_max": round(max(peaks), 2) if peaks else None,
        "fence_stops": sum(r.get("fence_stops", 0) for r in runs),
    }


def main(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python3 -m bench.budget", description=__doc__)
    ap.add_argument("--runs", type=int, default=20, help="runs of each case under each load")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--loads", default="plain,hog", help="plain, hog, or both")
    a = ap.parse_args(argv)
    cases = a.cases.split(",")
    loads = a.loads.split(",")
    res: dict[str, Any] = {"runs_each": a.runs, "budget_mb": budget_cases.BUDGET_MB,
                           "results": {}}  # fmt: skip
    with seaweedfs("rollcap-budget") as s3, workdir("budget") as wd:
        (wd / "pcaps").mkdir()
        pcap = merged_pcaps(wd / "pcaps")
        for load in loads:
            with cpu_hog(load == "hog"):
                for case in cases:
                    runs = []
                    for i in range(a.runs):
                        work = wd / f"{load}-{case}-{i}"
                        work.mkdir(parents=True)
                        r = one_run(s3, pcap, work, case)
                        runs.append(r)
                        peak = f"{r['peak_bytes'] / MB:.2f} MB" if "peak_bytes" in r else "-"
                        why = str(r.get("error") or r.get("problems") or r)
                        print(f"{case} {load} #{i + 1}: peak {peak} "
                              f"{'ok' if r['ok'] else 'FAIL ' + why}", flush=True)  # fmt: skip
                    res["results"][f"{case}/{load}"] = {"summary": summary(runs), "runs": runs}
    for key, v in res["results"].items():
        s = v["summary"]
        print(f"{key}: {s['runs']} runs, {s['overshoots']} overshoots, "
              f"{s['failed_otherwise']} failed otherwise; peak {s['peak_mb_min']}-"
              f"{s['peak_mb_max']} MB (median {s['peak_mb_median']}), "
              f"{s['fence_stops']} fence stops")  # fmt: skip
    write_result("budget", res)
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
