"""Peak memory and throughput of `rollcap fetch` as the amount fetched grows.

Builds a file:// archive (HOSTS hosts x FILES files of MB megabytes of
uncompressed pcap each, zstd, real offload metadata via LocalStorage.put_file),
then fetches the whole window and windows of growing size, into a file and
to stdout (`-o -`, read from a pipe), reporting wall time and the child's
peak RSS (from wait4). Memory must not grow with the amount fetched.

    python3 bench/retrieve_memory.py [--hosts 3] [--files 10] [--mb 20] [--dir DIR] [--s3]

--s3 starts a SeaweedFS (tests/support/seaweedfs.py) and uses it instead of a
file:// archive; the listing of all objects is timed too.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rollcap.config.schema import OffloadConfig  # noqa: E402
from rollcap.storage import open_storage  # noqa: E402
from tests.support.archive import NS, make_object, ns, read_frames, sha256, utc  # noqa: E402
from tests.support.net import merged_pcaps  # noqa: E402


def build(root: Path, offload: dict[str, str], hosts: int, files: int, mb: int) -> None:
    frames = read_frames(merged_pcaps(root))
    avg = sum(len(f[0]) + 16 for f in frames) / len(frames)
    per_file = int(mb * 1_000_000 / avg)
    storage = open_storage(OffloadConfig(**offload, archive_max_megabytes=100_000))  # type: ignore[arg-type]
    period = 600
    step = period * NS // per_file
    for h in range(hosts):
        for i in range(files):
            start = utc(2026, 11, 26, 0, 0) + timedelta(seconds=period * i + h)
            stamps = [ns(start) + NS + h * 1000 + j * step // 1000 * 1000 for j in range(per_file)]
            local, key, md = make_object(root, prefix=storage.key_prefix, host=f"h{h}",
                                         iface="eth0", start=start, seq=i, stamps=stamps,
                                         frames=frames)  # fmt: skip
            storage.put_file(local, key, size=local.stat().st_size, sha256=sha256(local),
                             metadata=md)  # fmt: skip
            local.unlink()
            local.with_suffix("").unlink(missing_ok=True)
            for p in root.glob("*.pcap"):
                if p.name != "all.pcap":
                    p.unlink()


def run(root: Path, env: dict[str, str], *args: str, piped: list[int] | None = None
        ) -> tuple[float, int]:  # fmt: skip
    """piped: stdout goes to a pipe whose bytes are counted into piped[0]."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rollcap", *args, "--config", str(root / "rollcap.toml")],
        cwd=REPO, env={**env, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL if piped is None else subprocess.PIPE,
    )  # fmt: skip
    if piped is not None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(1 << 20):
            piped[0] += len(chunk)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(err)
    return wall, usage.ru_maxrss


def fetch(root: Path, env: dict[str, str], minutes: int, stdout: bool = False
          ) -> tuple[float, int, int]:  # fmt: skip
    """-o FILE, or -o - into a pipe (stdout=True)."""
    out = root / "out.pcap"
    window = ["fetch", "--since", "2026-11-26T00:00:00Z", "--until",
              f"@{1795651200 + minutes * 60}"]  # fmt: skip
    if stdout:
        piped = [0]
        wall, rss = run(root, env, *window, "-o", "-", piped=piped)
        return wall, rss, piped[0]
    wall, rss = run(root, env, *window, "-o", str(out))
    size = out.stat().st_size
    out.unlink()
    return wall, rss, size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--mb", type=int, default=20)
    ap.add_argument("--dir")
    ap.add_argument("--s3", action="store_true", help="use a SeaweedFS instead of file://")
    a = ap.parse_args()
    root = Path(a.dir or tempfile.mkdtemp(prefix="rollcap-bench-retrieve-"))
    root.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    weed = None
    if a.s3:
        from tests.support.seaweedfs import SeaweedFS

        (root / "weed").mkdir(exist_ok=True)
        weed = SeaweedFS(data_dir=root / "weed").start()
        env.update(weed.env())
        os.environ.update(weed.env())
        offload = {"destination": f"s3://{weed.bucket}/caps", "endpoint_url": weed.endpoint,
                   "region": "us-east-1"}  # fmt: skip
    else:
        offload = {"destination": f"file://{root / 'archive'}"}
    (root / "rollcap.toml").write_text(
        "[offload]\n" + "".join(f'{k} = "{v}"\n' for k, v in offload.items())
    )
    try:
        if a.s3 or not (root / "archive").exists():
            t0 = time.monotonic()
            build(root, offload, a.hosts, a.files, a.mb)
            print(f"built {a.hosts}x{a.files} files of {a.mb} MB in {time.monotonic() - t0:.1f}s")
        wall, rss = run(root, env, "list", "--since", "2026-11-26T00:00:00Z", "--until",
                        "2026-11-27T00:00:00Z")  # fmt: skip
        print(f"list of {a.hosts * a.files} objects: {wall:.2f}s, peak RSS {rss / 1024:.1f} MB")
        print("output      window_min  output_MB  wall_s  MB/s  peak_rss_MB")
        for minutes in (5, 30, 10 * a.files):
            for to_stdout in (False, True):
                wall, rss_kb, size = fetch(root, env, minutes, to_stdout)
                print(f"{'-o - (pipe)' if to_stdout else '-o FILE':10s}  {minutes:10d}  "
                      f"{size / 1e6:9.1f}  {wall:6.2f}  {size / 1e6 / wall:4.0f}"
                      f"  {rss_kb / 1024:11.1f}")  # fmt: skip
    finally:
        if weed is not None:
            weed.stop()
    print(f"data left in {root}")


if __name__ == "__main__":
    main()
