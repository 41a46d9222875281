from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rollcap.capture.command import (
    check_config_filter,
    combine_filter,
    compile_argv,
    exclusion_clauses,
    offload_endpoints,
    resolve,
    tcpdump_argv,
)
from rollcap.capture.counters import Counters, drop_rate, parse_counters
from rollcap.config.load import validate_data
from rollcap.errors import ConfigError


def test_user_filter_is_parenthesised_and_anded_with_exclusions() -> None:
    a, b = ipaddress.ip_address("10.0.0.5"), ipaddress.ip_address("::1")
    clauses = exclusion_clauses([(a, 8333), (b, 443), (a, 8333)])
    assert clauses == [
        "not (host 10.0.0.5 and tcp port 8333)",
        "not (host ::1 and tcp port 443)",
    ]
    assert combine_filter("tcp or\n udp", clauses) == (
        "(tcp or udp) and not (host 10.0.0.5 and tcp port 8333) and not (host ::1 and tcp port 443)"
    )
    assert combine_filter("", clauses[:1]) == "not (host 10.0.0.5 and tcp port 8333)"
    assert combine_filter("  ", []) == ""
    assert combine_filter("icmp", []) == "(icmp)"


def test_offload_endpoints() -> None:
    cfg = validate_data(
        {"offload": {"destination": "s3://bkt1/p", "endpoint_url": "http://127.0.0.1:8333"}}
    )
    assert [(e.host, e.port) for e in offload_endpoints(cfg.offload)] == [("127.0.0.1", 8333)]
    cfg = validate_data({"offload": {"destination": "s3://bkt1/p", "endpoint_url": "https://s3.x"}})
    assert [(e.host, e.port) for e in offload_endpoints(cfg.offload)] == [("s3.x", 443)]
    cfg = validate_data({"offload": {"destination": "s3://my-bucket/p", "region": "eu-west-1"}})
    assert [(e.host, e.port) for e in offload_endpoints(cfg.offload)] == [
        ("my-bucket.s3.eu-west-1.amazonaws.com", 443),
        ("s3.eu-west-1.amazonaws.com", 443),
    ]
    assert offload_endpoints(validate_data({}).offload) == []  # file:// has no network peer


def test_tcpdump_argv_never_needs_a_shell() -> None:
    cfg = validate_data(
        {"capture": {"interface": "eth0", "filter": "port 53; rm -rf /", "buffer_kib": 4096,
                     "rotate_align": False}}
    )  # fmt: skip
    argv = tcpdump_argv(cfg.capture, "(port 53; rm -rf /)", Path("/s/work"), 7, "tcpdump")
    assert argv[:2] == ["/usr/bin/tcpdump", "-n"]
    assert argv[argv.index("-w") + 1] == "/s/work/g000007-%Y%m%dT%H%M%S-eth0.pcap"
    assert argv[argv.index("-G") + 1] == "600"
    assert argv[argv.index("-B") + 1] == "4096"
    assert argv[argv.index("-Z") + 1] == "tcpdump"
    assert argv[argv.index("--") + 1 :] == ["(port", "53;", "rm", "-rf", "/)"]
    default = tcpdump_argv(validate_data({}).capture, "", Path("/w"), 1)
    assert default[default.index("-B") + 1] == "32768"  # not libpcap's 2 MiB
    libpcap = validate_data({"capture": {"buffer_kib": 0}}).capture
    assert "-B" not in tcpdump_argv(libpcap, "", Path("/w"), 1)
    assert "-z" not in argv and "-U" not in argv
    # not root (the packaged unit): tcpdump runs as the daemon's user, never -Z
    assert "-Z" not in default


def test_nano_precision_asks_tcpdump_for_nanosecond_files() -> None:
    micro = tcpdump_argv(validate_data({}).capture, "tcp", Path("/w"), 1)
    assert not any(a.startswith("--time-stamp-precision") for a in micro)  # tcpdump's default
    cap = validate_data({"capture": {"timestamp_precision": "nano"}}).capture
    nano = tcpdump_argv(cap, "tcp", Path("/w"), 1)
    assert "--time-stamp-precision=nano" in nano[: nano.index("--")]  # an option, not filter
    assert nano[nano.index("--") + 1 :] == ["tcp"]
    with pytest.raises(ConfigError, match="timestamp_precision"):
        validate_data({"capture": {"timestamp_precision": "pico"}})


