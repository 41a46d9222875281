"""`rollcap list` on a file:// archive: from manifest entries vs by listing.

Fills a temporary file:// archive through LocalStorage (put_file, then
manifest.write_entries, as the offload does) with N hosts x one day of
bench.fleet's 10-minute captures, then times the selection behind `rollcap
list` (in-process, best of 3) for a 10-minute and a 24-hour window, once
from the entries and once with them ignored (the directory listing and
sidecars, as before file:// archives had entries).

    python3 -m bench.filelist [--hosts 10]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.common import write_result
from bench.fleet import DAY, PREFIX, objects_of
from rollcap.config.schema import DEFAULT_KEY_TEMPLATE, OffloadConfig
from rollcap.retrieve.select import collect, select
from rollcap.storage import manifest, open_storage


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hosts", type=int, default=10)
    a = ap.parse_args(argv)
    res: dict[str, Any] = {"hosts": a.hosts, "files_per_host": 144}
    with tempfile.TemporaryDirectory(prefix="rollcap-bench-filelist-") as tmp:
        root = Path(tmp) / "archive"
        st = open_storage(OffloadConfig(destination=f"file://{root}"))  # type: ignore[call-arg]
        src = Path(tmp) / "src"
        t = time.monotonic()
        for i in range(a.hosts):
            for key, body, headers, e in objects_of(i, False, False):
                key = key[len(PREFIX) + 1 :]  # a file:// archive's keys have no prefix
                src.write_bytes(body)
                meta = {k.removeprefix("x-amz-meta-"): v for k, v in headers.items()}
                st.put_file(src, key, size=len(body), sha256=hashlib.sha256(body).hexdigest(),
                            metadata=meta)  # fmt: skip
                if e is not None:
                    manifest.write_entries(st, replace(e, key=key), "")
        res["fill_seconds"] = round(time.monotonic() - t, 1)
        windows = {
            "10min": (DAY + timedelta(hours=12, minutes=3), DAY + timedelta(hours=12, minutes=13)),
            "24h": (DAY, DAY + timedelta(days=1)),
        }
        for label, (since, until) in windows.items():
            for mode in ("entries", "listing"):
                st.manifests = mode == "entries"
                best, n, checked = 1e9, 0, 0
                for _ in range(3):
                    t = time.monotonic()
                    sel = select(st, template=DEFAULT_KEY_TEMPLATE, prefix="", since=since,
                                 until=until, rotate=timedelta(seconds=600))  # fmt: skip
                    n = len(collect(sel))
                    best = min(best, time.monotonic() - t)
                    checked = sel.summary.checked
                res[f"{label}_{mode}"] = {"ms": round(best * 1000, 1), "captures": n,
                                          "hosts_checked_by_listing": checked}  # fmt: skip
                print(f"{label} window from {mode}: {n} captures, {checked} hosts checked by "
                      f"listing, {best * 1000:.0f} ms (best of 3)")  # fmt: skip
    write_result("filelist", res)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
