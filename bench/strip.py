"""CPU the overlap strip of one aligned switch costs the capture supervisor, on
its main loop: fingerprinting the old file's tail (tail_since, a walk of every
record header up to the new tcpdump's spawn time, then a hash of each record
after it) and pairing the new file's head (find_duplicates). The code under
test is rollcap.capture.switching itself; the files are synthetic: an old file
of 10 s + a 1.2 s overlap and a new file of 5 s at --pps, the overlap's
records in both with the same stamps (as under rollcap's shared kernel stamp).

    python3 -m bench.strip [--pps 200000]
"""

from __future__ import annotations

import argparse
import os
import random
import struct
import time
from pathlib import Path

from bench.common import workdir, write_result
from rollcap.capture import switching

T0 = 1_800_000_000.0
OLD_SECONDS, OVERLAP, NEW_SECONDS = 10.0, 1.2, 5.0


def _write(path: Path, first: int, count: int, pps: int, payloads: list[bytes]) -> None:
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for i in range(first, first + count):
            us = i * 1_000_000 // pps  # integer: no stamp goes back at a second
            p = payloads[i % len(payloads)]
            sec, usec = int(T0) + us // 1_000_000, us % 1_000_000
            f.write(struct.pack("<IIII", sec, usec, len(p), len(p)) + p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pps", type=int, default=200_000)
    args = ap.parse_args()
    random.seed(1)
    payloads = [os.urandom(random.choice((60, 120, 600, 1400))) for _ in range(512)]
    pps = args.pps
    spawn_i = int(OLD_SECONDS * pps)
    with workdir("strip") as d:
        old, new = d / "old.pcap", d / "new.pcap"
        _write(old, 0, int((OLD_SECONDS + OVERLAP) * pps), pps, payloads)
        _write(new, spawn_i, int(NEW_SECONDS * pps), pps, payloads)
        c0 = time.process_time()
        tail = switching.tail_since(old, T0 + OLD_SECONDS)
        c1 = time.process_time()
        fd = os.open(new, os.O_RDONLY)
        try:
            dups = switching.find_duplicates(fd, tail)
        finally:
            os.close(fd)
        c2 = time.process_time()
    overlap = int(OVERLAP * pps)
    print(f"{pps} pps: tail {len(tail)} records, {len(dups)} duplicates removed "
          f"(overlap {overlap}); tail_since {c1 - c0:.2f} s CPU, find_duplicates "
          f"{c2 - c1:.2f} s CPU")  # fmt: skip
    write_result("strip", {
        "pps": pps, "overlap_records": overlap, "tail_records": len(tail),
        "duplicates_removed": len(dups), "tail_since_cpu_s": round(c1 - c0, 3),
        "find_duplicates_cpu_s": round(c2 - c1, 3),
    })  # fmt: skip


if __name__ == "__main__":
    main()
