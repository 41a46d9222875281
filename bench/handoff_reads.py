"""Bytes the hand-off reads to repair a finished file: the full record walk
(pcapfile.repair, what the hand-off did before) against the proof from the
tail (pcapfile.repair_finished, what it does now), per file, with the CPU each
took. Both on the same files in the same run: complete ones and ones whose
last record was cut off (a killed tcpdump), on the synthetic TLS/HTTP mix
(bench.datagen, 50 MB files as `rotate_megabytes = 50` cuts them) and on a
small-packet mix (64-byte frames).

Each copy's mtime is its last packet's time, as tcpdump leaves it (the proof
bounds time stamps by the first record's and the mtime). Bytes are
/proc/self/io rchar (what read()/pread() returned to the process, page cache
or not); the files are read once before, so both measure warm cache, as a
hand-off right after tcpdump closed the file does.

    python3 -m bench.handoff_reads [--files 3] [--size-mb 50]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import MB, workdir, write_result
from bench.datagen import START, dataset
from rollcap.pcapfile import repair, repair_finished, scan


def rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError("no rchar in /proc/self/io")


def small_packets(path: Path, size: int, seed: int) -> None:
    """A pcap of 64-byte frames (the worst case for a walk: most records per byte)."""
    rng = random.Random(seed)
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
    ts = START.timestamp()
    frame = bytearray(rng.randbytes(64))
    while len(out) < size:
        ts += 0.000002
        sec = int(ts)
        frame[-8:] = rng.randbytes(8)
        out += struct.pack("<IIII", sec, int((ts - sec) * 1e6), 64, 64) + frame
    path.write_bytes(out)


def measure(path: Path, fn: Callable[[int], Any], mtime: float) -> tuple[int, float, Any]:
    """(bytes read, CPU seconds, result) of fn on a fresh copy of path, whose
    mtime is set to mtime (tcpdump's last write: when it captured the last packet)."""
    work = path.with_suffix(".work")
    shutil.copyfile(path, work)
    os.utime(work, (mtime, mtime))
    with work.open("rb") as f:  # warm: the copy's pages are in the cache already
        while f.read(1 << 22):
            pass
    fd = os.open(work, os.O_RDWR)
    try:
        r0, c0 = rchar(), time.process_time()
        result = fn(fd)
        r1, c1 = rchar(), time.process_time()
    finally:
        os.close(fd)
        work.unlink()
    return r1 - r0, c1 - c0, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=3)
    ap.add_argument("--size-mb", type=int, default=50)
    args = ap.parse_args()
    rows = []
    with workdir("rollcap-bench-handoff-") as tmp:
        sources = {"tls-http mix": dataset(args.files, args.size_mb)}
        small = []
        for i in range(args.files):
            p = tmp / f"small{i}.pcap"
            small_packets(p, args.size_mb * MB, i)
            small.append(p)
        sources["64-byte frames"] = small
        for mix, files in sources.items():
            for src in files:
                for torn in (False, True):
                    path = tmp / "f.pcap"
                    data = src.read_bytes()
                    path.write_bytes(data[:-700] if torn else data)
                    last = scan(path).last_ts or 0.0
                    old_b, old_cpu, (old, removed) = measure(path, repair, last)
                    new_b, new_cpu, new = measure(path, repair_finished, last)
                    assert new.file_bytes == old.good_bytes and new.removed == removed
                    row = {
                        "mix": mix, "file_bytes": len(data), "torn": torn,
                        "full_walk_bytes_read": old_b, "tail_bytes_read": new_b,
                        "full_walk_cpu_ms": round(old_cpu * 1000, 1),
                        "tail_cpu_ms": round(new_cpu * 1000, 1),
                        "tail_proved": new.packets is None, "packets": old.packets,
                    }  # fmt: skip
                    rows.append(row)
                    print(
                        f"{mix:15} {'torn' if torn else 'whole'}: full walk read "
                        f"{old_b / MB:.1f} MB in {old_cpu * 1000:.0f} ms CPU; tail read "
                        f"{new_b / 1e3:.0f} kB in {new_cpu * 1000:.1f} ms"
                        + ("" if new.packets is None else " (not proved: walked)")
                    )
    write_result("handoff_reads", {"files": rows})


if __name__ == "__main__":
    main()
