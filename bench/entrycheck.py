"""CPU of the readers' entry check (retrieve/entrycheck.py) against parsing the
entries it checks (manifest.parse_key), as a ratio: what the trust checks add
to `rollcap list`'s client CPU per listed entry (no conflicts, so no HEAD).

    python3 -m bench.entrycheck [--hosts 1000]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

from rollcap.config.schema import OffloadConfig
from rollcap.keys import KeyFields, render_key
from rollcap.retrieve.entrycheck import EntryCheck
from rollcap.storage import manifest
from tests.support.archive import MemoryStorage

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def entries(hosts: int, template: str) -> dict[str, dict[str, manifest.Entry]]:
    """host -> entry key -> entry: two 10-minute files per host, each in two slots."""
    out: dict[str, dict[str, manifest.Entry]] = {}
    for h in range(hosts):
        host = f"host{h:05d}"
        for i in range(2):
            st = T0 + timedelta(minutes=10 * i)
            key = render_key(template, KeyFields("caps", host, "eth0", st, i, ".pcap.zst"))
            t = int(st.timestamp())
            e = manifest.Entry(key=key, host=host, iface="eth0", opened=st, closed_ts=t + 600,
                               first_ns=t * 10**9, last_ns=(t + 599) * 10**9, packets=10,
                               pcap_bytes=1000, size=500, linktype=1)  # fmt: skip
            for k in manifest.entry_keys(e, "caps"):
                out.setdefault(host, {})[k] = e
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    cfg = OffloadConfig(destination="s3://b-1/caps")
    named = entries(args.hosts, cfg.key_template)
    keys = [k for d in named.values() for k in d]
    parse = settle = float("inf")
    for _ in range(args.reps):
        t = time.perf_counter()
        for k in keys:
            manifest.parse_key(k, "caps")
        parse = min(parse, time.perf_counter() - t)
        # no conflicts: the check never touches the storage
        check = EntryCheck(MemoryStorage(), cfg.key_template, "caps")
        t = time.perf_counter()
        for d in named.values():
            check.settle(d)
        settle = min(settle, time.perf_counter() - t)
    print(f"entries {len(keys)}: parse_key {parse / len(keys) * 1e6:.2f} us, "
          f"entry check {settle / len(keys) * 1e6:.2f} us per entry; "
          f"check / parse = {settle / parse:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
