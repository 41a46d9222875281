"""Tiny classic pcap files for unit tests."""

from __future__ import annotations

import struct
from pathlib import Path

HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)


def record(ts: float, data: bytes) -> bytes:
    sec = int(ts)
    usec = round((ts - sec) * 1_000_000)
    return struct.pack("<IIII", sec, usec, len(data), len(data)) + data


def write_pcap(path: Path, packets: list[tuple[float, bytes]], tail: bytes = b"") -> Path:
    path.write_bytes(HEADER + b"".join(record(ts, d) for ts, d in packets) + tail)
    return path


def write_nano_pcap(path: Path, packets: list[tuple[float, bytes]], endian: str = "<",
                    extra_ns: int = 321) -> Path:  # fmt: skip
    """The same packets as tcpdump --time-stamp-precision=nano saw them: the µs
    stamp of write_pcap plus extra_ns (what a µs file truncates away)."""
    out = [struct.pack(endian + "IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1)]
    for ts, d in packets:
        sec = int(ts)
        nsec = round((ts - sec) * 1_000_000) * 1000 + extra_ns
        out.append(struct.pack(endian + "IIII", sec, nsec, len(d), len(d)) + d)
    path.write_bytes(b"".join(out))
    return path


def packets(
    n: int, start: float = 1_800_000_000.0, step: float = 0.001, tag: str = "p"
) -> list[tuple[float, bytes]]:
    return [(start + i * step, f"{tag}{i:06d}".encode() * 8) for i in range(n)]
