"""`rollcap fetch` against the manual way, on the same objects in one run.

A real `rollcap offload` stores N files of bench.datagen's synthetic mix into
SeaweedFS (the objects are what the daemon stores: zstd, its metadata and
manifest entries). Then, alternating, round after round:

- rollcap whole:    `python -m rollcap fetch --since .. --until .. -o FILE`
- rollcap filtered: the same with `--filter FILTER`
- manual whole:     download every capture object with 4 threads (boto3,
                    in its own Python process, as `aws s3 cp` would be),
                    `zstd -d` them, `mergecap -F pcap -w FILE`
- manual filtered:  the same, then `mergecap -F pcap -w - | tcpdump -r - -w FILE FILTER`

"filtered" is the issue's filter (no packet of the mix matches it: all the
work is reading and filtering); "broad" keeps most of the bytes (tcp port 443).

Each is wall time from start to a complete output file, interpreter start-up
included. Rates are MB/s of pcap out (the whole window's size for both whole
and filtered, so the two are comparable); ratio = manual seconds / rollcap
seconds (above 1: rollcap is faster). The outputs must hold the same packets:
packet counts (capinfos) and the SHA-256 of the records (everything after the
24-byte file header) are compared.

    python3 -m bench.fetch [--count 9 --size-mb 45] [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import (
    MB,
    REPO,
    list_keys,
    offload_config,
    rollcap_env,
    seaweedfs,
    start_rollcap,
    stop,
    workdir,
    write_result,
)
from bench.datagen import HOST, dataset
from rollcap.spool import Spool

PREFIX = "fetchbench"
FILTER = "host 203.0.113.7"  # the issue's: matches no packet of the mix
BROAD = "tcp port 443"  # the TLS-like share of the mix: most of the bytes
SINCE, UNTIL = "2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z"


def store(w: Any, base: Path, files: list[Path], timeout: float = 600) -> Path:
    """The real offload daemon stores the files; returns its config."""
    spool = Spool.at(base / "spool")
    for d in spool.all_dirs():
        d.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copyfile(f, spool.tmp / f.name)
        os.rename(spool.tmp / f.name, spool.ready / f.name)
    cfg = offload_config(base / "rollcap.toml", spool.root, w, PREFIX,
                         capture={"hostname": HOST})  # fmt: skip
    with cfg.open("a") as fh:  # not the machine's node_exporter directory
        fh.write('[metrics]\ntextfile_directory = ""\n')
    env = rollcap_env(w.env())
    env.pop("CREDENTIALS_DIRECTORY", None)
    proc = start_rollcap("offload", cfg, base / "offload.log", env)
    t = time.monotonic()
    try:
        while any(spool.ready.iterdir()):
            if proc.poll() is not None or time.monotonic() - t > timeout:
                raise RuntimeError((base / "offload.log").read_text()[-2000:])
            time.sleep(0.2)
    finally:
        stop(proc)
    print(f"offload stored {len(files)} files in {time.monotonic() - t:.1f} s")
    return cfg


def download_main(argv: list[str]) -> int:
    """The manual way's download: every capture object, 4 threads (boto3)."""
    import boto3

    endpoint, bucket, prefix, dest = argv
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    keys = list_keys(client, bucket, prefix + "/")

    def one(key: str) -> None:
        client.download_file(bucket, key, str(Path(dest) / key.replace("/", "_")))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, keys))
    return 0


def manual(w: Any, env: dict[str, str], d: Path, out: Path, bpf: str) -> None:
    d.mkdir()
    subprocess.run([sys.executable, "-m", "bench.fetch", "--download", w.endpoint, w.bucket,
                    PREFIX, str(d)], cwd=REPO, env=env, check=True)  # fmt: skip
    objs = sorted(str(p) for p in d.iterdir())
    subprocess.run(["zstd", "-d", "-q", "--rm", "--", *objs], check=True)
    pcaps = sorted(str(p) for p in d.iterdir())
    if not bpf:
        subprocess.run(["mergecap", "-F", "pcap", "-w", str(out), "--", *pcaps], check=True)
    else:
        merge = subprocess.Popen(["mergecap", "-F", "pcap", "-w", "-", "--", *pcaps],
                                 stdout=subprocess.PIPE)  # fmt: skip
        subprocess.run(["tcpdump", "-q", "-r", "-", "-w", str(out), "--", bpf],
                       stdin=merge.stdout, stderr=subprocess.DEVNULL, check=True)  # fmt: skip
        assert merge.stdout is not None
        merge.stdout.close()
        if merge.wait() != 0:
            raise RuntimeError("mergecap failed")
    shutil.rmtree(d)