def test_aligned_files_are_named_for_their_boundary_and_never_rotated_by_tcpdump() -> None:
    assert validate_data({}).capture.rotate_align  # the default: the same files on every host
    cap = validate_data(
        {"capture": {"interface": "eth1", "snaplen": 9000, "rotate_align": True}}
    ).capture
    boundary = datetime(2026, 11, 26, 12, 10, tzinfo=UTC).timestamp()
    argv = tcpdump_argv(cap, "", Path("/w"), 8, None, boundary)
    assert "-G" not in argv  # tcpdump -G would count from its own file open
    assert argv[argv.index("-w") + 1] == "/w/g000008-20261126T121000-eth1.pcap"
    assert argv[argv.index("-C") + 1] == "1000"  # rotate_megabytes still cuts earlier


def test_filter_of_a_missing_interface_is_compiled_for_ethernet() -> None:
    cap = validate_data({"capture": {"interface": "rcNoSuch0"}}).capture
    argv = compile_argv(cap, "tcp")
    assert argv[argv.index("-y") + 1] == "EN10MB" and "-i" not in argv


def test_counter_lines_of_tcpdump_4_99() -> None:
    usr1 = (
        "tcpdump: 5374 packets captured, 5375 packets received by filter, "
        "1 packet dropped by kernel"
    )
    assert parse_counters(usr1) == {"captured": 5374, "received": 5375, "kernel_drops": 1}
    assert parse_counters("7 packets dropped by interface") == {"interface_drops": 7}
    assert parse_counters("tcpdump: listening on eth0, link-type EN10MB") == {}
    c = Counters()
    c.update(parse_counters(usr1))
    assert c.drops == 1
    assert drop_rate(Counters(), Counters(100, 100, 10, 0)) == 0.1
    assert drop_rate(Counters(100, 100, 10, 0), Counters(100, 100, 10, 0)) == 0.0


def test_tcpdump_chatter_is_not_a_problem() -> None:
    from rollcap.capture.tcpdump import is_chatter

    assert is_chatter("tcpdump: data link type LINUX_SLL2")
    assert is_chatter("tcpdump: listening on any, link-type LINUX_SLL2 (Linux cooked v2), "
                      "snapshot length 262144 bytes")  # fmt: skip
    # tcpdump's setuid(getuid()) refused by the unit's SystemCallFilter=: it runs
    # as our user already (seen on Debian 13)
    assert is_chatter("Warning: setgid/setuid failed !")
    assert not is_chatter("tcpdump: pcap_loop: The interface disappeared")
    assert not is_chatter("tcpdump: eth9: No such device exists")


def test_resolve_refuses_scoped_ipv6_and_returns_parsed_addresses() -> None:
    assert resolve("fe80::1%eth0") == []  # a filter cannot name the scope
    assert resolve("10.1.2.3") == [ipaddress.ip_address("10.1.2.3")]
    assert all(isinstance(a, ipaddress.IPv4Address | ipaddress.IPv6Address)
               for a in resolve("localhost"))  # fmt: skip
    with pytest.raises(ValueError, match="port"):
        exclusion_clauses([(ipaddress.ip_address("10.0.0.1"), 70000)])


def test_a_filter_compile_that_hangs_is_a_one_line_config_error(tmp_path: Path) -> None:
    """tcpdump -d stuck (e.g. resolving a host name in the filter) must not end in a
    TimeoutExpired traceback (check-config, start) or a crash out of a reload."""
    slow = tmp_path / "tcpdump"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    cap = validate_data(
        {"capture": {"interface": "rcNoSuch0", "filter": "tcp", "tcpdump_path": str(slow)}}
    ).capture
    with pytest.raises(ConfigError) as e:
        check_config_filter(cap, timeout=0.5)
    assert e.value.exit_code == 78 and "did not finish" in str(e.value)
