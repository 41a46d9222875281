"""Finished capture files with realistic content, for the drain benchmarks.

Each file is a valid classic pcap (Ethernet) named like a rollcap ready/ file.
Packets are a seeded mix of real frames from tests/data/pcaps (compressible
protocol chatter) and TLS-like frames: proper Ethernet/IPv4/TCP headers over
a handful of flows, whose payload is a TLS application-data record of random
bytes (incompressible, as encrypted traffic is). The mix is chosen so that
zstd -3 stores about 0.65 of the bytes, as measured on real mixed traffic.

Files are deterministic for (count, size, seed) and cached in a temp dir, so
repeated runs do not pay for generation.

    python3 -m bench.datagen --count 8 --size-mb 64     # prints the directory
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import struct
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import REPO  # noqa: F401 - puts the repo root on sys.path
from rollcap.pcapfile import GLOBAL_HEADER_LEN, RECORD_HEADER_LEN, parse_header
from rollcap.spool.readyname import ReadyName
from tests.support.net import TEST_PCAPS

VERSION = 1  # bump when the content changes, so stale caches are not reused
HOST = "benchhost"
IFACE = "eth0"
# Share of the bytes that are TLS-like frames with random payload. 0.60 gives
# a zstd -3 ratio of about 0.65 over the whole file (see `--check`).
TLS_SHARE = 0.60
START = datetime(2026, 11, 2, 8, 0, 0, tzinfo=UTC)


def cache_root() -> Path:
    return Path(
        os.environ.get("ROLLCAP_BENCH_CACHE", Path(tempfile.gettempdir()) / "rollcap-bench")
    )


def real_frames() -> list[bytes]:
    """Every frame of the test captures (all Ethernet, at most 1514 bytes)."""
    frames: list[bytes] = []
    for p in sorted(TEST_PCAPS.glob("*.pcap")):
        data = p.read_bytes()
        h = parse_header(data)
        if h.linktype != 1:
            continue
        off = GLOBAL_HEADER_LEN
        while off + RECORD_HEADER_LEN <= len(data):
            _s, _u, incl, _orig = struct.unpack_from(h.endian + "IIII", data, off)
            off += RECORD_HEADER_LEN
            frames.append(data[off : off + incl])
            off += incl
    if not frames:
        raise RuntimeError(f"no Ethernet frames found in {TEST_PCAPS}")
    return frames


def _ip_checksum(hdr: bytes) -> int:
    s: int = sum(struct.unpack("!10H", hdr))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


@dataclass
class _Flow:
    eth: bytes
    src: bytes
    dst: bytes
    sport: int
    dport: int
    seq: int
    ack: int
    ip_id: int


def _flows(rng: random.Random, n: int = 32) -> list[_Flow]:
    flows = []
    for _ in range(n):
        # locally administered MACs, documentation/private addresses
        eth = bytes([0x02, *rng.randbytes(5)]) + bytes([0x02, *rng.randbytes(5)]) + b"\x08\x00"
        src = bytes([10, rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)])
        dst = bytes([198, 51, 100, rng.randrange(1, 255)])
        flows.append(
            _Flow(
                eth,
                dst,
                src,
                443,
                rng.randrange(32768, 61000),
                rng.getrandbits(32),
                rng.getrandbits(32),
                rng.randrange(65536),
            )
        )
    return flows


def _tls_frame(flow: _Flow, payload: bytes) -> bytes:
    tcp_len = 32  # 20 + timestamp option, as Linux sends
    total = 20 + tcp_len + len(payload)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, total, flow.ip_id, 0x4000, 64, 6, 0, flow.src, flow.dst
    )
    ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
    # checksum left 0: NIC checksum offload makes captured TCP checksums wrong anyway
    tcp = struct.pack(
        "!HHIIBBHHH", flow.sport, flow.dport, flow.seq, flow.ack, tcp_len // 4 << 4, 0x18, 501, 0, 0
    )
    tcp += b"\x01\x01\x08\x0a" + struct.pack("!II", flow.seq & 0xFFFFFF, flow.ack & 0xFFFFFF)
    flow.seq = (flow.seq + len(payload)) & 0xFFFFFFFF
    flow.ip_id = (flow.ip_id + 1) & 0xFFFF
    return flow.eth + ip + tcp + payload


def generate_file(
    path: Path, size: int, rng: random.Random, frames: list[bytes], start: datetime
) -> int:
    """Write one pcap of about `size` bytes; returns the packet count."""
    flows = _flows(rng)
    noise = rng.randbytes(size)  # payload source; slices of it never repeat
    noise_off = 0
    ts = start.timestamp()
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
    packets = 0
    tls_bytes = 0
    while len(out) < size:
        if tls_bytes < TLS_SHARE * len(out):
            flow = rng.choice(flows)
            # mostly full segments, some short records (end of a response)
            n = 1448 - 5 if rng.random() < 0.8 else rng.randrange(40, 1400)
            if noise_off + n > len(noise):
                noise_off = 0
            rec = b"\x17\x03\x03" + struct.pack("!H", n) + noise[noise_off : noise_off + n]
            noise_off += n
            frame = _tls_frame(flow, rec)
            tls_bytes += len(frame) + RECORD_HEADER_LEN
        else:
            frame = rng.choice(frames)
        ts += rng.expovariate(1 / 0.0004)
        sec = int(ts)
        out += struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(frame), len(frame))
        out += frame
        packets += 1
    path.write_bytes(out)
    return packets


def ready_name(seq: int, start: datetime, host: str = HOST, iface: str = IFACE) -> str:
    return ReadyName(start, seq, host, iface).format()


def dataset(count: int = 8, size_mb: int = 64, seed: int = 1) -> list[Path]:
    """The cached files (generated on first use), in hand-off order."""
    d = cache_root() / f"data-v{VERSION}-{count}x{size_mb}MB-s{seed}"
    done = d / ".complete"
    if not done.exists():
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        rng = random.Random(seed)
        frames = real_frames()
        for i in range(count):
            start = START + timedelta(seconds=60 * i)
            generate_file(d / ready_name(i + 1, start), size_mb * 1_000_000, rng, frames, start)
        done.write_text("ok\n")
    return sorted(p for p in d.iterdir() if p.suffix == ".pcap")


SMALL_MAX = 128  # bytes per frame in the small-packet mix


def generate_small(path: Path, size: int, rng: random.Random, frames: list[bytes]) -> int:
    """A pcap of frames of at most SMALL_MAX bytes: half TLS-like frames with a
    short random record (ACK-sized to 128 B), half the test captures' small
    frames (ARP, DNS, TCP control). The per-packet costs dominate, as on a link
    of small packets (VoIP, DNS, ACK streams)."""
    flows = _flows(rng)
    small = [f for f in frames if len(f) <= SMALL_MAX]
    if not small:
        raise RuntimeError(f"no frames of at most {SMALL_MAX} bytes in {TEST_PCAPS}")
    ts = START.timestamp()
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
    packets = 0
    head = 14 + 20 + 32 + 5  # Ethernet, IPv4, TCP with timestamps, TLS record header
    while len(out) < size:
        if packets % 2 == 0:
            n = rng.randrange(1, SMALL_MAX - head + 1)
            rec = b"\x17\x03\x03" + struct.pack("!H", n) + rng.randbytes(n)
            frame = _tls_frame(rng.choice(flows), rec)
        else:
            frame = rng.choice(small)
        ts += rng.expovariate(1 / 0.00005)
        sec = int(ts)
        out += struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(frame), len(frame))
        out += frame
        packets += 1
    path.write_bytes(out)
    return packets


def small_dataset(size_mb: int = 16, seed: int = 1) -> Path:
    """The cached small-packet mix (generated on first use)."""
    d = cache_root() / f"small-v{VERSION}-{size_mb}MB-s{seed}"
    done = d / ".complete"
    path = d / "small.pcap"
    if not done.exists():
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        generate_small(path, size_mb * 1_000_000, random.Random(seed), real_frames())
        done.write_text("ok\n")
    return path


def zstd_ratio(paths: list[Path]) -> float:
    import zstandard

    c = zstandard.ZstdCompressor()
    raw = comp = 0
    for p in paths:
        data = p.read_bytes()
        raw += len(data)
        comp += len(c.compress(data))
    return comp / raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--size-mb", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--check", action="store_true", help="also print the zstd -3 ratio")
    a = ap.parse_args()
    files = dataset(a.count, a.size_mb, a.seed)
    print(files[0].parent)
    if a.check:
        print(f"zstd -3 ratio: {zstd_ratio(files):.3f}")


if __name__ == "__main__":
    main()
