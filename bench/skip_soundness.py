"""The full soundness run of the flow index's skipping (the CI test,
tests/integration/test_skip_soundness.py, runs one seed and ~300 filters).

For each seed: synthetic captures (IPv4, IPv6 with extension headers and
fragments, VLAN/QinQ, ICMP, SCTP, GRE, ARP, Linux cooked, raw IP) and the
real ones of tests/data/pcaps go through a real `rollcap offload` process
with `flow_index = true` into SeaweedFS; then every generated filter is
checked against every stored object: the index's verdict against tcpdump's
matches (tests/support/soundness.py). Goal: 0 missing.

    python3 -m bench.skip_soundness [--filters 3000] [--seeds 3] [--synthetic 64]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from bench.common import (
    machine,
    offload_config,
    rollcap_env,
    seaweedfs,
    start_rollcap,
    stop,
    workdir,
    write_result,
)
from tests.support import flowpcaps, soundness


def one_seed(seed: int, n_filters: int, synthetic: int) -> dict[str, Any]:
    with seaweedfs(f"sound-{seed}") as w, workdir("soundness") as d:
        spool = d / "spool"
        for sub in ("work", "ready", "quarantine", "tmp", "state"):
            (spool / sub).mkdir(parents=True)
        n = soundness.make_ready(spool / "ready", d, seed, synthetic)
        cfg = offload_config(d / "rollcap.toml", spool, w, "caps",
                             capture={"hostname": soundness.HOST},
                             offload={"flow_index": True})  # fmt: skip
        proc = start_rollcap("offload", cfg, d / "offload.log", rollcap_env(w.env()))
        try:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                try:
                    st = json.loads((spool / "state" / "offload.json").read_text())
                except (OSError, ValueError):
                    st = {}
                if st.get("uploaded_files") == n:
                    break
                time.sleep(0.2)
            else:
                raise SystemExit(f"offload did not store {n} captures: {d / 'offload.log'}")
        finally:
            stop(proc)
        stored = soundness.stored(w.client(), w.bucket, "caps")
        pool4, pool6 = soundness.address_pools(stored)
        exprs = flowpcaps.filters(seed, n_filters, pool4, pool6)
        out = soundness.check(stored, exprs, d)
    res = {
        "seed": seed, "captures": n, "filters": out.filters, "decidable": out.decidable,
        "refused_by_tcpdump": out.refused, "pairs": out.pairs, "skipped": out.skipped,
        "matched_packets": out.matched_packets, "missing": out.missing[:50],
        "why": dict(out.why), "seconds": round(out.seconds, 1),
    }  # fmt: skip
    print(json.dumps({k: v for k, v in res.items() if k != "missing"}),
          f"missing: {len(out.missing)}")  # fmt: skip
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--filters", type=int, default=3000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--synthetic", type=int, default=64)
    args = ap.parse_args(argv)
    before = machine()
    runs = [one_seed(100 + s, args.filters, args.synthetic) for s in range(args.seeds)]
    missing = sum(len(r["missing"]) for r in runs)
    write_result("skip_soundness", {"before": before, "runs": runs, "missing": missing})
    pairs, skipped = sum(r["pairs"] for r in runs), sum(r["skipped"] for r in runs)
    print(
        f"soundness: {pairs} (filter, object) pairs, {skipped} skipped by the index, "
        f"{missing} missing"
    )
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
