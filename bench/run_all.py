"""Run every benchmark (what `make bench` does), then render the README table.

Each benchmark runs as its own process, exactly as its standalone command, so
one failing does not stop the others; the exit code is non-zero if any failed
(benchmarks never assert on numbers, only on having produced them).

    python3 -m bench.run_all [--quick] [--only drain,idle]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from bench.common import REPO, rollcap_env
from bench.report import write

ALL = ("drain", "live", "live-topspeed", "idle", "scale", "fleet", "fetch")
# name -> module and its arguments (all take --quick)
COMMANDS = {"live-topspeed": ["bench.live", "--top-speed"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes and shorter windows")
    ap.add_argument("--only", default=",".join(ALL), help="comma-separated subset of " + str(ALL))
    a = ap.parse_args(argv)
    failed = []
    t0 = time.monotonic()
    for name in a.only.split(","):
        if name not in ALL:
            sys.exit(f"unknown benchmark {name!r}; choose from {', '.join(ALL)}")
        print(f"=== bench.{name}", flush=True)
        t = time.monotonic()
        module = COMMANDS.get(name, [f"bench.{name}"])
        cmd = [sys.executable, "-m", *module, *(["--quick"] if a.quick else [])]
        rc = subprocess.run(cmd, cwd=REPO, env=rollcap_env()).returncode
        print(f"=== bench.{name}: exit {rc} after {time.monotonic() - t:.0f} s", flush=True)
        if rc != 0:
            failed.append(name)
    out = write()
    print(f"wrote {out.relative_to(REPO)}; all benchmarks took {time.monotonic() - t0:.0f} s")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
