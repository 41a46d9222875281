"""Fleet keeps through the bucket: request -> every acknowledgement, and the
idle cost of polling for requests.

One SeaweedFS. H hosts, each a real `rollcap offload` with its own spool
(F finished captures in ready/, stored before anything is measured) and
config, offload.keep_poll_seconds = --poll. Then --reps times: `rollcap keep
--fleet` (a subprocess, as an operator runs it) writes a request, and the
bench waits until H acknowledgements are listed (polling the bucket every
0.1 s). Expected: at most one poll interval plus filing and one PUT, so the
figure is shown as a ratio to --poll.

Idle cost, in the same run: two more daemons with empty spools, one polling
every --idle-poll seconds and one with polling off (keep_poll_seconds = 0,
the baseline), both left alone for --idle seconds. Their CPU seconds
(utime + stime, /proc) and the polls the poller counted (offload.json,
fleet_keep.polls: one LIST each; tests/unit/keep/test_fleet.py asserts one
LIST per poll) give the cost per poll, and so per hour at the default 60 s.

    python3 -m bench.keep_fleet [--hosts 3] [--poll 10] [--reps 3] [--idle 120]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    cpu_seconds,
    offload_config,
    rollcap_env,
    seaweedfs,
    start_rollcap,
    stop,
    workdir,
    write_result,
)
from bench.fleet_daemons import fill_spool, uploaded
from rollcap.keep import fleet
from rollcap.spool import Spool
from tests.support.seaweedfs import SeaweedFS

PREFIX = "keepd"
FILES = 3


def _config(base: Path, host: str, w: SeaweedFS, poll: int) -> tuple[Path, Spool]:
    spool = Spool.at(base / host / "spool")
    for d in spool.all_dirs():
        d.mkdir(parents=True, exist_ok=True)
    cfg = offload_config(base / host / "rollcap.toml", spool.root, w, PREFIX,
                         capture={"hostname": host, "rotate_seconds": 600},
                         offload={"keep_poll_seconds": poll})  # fmt: skip
    with cfg.open("a") as f:
        f.write('[metrics]\ntextfile_directory = ""\n')
    return cfg, spool


def _polls(spool: Spool) -> int:
    try:
        data = json.loads((spool.state / "offload.json").read_text())
    except (FileNotFoundError, ValueError):
        return 0
    return int(data.get("fleet_keep", {}).get("polls", 0))


def _acks(w: SeaweedFS, rid: str) -> int:
    r = w.client().list_objects_v2(Bucket=w.bucket, Prefix=fleet.acks_prefix(PREFIX, rid))
    return len(r.get("Contents", []))


def request_to_acks(w: SeaweedFS, base: Path, hosts: int, poll: int, reps: int,
                    env: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    cfgs, spools, procs = [], [], []
    for i in range(hosts):
        host = f"khost{i:02d}"
        cfg, spool = _config(base, host, w, poll)
        fill_spool(spool, host, i, FILES)
        cfgs.append(cfg)
        spools.append(spool)
        procs.append(start_rollcap("offload", cfg, base / host / "offload.log", env))
    try:
        deadline = time.monotonic() + 120
        while sum(uploaded(s) for s in spools) < hosts * FILES:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("the daemons did not store their files")
            time.sleep(0.2)
        runs = []
        for _ in range(reps):
            t0 = time.monotonic()
            r = subprocess.run(
                [sys.executable, "-m", "rollcap", "keep", "--fleet", "--since",
                 "2026-11-26T12:00:00Z", "--until", "2026-11-26T12:20:00Z", "--reason", "bench",
                 "--config", str(cfgs[0])],
                cwd=REPO, env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            written = time.monotonic()
            rid = r.stdout.split()[-1]
            while _acks(w, rid) < hosts:
                if time.monotonic() - t0 > poll * 3 + 60:
                    raise RuntimeError(f"not every host answered {rid}")
                time.sleep(0.1)
            runs.append({"cli_seconds": round(written - t0, 2),
                         "request_to_all_acks_seconds": round(time.monotonic() - written, 2)})
            print(f"request {rid}: written in {written - t0:.2f} s, {hosts} acks after "
                  f"{time.monotonic() - written:.2f} s (poll {poll} s)")  # fmt: skip
    finally:
        for p in procs:
            stop(p)
    worst = max(x["request_to_all_acks_seconds"] for x in runs)
    return {"hosts": hosts, "poll_seconds": poll, "runs": runs,
            "worst_seconds": worst, "worst_over_poll": round(worst / poll, 2)}  # fmt: skip


def idle_cost(w: SeaweedFS, base: Path, poll: int, seconds: float,
              env: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    runs: dict[str, Any] = {}
    procs: dict[str, tuple[subprocess.Popen[bytes], Spool]] = {}
    for name, p in (("polling", poll), ("baseline", 0)):
        cfg, spool = _config(base, f"idle-{name}", w, p)
        procs[name] = (start_rollcap("offload", cfg, base / f"idle-{name}.log", env), spool)
    state = procs["polling"][1].state / "offload.json"

    def published() -> tuple[int, dict[str, float]]:
        """At the next write of the state file (every 30 s while idle): the
        polls it counts and, at once, both daemons' CPU seconds."""
        before = state.stat().st_mtime_ns if state.exists() else 0
        while not state.exists() or state.stat().st_mtime_ns == before:
            time.sleep(0.05)
        return _polls(procs["polling"][1]), {n: cpu_seconds(pr.pid)
                                             for n, (pr, _s) in procs.items()}  # fmt: skip

    try:
        time.sleep(10)  # both past their start (imports, destination check)
        polls0, cpu0 = published()
        t0 = time.monotonic()
        time.sleep(max(0.0, seconds - 31))
        polls1, cpu1 = published()
        elapsed = time.monotonic() - t0
    finally:
        for pr, _s in procs.values():
            stop(pr)
    polls = polls1 - polls0
    for n in procs:
        runs[n] = {"cpu_seconds": round(cpu1[n] - cpu0[n], 3)}
    extra = runs["polling"]["cpu_seconds"] - runs["baseline"]["cpu_seconds"]
    per_poll = extra / polls if polls else None
    return {
        "poll_seconds": poll, "seconds": round(elapsed, 1), "polls": polls, **runs,
        "cpu_ms_per_poll": round(per_poll * 1000, 2) if per_poll is not None else None,
        # at the default 60 s: 60 LISTs an hour
        "cpu_seconds_per_hour_at_60s": round(per_poll * 60, 3) if per_poll is not None else None,
        "lists_per_hour_at_60s": 60,
        "lists_per_day_at_60s": 1440,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--poll", type=int, default=10, help="keep_poll_seconds of the hosts")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--idle", type=float, default=120, help="seconds of idle measurement")
    ap.add_argument("--idle-poll", type=int, default=1, help="keep_poll_seconds while idle")
    a = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    res: dict[str, Any] = {"load_before": os.getloadavg()}
    with seaweedfs() as w, workdir("keepfleet") as base:
        env = rollcap_env(w.env())
        env.pop("CREDENTIALS_DIRECTORY", None)
        res["request_to_acks"] = request_to_acks(w, base, a.hosts, a.poll, a.reps, env)
        res["idle"] = idle_cost(w, base, a.idle_poll, a.idle, env)
    res["load_after"] = os.getloadavg()
    i = res["idle"]
    print(f"idle {i['seconds']} s: {i['polls']} polls; CPU polling {i['polling']['cpu_seconds']} s,"
          f" baseline {i['baseline']['cpu_seconds']} s: {i['cpu_ms_per_poll']} ms per poll, "
          f"{i['cpu_seconds_per_hour_at_60s']} CPU s/h at 60 s")  # fmt: skip
    write_result("keep_fleet", res)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
