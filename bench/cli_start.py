"""Start-up cost of the CLI: `rollcap --version`, `rollcap keep`, `rollcap status`.

The trigger-to-durable-pin goal of a keep (1 s) is mostly Python's start and
imports. Each command runs ROUNDS times as a new process, alternating between
this tree and a baseline tree (BASE, exported with `git archive` into a temp
directory; same interpreter, same config, same spool), and the median wall
time of each is reported with their ratio (this / baseline): the machine is
shared, so only the ratio in one run means anything.

The keep is the same window every time (an absolute --since/--until): the
first run pins it, the rest find it pinned, so the spool does not fill up.

    python3 -m bench.cli_start [--base 9b44c5f] [--rounds 15] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO, write_result

BASE = "9b44c5f"  # main before the lazy imports (the ringrest branch)


def _export(rev: str, dest: Path) -> None:
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "rollcap"],
                             check=True, capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def _time(tree: Path, argv: list[str], cwd: Path) -> float:
    # cwd is neither tree: `python -m` puts the cwd first on sys.path
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("NOTIFY_SOCKET", None)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "rollcap", *argv], cwd=cwd, env=env,
                       capture_output=True, text=True)  # fmt: skip
    seconds = time.perf_counter() - t0
    if r.returncode not in (0, 3):  # status: 3 = not running (no daemons here)
        raise SystemExit(f"{tree}: rollcap {' '.join(argv)}: exit {r.returncode}: {r.stderr}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--base", default=BASE, help="the baseline commit (default %(default)s)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="5 rounds")
    a = ap.parse_args(argv)
    rounds = 5 if a.quick else a.rounds
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="rollcap-bench-cli-") as tmp:
        work = Path(tmp)
        base = work / "base"
        base.mkdir()
        _export(a.base, base)
        config = work / "rollcap.toml"
        config.write_text(
            f'[capture]\ninterface = "lo"\n[spool]\ndirectory = "{work / "spool"}"\n'
            f'[offload]\ndestination = "file://{work / "archive"}"\nmode = "on-demand"\n'
        )  # fmt: skip
        (work / "spool").mkdir()  # as capture leaves it
        t = int(time.time()) - 600
        keep = ["keep", "--config", str(config), "--since", f"@{t}", "--until", f"@{t + 60}"]
        commands = {
            "rollcap --version": ["--version"],
            "rollcap keep": [*keep, "--reason", "bench"],
            "rollcap status": ["status", "--config", str(config)],
        }
        results = {}
        for name, args in commands.items():
            times: dict[str, list[float]] = {"base": [], "this": []}
            _time(REPO, args, work)  # warm the page cache (and file the keep) once
            for _ in range(rounds):
                for which, tree in (("base", base), ("this", REPO)):
                    times[which].append(_time(tree, args, work))
            b, n = statistics.median(times["base"]), statistics.median(times["this"])
            results[name] = {"base_median_s": round(b, 4), "this_median_s": round(n, 4),
                             "ratio": round(n / b, 3)}  # fmt: skip
            print(f"{name:<20} baseline {b * 1000:6.0f} ms   this {n * 1000:6.0f} ms   "
                  f"ratio {n / b:.2f}", flush=True)  # fmt: skip
    load_end = os.getloadavg()[0]
    print(f"({rounds} rounds each, alternating; load average {load:.1f} at start, "
          f"{load_end:.1f} at the end; baseline {a.base})")  # fmt: skip
    name = "cli_start" if a.base == BASE else f"cli_start-{a.base}"
    write_result(name, {"base": a.base, "rounds": rounds, "commands": results,
                               "loadavg_at_end": load_end})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
