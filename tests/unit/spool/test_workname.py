from __future__ import annotations

import fnmatch
import time
from pathlib import Path

from rollcap.spool.fs import Dir
from rollcap.spool.workname import WorkName, list_work, work_template


def test_work_files_sort_as_tcpdump_wrote_them(tmp_path: Path) -> None:
    names = [
        "g000010-20261126T120000-eth0.pcap10",
        "g000010-20261126T120000-eth0.pcap",
        "g000010-20261126T120000-eth0.pcap2",
        "g000009-20261126T125959-eth0.pcap",
        "g000010-20261126T121000-eth0.pcap",
        "g000100-20261126T110000-eth0.pcap",
        ".overlap-g000010.bin",
        "unrelated.txt",
    ]
    for n in names:
        (tmp_path / n).touch()
    got = [n for _w, n in list_work(Dir(tmp_path))]
    assert got == [
        "g000009-20261126T125959-eth0.pcap",
        "g000010-20261126T120000-eth0.pcap",
        "g000010-20261126T120000-eth0.pcap2",
        "g000010-20261126T120000-eth0.pcap10",
        "g000010-20261126T121000-eth0.pcap",
        "g000100-20261126T110000-eth0.pcap",
    ]


def test_work_name_round_trip_with_odd_interface_names() -> None:
    for name in ("g000001-20261126T120000-eth0.100.pcap3", "g1234567-20261126T120000-a-b.pcap"):
        w = WorkName.parse(name)
        assert w is not None and w.format() == name
    w = WorkName.parse("g000001-20261126T120000-eth0.100.pcap3")
    assert w is not None and w.iface == "eth0.100" and w.counter == 3
    assert WorkName.parse("g000001-20261399T120000-eth0.pcap") is None


def test_work_names_are_writable_under_debians_apparmor_profile() -> None:
    # /etc/apparmor.d/usr.bin.tcpdump lets tcpdump write /**.[pP][cC][aA][pP] and
    # the same followed by [0-9]* (its -C counter); nothing else outside $HOME, /tmp
    allowed = ("/**.[pP][cC][aA][pP]", "/**.[pP][cC][aA][pP][0-9]*")
    written = time.strftime(work_template(Path("/var/spool/rollcap/work"), 7, "eth0.100"))
    for suffix in ("", "1", "12"):
        name = written + suffix
        assert any(fnmatch.fnmatchcase(name, pat.replace("/**", "*")) for pat in allowed)
        assert WorkName.parse(Path(name).name) is not None
