"""The window and host/interface arguments list, fetch and hold share, through the
real `rollcap` entry point where the operator's experience is the point."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rollcap.cli import build_parser
from rollcap.retrieve.timeexpr import parse_time_ns
from rollcap.timestamps import NS
from tests.support.cli import rollcap


def _config(tmp_path: Path) -> Path:
    (tmp_path / "archive").mkdir()
    cfg = tmp_path / "rollcap.toml"
    cfg.write_text(
        f'[spool]\ndirectory = "{tmp_path / "spool"}"\n'
        f'[offload]\ndestination = "file://{tmp_path / "archive"}"\n'
    )
    return cfg


@pytest.mark.parametrize(
    "since", ["-10min", "-5m", "-1h30m", "-90s", "-5 min", "10m", "10 min ago", "+1h", "09:30"]
)
def test_since_takes_what_operators_type_as_a_value(since: str) -> None:
    a = build_parser().parse_args(["list", "--since", since, "--until", "-1MIN"])
    assert (a.since, a.until) == (since, "-1MIN")


def test_list_defaults_to_the_last_hour(tmp_path: Path) -> None:
    r = rollcap("list", "--config", str(_config(tmp_path)))
    assert r.returncode == 1, r.stderr  # nothing in an empty archive
    m = re.search(r"no captures between (\S+) and (\S+) in", r.stderr)
    assert m, r.stderr
    now = datetime.now(UTC)
    start, end = (parse_time_ns(t, now=now) for t in m.groups())
    assert end - start == 3600 * NS


@pytest.mark.parametrize("cmd", [["fetch", "-o", "x.pcap"], ["hold"]])
def test_fetch_and_hold_need_a_window(cmd: list[str], tmp_path: Path) -> None:
    r = rollcap(*cmd, "--config", str(_config(tmp_path)))
    assert r.returncode == 2
    assert r.stderr == (
        f"rollcap: {cmd[0]} needs a time window: --since TIME [--until TIME], or --around "
        "TIME [--before 5m] [--after 5m] (e.g. --since 10m)\n"
    )
    assert not (tmp_path / "x.pcap").exists()


def test_plain_minus_form_and_bad_input_on_the_command_line(tmp_path: Path) -> None:
    cfg = str(_config(tmp_path))
    r = rollcap("list", "--since", "-10min", "--config", cfg)
    assert r.returncode == 1 and "no captures between" in r.stderr, r.stderr
    r = rollcap("list", "--since", "15", "--config", cfg)
    assert r.returncode == 2
    assert r.stderr.startswith("rollcap: --since: cannot read '15' (a number without a unit")
    assert r.stderr.count("\n") == 1
    r = rollcap("list", "--around", "12:00", "--since", "1h", "--config", cfg)
    assert (r.returncode, r.stderr.count("\n")) == (2, 1)
    assert "--around with --since: give one window" in r.stderr
