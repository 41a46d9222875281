"""The `rollcap` command line."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from rollcap import __version__
from rollcap.cli import COMMANDS as CLI_COMMANDS
from rollcap.cli import build_parser
from tests.support.cli import rollcap, run_into_closed_pipe

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ["capture", "offload", "check-config", "reload", "status", "rotate", "list", "fetch",
            "hold", "check-destination", "link-metrics"]  # fmt: skip


def test_help_lists_every_command() -> None:
    r = rollcap("--help")
    assert r.returncode == 0
    for cmd in COMMANDS:
        assert f"    {cmd}" in r.stdout, cmd


def test_version() -> None:
    r = rollcap("--version")
    assert (r.returncode, r.stdout.strip()) == (0, f"rollcap {__version__}")


@pytest.mark.parametrize("cmd", [*COMMANDS, "config-docs", "man", "completion"])
def test_every_command_says_what_it_does(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`rollcap CMD --help` explains the command beyond its one-line summary."""
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([cmd, "--help"])
    assert done.value.code == 0
    usage, _, rest = capsys.readouterr().out.partition("\n\n")
    assert usage.startswith(f"usage: rollcap {cmd}")
    first = rest.split("\n\n", 1)[0]
    assert not first.startswith(("positional arguments:", "options:")), rest
    assert len(first.split()) >= 10, first


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_takes_config(cmd: str) -> None:
    extra = ["--since", "1h"] if cmd in ("list", "fetch", "hold") else []
    extra += ["-o", "x.pcap"] if cmd == "fetch" else []
    args = build_parser().parse_args([cmd, "--config", "/x.toml", *extra])
    assert args.config == "/x.toml"


@pytest.mark.parametrize("cmd", ["capture", "offload", "check-config"])
def test_bad_config_exits_78_before_anything_starts(cmd: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[capture]\nrotate_seconds = 0\n")
    r = rollcap(cmd, "--config", str(bad))
    assert r.returncode == 78
    assert r.stderr == (f"rollcap: {bad}: capture.rotate_seconds: must be at least 10, got 0\n")


def test_default_path_is_etc_rollcap_toml() -> None:
    if Path("/etc/rollcap.toml").exists():
        pytest.skip("/etc/rollcap.toml exists on this machine")
    r = rollcap("check-config")
    assert (r.returncode, r.stderr) == (
        78,
        "rollcap: /etc/rollcap.toml: config file not found (name another with --config PATH "
        "or $ROLLCAP_CONFIG)\n",
    )


def test_config_flag_beats_environment(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text("")
    r = rollcap("check-config", "--config", str(good), env={"ROLLCAP_CONFIG": "/nonexistent"})
    assert (r.returncode, r.stdout) == (0, f"{good}: OK\n")


def test_unknown_command_is_a_usage_error() -> None:
    r = rollcap("captur")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_a_closed_pipe_ends_quietly_with_141(tmp_path: Path) -> None:
    """The one rule (rollcap.cli): the reader went away; no traceback, 128 + SIGPIPE."""
    cfg = tmp_path / "rollcap.toml"
    cfg.write_text(f'[spool]\ndirectory = "{tmp_path / "spool"}"\n')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = run_into_closed_pipe(cfg, env, "check-config", "--show", timeout=60)
    # its warnings (no group rollcap here) go to stderr as ever, and nothing else
    assert r.returncode == 141, r.stderr
    assert all(ln.startswith("rollcap: warning: ") for ln in r.stderr.splitlines()), r.stderr


def test_a_broken_pipe_that_is_not_stdout_is_an_error(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str],
                                                      ) -> None:  # fmt: skip
    """A child's pipe breaking is a failure with one line, not a quiet 141."""
    from rollcap import cli
    from rollcap.commands import config_docs

    def child_died(_args: object) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(config_docs, "run", child_died)
    assert cli.main(["config-docs"]) == 1
    assert capsys.readouterr().err == "rollcap: [Errno 32] Broken pipe\n"


def _rollcap_commands(example: str) -> list[list[str]]:
    """The rollcap command lines in an example (after VAR=value, between | and &&)."""
    out = []
    for part in re.split(r"\s*(?:\||&&|>)\s*", example):
        words = shlex.split(part)
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words.pop(0)
        if words[:1] == ["rollcap"]:
            out.append(words[1:])
    return out


@pytest.mark.parametrize("cmd", [*COMMANDS, "config-docs", "man", "completion"])
def test_every_command_shows_two_examples_that_parse(
    cmd: str, capsys: pytest.CaptureFixture[str]
) -> None:
    command = CLI_COMMANDS[cmd]
    assert len(command.EXAMPLES) >= 2
    for line, _note in command.EXAMPLES:
        argvs = _rollcap_commands(line)
        assert argvs and argvs[0][0] == cmd, line
        for argv in argvs:
            build_parser().parse_args(argv)  # exits 2 on a stale example
    with pytest.raises(SystemExit):
        build_parser().parse_args([cmd, "--help"])
    help_text = capsys.readouterr().out
    epilog = help_text.split("\nexamples:\n", 1)[1]
    for line, _note in command.EXAMPLES:
        assert f"  {line}" in epilog


def test_the_command_table_loads_without_numpy() -> None:
    """Every `rollcap` run starts the table: numpy (the summariser's) would add its
    start-up to each, and the package build renders completion and man page from
    the table where numpy is not installed."""
    import subprocess
    import sys

    code = "import sys, rollcap.cli as c; c.build_parser(); print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
