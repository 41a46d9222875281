"""Command-line surface of list/fetch."""

from __future__ import annotations

from rollcap.cli import build_parser
from rollcap.commands.list import render_table
from rollcap.retrieve.catalog import Capture
from tests.support.archive import utc


def test_relative_times_are_values_not_options() -> None:
    a = build_parser().parse_args(["fetch", "--since", "-2h", "--until", "-1h30m", "-o", "x"])
    assert (a.since, a.until, a.output) == ("-2h", "-1h30m", "x")
    a = build_parser().parse_args(["list", "--since", "-15m", "--host", "a,b", "--host", "c"])
    assert a.since == "-15m" and a.host == ["a,b", "c"] and a.until is None  # now


def test_table_shows_unknown_packet_times() -> None:
    caps = [
        Capture(
            "caps/h/2026/11/26/h-eth0-20261126T000000Z-000001.pcap.zst",
            1234,
            "h",
            "eth0",
            utc(2026, 11, 26),
            1795651201_500_000_000,
            1795651799_250_000_000,
            300,
            5000,
            1,
        ),
        Capture(
            "caps/h/2026/11/26/h-eth0-20261126T001000Z-000002.pcap",
            2_500_000,
            "h",
            "eth0",
            utc(2026, 11, 26, 0, 10),
            None,
            None,
            None,
            None,
            None,
        ),
    ]
    lines = render_table(caps).splitlines()
    assert lines[1].split()[3:] == ["2026-11-26", "00:00:01.500", "2026-11-26", "00:09:59.250",
                                    "300", "1.2", "kB"]  # fmt: skip
    # without metadata: the key's open time, marked approximate, and '?'
    assert lines[2].split()[3:] == ["2026-11-26", "00:10:00.000~", "?", "?", "2.5", "MB"]


def test_list_json_keeps_nanoseconds_and_micro_captures_read_as_before() -> None:
    from rollcap.commands._selection import capture_json

    key = "caps/h/2026/11/26/h-eth0-20261126T000000Z-000001.pcap.zst"
    nano = Capture(key, 1, "h", "eth0", utc(2026, 11, 26), 1795651201_123456789,
                   1795651799_000000001, 2, 100, 1)  # fmt: skip
    j = capture_json(nano)
    assert (j["first_ns"], j["last_ns"]) == (1795651201_123456789, 1795651799_000000001)
    assert j["first"] == "2026-11-26T00:00:01.123456789Z"
    assert j["last"] == "2026-11-26T00:09:59.000000001Z"
    micro = Capture(key, 1, "h", "eth0", utc(2026, 11, 26), 1795651201_500000000,
                    1795651799_250000000, 2, 100, 1)  # fmt: skip
    j = capture_json(micro)
    assert (j["first"], j["first_ts"]) == ("2026-11-26T00:00:01.500000Z", 1795651201.5)
