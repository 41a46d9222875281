"""ready/ file names: sort order is time order, parse round-trips, hostile names refused."""

from __future__ import annotations

import random
import string
from datetime import UTC, datetime, timedelta

import pytest

from rollcap.spool.readyname import ReadyName, local_hostname, sanitize_host


def test_format_and_parse_round_trip() -> None:
    n = ReadyName(datetime(2026, 11, 26, 13, 5, 1, tzinfo=UTC), 42, "web1", "eth0")
    assert n.format() == "20261126T130501Z-000042_web1_eth0.pcap"
    assert ReadyName.parse(n.format()) == n


@pytest.mark.parametrize("iface", ["eth0", "any", "br_lan", "veth_a_b", "eth0.100", "wg0:1", "lo"])
def test_interfaces_with_underscores_parse_unambiguously(iface: str) -> None:
    n = ReadyName(datetime(2026, 1, 1, tzinfo=UTC), 1, "host-1.example", iface)
    assert ReadyName.parse(n.format()) == n


def test_sort_order_is_time_order() -> None:
    rnd = random.Random(7)
    t = datetime(2026, 12, 31, 23, 59, 50, tzinfo=UTC)
    names = []
    for seq in range(1, 500):
        t += timedelta(seconds=rnd.choice([0, 1, 9, 600, 86400 * 40]))  # across days, years
        names.append(ReadyName(t, seq, rnd.choice(["a", "zz", "m-1"]), rnd.choice(["x", "eth0"])))
    shuffled = [n.format() for n in names]
    rnd.shuffle(shuffled)
    assert [ReadyName.parse(s) for s in sorted(shuffled)] == names


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x.pcap",
        "../20261126T130501Z-000042_web1_eth0.pcap",
        "20261126T130501Z-000042_web1_eth0.pcap/",
        "20261126T130501Z-000042_web1_eth0/x.pcap",
        "20261126T130501Z-000042_web1_eth0.pcap.tmp",
        ".20261126T130501Z-000042_web1_eth0.pcap",
        "20261126T130501Z-42_web1_eth0.pcap",  # seq not padded
        "20261399T130501Z-000042_web1_eth0.pcap",  # not a date
        "20261126T130501Z-000042_we b1_eth0.pcap",
        "20261126T130501Z-000042_web1_eth\n0.pcap",
        "20261126T130501Z-000042__eth0.pcap",
        "20261126T130501Z-000042_web1_eth0.pcapng",
    ],
)
def test_not_ours(name: str) -> None:
    assert ReadyName.parse(name) is None


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("web1", "web1"),
        ("web_1", "web-1"),
        ("../../etc/passwd", "etc-passwd"),
        ("a..b", "a.b"),
        ("-x-", "x"),
        ("", "localhost"),
        ("...", "localhost"),
        ("h\n\x00st", "h--st"),
        ("ünïcode", "n-code"),
        ("x" * 100, "x" * 63),
    ],
)
def test_sanitize_host(raw: str, clean: str) -> None:
    assert sanitize_host(raw) == clean


def test_any_host_name_yields_a_parseable_file_name() -> None:
    rnd = random.Random(1)
    alphabet = string.printable + "äöü/\\\x00_"
    for _ in range(500):
        host = sanitize_host("".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 80))))
        n = ReadyName(datetime(2026, 1, 1, tzinfo=UTC), 1, host, "eth0")
        assert "/" not in n.format() and ".." not in host
        assert ReadyName.parse(n.format()) == n, host


def test_local_hostname_prefers_the_configured_one() -> None:
    assert local_hostname("cfg_host") == "cfg-host"
    assert local_hostname("")  # the machine's, never empty