def rollcap_fetch(cfg: Path, env: dict[str, str], out: Path, bpf: str,
                  tree: Path = REPO) -> None:  # fmt: skip
    """tree: the source tree whose rollcap runs (--before: another version's)."""
    env = {**env, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "rollcap", "fetch", "--config", str(cfg), "--since", SINCE,
           "--until", UNTIL, "-o", str(out), "--jobs", "4"]  # fmt: skip
    if bpf:
        cmd += ["--filter", bpf]
    p = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"rollcap fetch exited {p.returncode}: {p.stderr[-2000:]}")


def digest(path: Path) -> dict[str, Any]:
    """Packets (capinfos) and the SHA-256 of the records, without the file header."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        f.seek(24)
        while chunk := f.read(1 << 20):
            h.update(chunk)
    p = subprocess.run(["capinfos", "-c", "-M", "-T", "-r", str(path)], capture_output=True,
                       text=True, check=True)  # fmt: skip
    packets = int(p.stdout.split("\t")[-1])
    return {"packets": packets, "records_sha256": h.hexdigest(), "bytes": path.stat().st_size}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--download"]:
        return download_main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--count", type=int, default=9)
    ap.add_argument("--size-mb", type=int, default=45)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--filter", default=FILTER)
    ap.add_argument("--broad", default=BROAD, help="a filter that keeps most packets")
    ap.add_argument("--before", type=Path, metavar="TREE",
                    help="also time the rollcap of this source tree (e.g. `git archive main`)")
    ap.add_argument("--quick", action="store_true", help="3 files of 20 MB, 2 rounds")
    a = ap.parse_args(argv)
    if a.quick:
        a.count, a.size_mb, a.rounds = 3, 20, 2
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    files = dataset(a.count, a.size_mb)
    pcap_mb = sum(f.stat().st_size for f in files) / MB
    parts = {"whole": "", "filtered": a.filter, "broad": a.broad}
    kinds = ("rollcap", "manual", *(("before",) if a.before else ()))
    ways = {f"{kind}_{part}": (kind, bpf) for part, bpf in parts.items()
            for kind in kinds}  # fmt: skip
    runs: dict[str, list[float]] = {k: [] for k in ways}
    outs: dict[str, dict[str, Any]] = {}
    res: dict[str, Any] = {"objects": a.count, "file_mb": a.size_mb, "pcap_mb": round(pcap_mb, 1),
                           "filter": a.filter, "broad": a.broad, "rounds": a.rounds,
                           "before": str(a.before) if a.before else None,
                           "loadavg_at_start": os.getloadavg()[0]}  # fmt: skip
    with seaweedfs() as w, workdir("fetch") as base:
        cfg = store(w, base, files)
        env = rollcap_env(w.env())
        env.pop("CREDENTIALS_DIRECTORY", None)
        stored = list_keys(w.client(), w.bucket, PREFIX + "/")
        res["stored_mb"] = round(sum(stored.values()) / MB, 1)
        for r in range(a.rounds):
            order = list(ways) if r % 2 == 0 else list(reversed(ways))
            for name in order:
                kind, bpf = ways[name]
                out = base / f"{name}.pcap"
                t = time.monotonic()
                if kind == "rollcap":
                    rollcap_fetch(cfg, env, out, bpf)
                elif kind == "before":
                    rollcap_fetch(cfg, env, out, bpf, tree=a.before.resolve())
                else:
                    manual(w, env, base / f"dl-{name}", out, bpf)
                runs[name].append(round(time.monotonic() - t, 3))
                if r == 0:
                    outs[name] = digest(out)
                out.unlink()
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in runs.items()))
    for name in ways:
        best = min(runs[name])
        res[name] = {"seconds": best, "all_seconds": runs[name],
                     "mb_s": round(pcap_mb / best, 1), **outs[name]}  # fmt: skip
    res["loadavg_at_end"] = os.getloadavg()[0]
    for part in parts:
        ro, ma = res[f"rollcap_{part}"], res[f"manual_{part}"]
        res[f"ratio_{part}"] = round(ma["seconds"] / ro["seconds"], 2)
        same = ro["packets"] == ma["packets"] and ro["records_sha256"] == ma["records_sha256"]
        res[f"same_packets_{part}"] = same
        if a.before:
            be = res[f"before_{part}"]
            res[f"speedup_{part}"] = round(be["seconds"] / ro["seconds"], 2)
            res[f"before_ratio_{part}"] = round(ma["seconds"] / be["seconds"], 2)
        print(f"{part}: rollcap {ro['seconds']:.2f} s ({ro['mb_s']:.0f} MB/s), manual "
              f"{ma['seconds']:.2f} s ({ma['mb_s']:.0f} MB/s): {res[f'ratio_{part}']:.2f}x; "
              f"{ro['packets']} vs {ma['packets']} packets, same records: "
              f"{res[f'same_packets_{part}']}")  # fmt: skip
    write_result("fetch", res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
