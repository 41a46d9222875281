"""capture.interface as a list, [capture.per_interface.NAME], and rotate_align's clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rollcap.capture import align
from rollcap.config.load import parse_config
from rollcap.errors import ConfigError


def _errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        parse_config(text)
    return e.value.problems


def test_one_interface_or_a_list() -> None:
    assert parse_config('[capture]\ninterface = "eth0"\n').capture.interfaces == ["eth0"]
    cfg = parse_config('[capture]\ninterface = ["eth0", "eth1"]\n')
    assert cfg.capture.interfaces == ["eth0", "eth1"]
    assert parse_config("").capture.interfaces == ["any"]


@pytest.mark.parametrize(
    ("value", "wanted"),
    [
        ("[]", "capture.interface: must name at least one interface, got []"),
        ('["eth0", "eth0"]', "capture.interface: must not name an interface twice"),
        ('["any", "eth0"]', 'capture.interface: "any" already captures every interface'),
        ('["eth0", "$(id)"]', 'capture.interface: "any" or interface names of 1-15'),
        ("[3]", "capture.interface: must be a string or a list of strings"),
        ("3", "capture.interface: must be a string or a list of strings"),
    ],
)
def test_bad_interface_lists_are_one_line_errors(value: str, wanted: str) -> None:
    (line,) = _errors(f"[capture]\ninterface = {value}\n")
    assert line.startswith(f"<config>: {wanted}"), line


def test_per_interface_overrides_filter_and_snaplen() -> None:
    cfg = parse_config(
        '[capture]\ninterface = ["eth0", "eth1"]\nfilter = "tcp"\nsnaplen = 2000\n'
        '[capture.per_interface.eth1]\nfilter = ""\nsnaplen = 128\n'
    )
    eth0, eth1 = (cfg.capture.for_interface(n) for n in ("eth0", "eth1"))
    assert (eth0.interface, eth0.filter, eth0.snaplen) == ("eth0", "tcp", 2000)
    assert (eth1.interface, eth1.filter, eth1.snaplen) == ("eth1", "", 128)  # "" = no filter
    assert eth1.per_interface == {} and eth1.rotate_seconds == cfg.capture.rotate_seconds


def test_per_interface_errors_name_the_key() -> None:
    head = '[capture]\ninterface = "eth0"\n'
    (line,) = _errors(head + "[capture.per_interface.eth9]\nsnaplen = 100\n")
    assert line == (
        "<config>: capture.per_interface.eth9: no interface 'eth9' in capture.interface (eth0)"
    )
    (line,) = _errors('[capture]\ninterface = "eth0"\n[capture.per_interface.eth0]\nsnaplen = 10\n')
    assert line.startswith("<config>: capture.per_interface.eth0.snaplen: must be at least 64")
    (line,) = _errors('[capture]\ninterface = "eth0"\n[capture.per_interface.eth0]\nbuffer = 1\n')
    assert line.startswith("<config>: capture.per_interface.eth0.buffer: unknown key")


def _t(h: int, m: int, s: float = 0) -> float:
    return datetime(2026, 11, 26, h, m, tzinfo=UTC).timestamp() + s


def test_aligned_files_end_on_utc_multiples_of_rotate_seconds() -> None:
    # the first file after a start runs to the next boundary: shorter
    assert align.boundary_after(_t(12, 3, 17.4), 600) == _t(12, 10)
    # a file opened on a boundary runs one whole period
    assert align.boundary_after(_t(12, 10), 600) == _t(12, 20)
    # started just before a boundary: the first file runs on to the following one
    assert align.boundary_after(_t(12, 9, 59), 600) == _t(12, 20)
    # the switch starts LEAD seconds early, so the old tcpdump stops on the boundary
    assert align.switch_due(_t(12, 10), 600, _t(12, 19, 50)) == pytest.approx(10 - align.LEAD)


def test_the_next_file_is_named_for_its_boundary_when_on_schedule() -> None:
    opened = _t(12, 10)
    on_time = _t(12, 20) - align.LEAD
    assert align.name_time(opened, 600, on_time) == _t(12, 20)
    assert align.name_time(opened, 600, _t(12, 20, 3)) == _t(12, 20)  # a busy loop: late
    # `rollcap rotate` in the middle of a period: the new file is named for now
    assert align.name_time(opened, 600, _t(12, 14, 5.5)) == _t(12, 14, 5)
