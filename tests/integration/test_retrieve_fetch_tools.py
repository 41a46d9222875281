"""fetch with the programs it runs: tcpdump applies --filter, mergecap writes
--pcapng when the link types differ."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollcap.config.schema import DEFAULT_KEY_TEMPLATE as T
from rollcap.errors import RollcapError
from rollcap.retrieve import bpf
from rollcap.retrieve.catalog import find_captures
from rollcap.retrieve.fetch import disk_need, fetch
from tests.support.archive import MemoryStorage, ns, read_timestamps, utc
from tests.support.diskpeak import PeakWatcher
from tests.support.fetchstore import run_fetch, store, two_hosts

pytestmark = pytest.mark.integration


@pytest.fixture
def st(tmp_path: Path) -> MemoryStorage:
    return two_hosts(tmp_path)


def test_bpf_filter_is_applied(st: MemoryStorage, tmp_path: Path) -> None:
    out = tmp_path / "arp.pcap"
    n = run_fetch(st, out, utc(2026, 11, 26, 10), utc(2026, 11, 26, 11), bpf_filter="arp")
    # frames alternate ARP/UDP inside each file: half of the 200 packets are ARP
    assert n == 100 == len(read_timestamps(out))


def test_bad_filter_is_one_line_exit_2_and_leaves_no_output(
    st: MemoryStorage, tmp_path: Path
) -> None:
    out = tmp_path / "x.pcap"
    with pytest.raises(bpf.FilterError) as e:
        run_fetch(st, out, utc(2026, 11, 26, 10), utc(2026, 11, 26, 11), bpf_filter="tcp port")
    assert e.value.exit_code == 2 and "\n" not in str(e.value) and "syntax error" in str(e.value)
    assert not out.exists()


def test_mixed_link_types_fail_clearly_or_become_pcapng(st: MemoryStorage, tmp_path: Path) -> None:
    store(st, tmp_path, "c", utc(2026, 11, 26, 10), [ns(utc(2026, 11, 26, 10, 0, 5))], 0,
           linktype=113)  # fmt: skip
    out = tmp_path / "mixed.pcap"
    old = b"previous contents"
    out.write_bytes(old)
    since, until = utc(2026, 11, 26, 10), utc(2026, 11, 26, 11)
    with pytest.raises(RollcapError, match=r"different link types .*113 \(LINUX_SLL\): c/eth0"):
        run_fetch(st, out, since, until)
    assert out.read_bytes() == old  # a failed fetch never replaces the output
    n = run_fetch(st, out, since, until, pcapng=True)
    assert n == 201 and out.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"


@pytest.mark.parametrize(("bpf_filter", "pcapng"), [("", False), ("udp", False), ("udp", True)])
def test_temp_disk_stays_under_disk_need(st: MemoryStorage, tmp_path: Path, bpf_filter: str,
                                         pcapng: bool) -> None:  # fmt: skip
    """Polled while the fetch runs: downloads, pieces, BPF copies, merge, mergecap."""
    since, until = utc(2026, 11, 26, 10), utc(2026, 11, 26, 11)
    caps, _ = find_captures(st, template=T, prefix="caps", since=since, until=until)
    need = disk_need(caps, workers=2, pcapng=pcapng).total
    with PeakWatcher(tmp_path) as w:
        fetch(st, caps, since=since, until=until, output=tmp_path / "o.pcap", workers=2,
              bpf_filter=bpf_filter, pcapng=pcapng)  # fmt: skip
    assert 0 < w.peak <= need


def test_filtered_fetch_holds_the_records_tcpdump_keeps_of_the_whole_fetch(
    st: MemoryStorage, tmp_path: Path
) -> None:
    # each object's window streams into its own tcpdump at the object's precision
    # (µs here): the records come out as tcpdump over the merged window gives them
    import shutil
    import subprocess

    since, until = utc(2026, 11, 26, 10), utc(2026, 11, 26, 11)
    whole, got, want = tmp_path / "whole.pcap", tmp_path / "got.pcap", tmp_path / "want.pcap"
    run_fetch(st, whole, since, until)
    tcpdump = shutil.which("tcpdump")
    assert tcpdump is not None
    subprocess.run([tcpdump, "-q", "-r", str(whole), "-w", str(want), "--", "arp"],
                   check=True, stderr=subprocess.DEVNULL)  # fmt: skip
    assert run_fetch(st, got, since, until, bpf_filter="arp") == 100
    assert got.read_bytes()[:4] == b"\xd4\xc3\xb2\xa1"  # still µs: nothing repacked
    assert got.read_bytes()[24:] == want.read_bytes()[24:]


def test_a_tcpdump_that_fails_on_the_stream_names_the_object(tmp_path: Path) -> None:
    import struct

    tcpdump = bpf.tcpdump_binary("tcpdump")
    # an Ethernet-only expression on a raw-IP stream: tcpdump cannot compile it
    raw_ip = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)
    with (
        pytest.raises(bpf.FilterError, match=r"on host1/obj\.pcap\.zst: ") as e,
        bpf.filtering(tcpdump, "ether host 02:00:00:00:00:01", tmp_path / "o.pcap",
                      nanos=False, name="host1/obj.pcap.zst") as pipe,
    ):  # fmt: skip
        pipe.write(raw_ip)
        for i in range(2000):  # more than a pipe holds: the writer sees tcpdump go
            pipe.write(struct.pack("<IIII", i, 0, 40, 40) + b"\x45" + b"\x00" * 39)
    assert "\n" not in str(e.value)
