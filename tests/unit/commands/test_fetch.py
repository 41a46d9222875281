"""`rollcap fetch` speaks tcpdump: -i, -w (-w - for stdout), -H and a trailing filter."""

from __future__ import annotations

import argparse

import pytest

from rollcap.cli import build_parser
from rollcap.commands.fetch import filter_expression
from rollcap.errors import UsageError


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["fetch", *argv])


def test_tcpdump_shaped_command_line() -> None:
    a = _args("--since", "10m", "-i", "eth0", "-w", "x.pcap", "-H", "web1", "tcp", "port", "443")
    assert (a.since, a.interface, a.output, a.host) == ("10m", "eth0", "x.pcap", ["web1"])
    assert filter_expression(a) == "tcp port 443"
    a = _args("--since", "-10min", "-w", "-", "host", "10.0.0.1", "and", "not", "port", "22")
    assert (a.since, a.output) == ("-10min", "-")
    assert filter_expression(a) == "host 10.0.0.1 and not port 22"
    # -o and --output are the same option; --filter still works alone
    assert _args("--since", "1h", "-o", "y.pcap", "--filter", "udp").output == "y.pcap"
    assert filter_expression(_args("--since", "1h", "-o", "y", "--filter", "udp")) == "udp"
    assert filter_expression(_args("--since", "1h", "-o", "y")) == ""


def test_a_filter_twice_is_refused_in_one_line() -> None:
    a = _args("--since", "1h", "-w", "x", "--filter", "udp", "tcp", "port", "443")
    with pytest.raises(UsageError) as e:
        filter_expression(a)
    assert str(e.value) == (
        "a filter twice: --filter 'udp' and the expression 'tcp port 443'; give one of them"
    )
