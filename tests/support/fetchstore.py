"""A fake destination holding two hosts' captures (ARP and UDP frames alternating),
and a fetch of a window from it: the fixture of the fetch tests, unit and integration."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from rollcap.config.schema import DEFAULT_KEY_TEMPLATE as T
from rollcap.retrieve.catalog import find_captures
from rollcap.retrieve.fetch import fetch
from tests.support.archive import NS, MemoryStorage, make_object, ns, utc

# an ARP request frame and a UDP/IPv4 frame, so a BPF filter has something to choose
ARP = bytes.fromhex("ffffffffffff02000000000108060001080006040001" + "02" * 10 + "00" * 10)
UDP = bytes.fromhex(
    "020000000002020000000001080045000020000100004011f9c80a0000010a000002303930390008000000000000"
)
FRAMES = [(ARP, len(ARP)), (UDP, len(UDP))]


def store(st: MemoryStorage, tmp: Path, host: str, start: datetime, stamps: list[int],
          seq: int, **kw: object) -> None:  # fmt: skip
    local, key, md = make_object(tmp, prefix="caps", host=host, iface="eth0", start=start,
                                seq=seq, stamps=stamps, frames=FRAMES, **kw)  # type: ignore[arg-type]  # fmt: skip
    st.put_file(local, key, size=local.stat().st_size, sha256="", metadata=md)


def two_hosts(tmp_path: Path) -> MemoryStorage:
    s = MemoryStorage()
    base = ns(utc(2026, 11, 26, 10))
    # a: 100 packets 10:00:00..10:01:39 in two files; b: 100 packets interleaved (+0.5 s)
    for seq in range(2):
        s0 = base + seq * 50 * NS
        store(s, tmp_path, "a", utc(2026, 11, 26, 10, 0, seq * 50),
              [s0 + i * NS for i in range(50)], seq, compression="zstd")  # fmt: skip
        store(s, tmp_path, "b", utc(2026, 11, 26, 10, 0, seq * 50),
              [s0 + i * NS + NS // 2 for i in range(50)], seq, compression="gzip")  # fmt: skip
    return s


def run_fetch(st: MemoryStorage, out: Path, since: datetime, until: datetime, **kw: object) -> int:
    caps, _ = find_captures(st, template=T, prefix="caps", since=since, until=until)
    return fetch(st, caps, since=since, until=until, output=out, **kw).packets  # type: ignore[arg-type]
