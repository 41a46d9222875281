"""Test-owned veth pairs for replaying real captures; nothing leaves the machine.

IPv6 is disabled on both ends before they come up, so the kernel adds no
router solicitations or MLD reports and packet counts stay exact.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

# The 30 real captures from tcpdump's test suite, kept in the repository.
TEST_PCAPS = Path(__file__).resolve().parents[1] / "data" / "pcaps"


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def _sysctl(key: str, value: str) -> None:
    Path("/proc/sys/" + key.replace(".", "/")).write_text(value)


@dataclass
class Veth:
    """A veth pair: replay into `a`, capture on `b`."""

    a: str
    b: str

    @classmethod
    def create(cls, tag: str | None = None) -> Veth:
        """rcA<tag>/rcB<tag>; a random tag unless the test needs to know the name first."""
        tag = tag or secrets.token_hex(3)
        v = cls(a=f"rcA{tag}", b=f"rcB{tag}")
        _run("ip", "link", "add", v.a, "type", "veth", "peer", "name", v.b)
        for dev in (v.a, v.b):
            _sysctl(f"net.ipv6.conf.{dev}.disable_ipv6", "1")
            _run("ip", "link", "set", dev, "up")
        return v

    def delete(self) -> None:
        subprocess.run(["ip", "link", "del", self.a], capture_output=True)

    def replay(self, pcap: Path, *, loop: int = 1, pps: int | None = None) -> None:
        """Send every frame of pcap into `a` (exact count; blocks until done)."""
        rate = [f"--pps={pps}"] if pps else ["--topspeed"]
        _run("tcpreplay", "-q", f"--intf1={self.a}", *rate, f"--loop={loop}", str(pcap))


def merged_pcaps(dest: Path) -> Path:
    """All test captures joined into one classic pcap (tcpreplay ignores pcapng)."""
    out = dest / "all.pcap"
    if not out.exists():
        files = sorted(str(p) for p in TEST_PCAPS.glob("*.pcap"))
        _run("mergecap", "-F", "pcap", "-a", "-w", str(out), *files)
    return out


def count_packets(path: Path) -> int:
    """Packets in a pcap / .pcap.gz / .pcap.zst, by capinfos (independent of rollcap)."""
    out = subprocess.run(
        ["capinfos", "-c", "-M", "-T", str(path)], check=True, capture_output=True, text=True
    ).stdout
    # -T: tab-separated "File name<TAB>Number of packets" header then the row
    row = out.strip().splitlines()[-1].split("\t")
    return int(row[-1])
