"""Bash completion, generated from the parser: every subcommand and every option
completes, choices and hosts too; run through bash itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rollcap.cli import COMMANDS, build_parser
from rollcap.completion import render_bash

REPO = Path(__file__).resolve().parents[2]
HARNESS = """
source "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _rollcap
printf '%s\\n' "${COMPREPLY[@]}"
"""

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("completion") / "rollcap"
    p.write_text(render_bash(build_parser()))
    return p


def complete(script: Path, *words: str) -> set[str]:
    r = subprocess.run(["bash", "-c", HARNESS, "bash", str(script), *words],
                       capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert r.stderr == ""
    return set(r.stdout.split())


def test_every_subcommand_completes(script: Path) -> None:
    assert complete(script, "rollcap", "") == {*COMMANDS, "--help", "--version"}
    assert complete(script, "rollcap", "ch") == {"check-config", "check-destination"}


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_option_of_every_subcommand_completes(script: Path, cmd: str) -> None:
    opts = {o for a in dict(_sub_actions())[cmd] for o in a.option_strings}
    assert opts and "--help" in opts
    assert complete(script, "rollcap", cmd, "-") == opts
    assert complete(script, "rollcap", "--version", cmd, "--c") == {
        o for o in opts if o.startswith("--c")
    }


def _sub_actions() -> list[tuple[str, list[object]]]:
    import argparse

    for a in build_parser()._actions:
        if isinstance(a, argparse._SubParsersAction):
            return [(n, list(p._actions)) for n, p in a.choices.items()]
    raise AssertionError("no subcommands")


def test_values_choices_files_and_interfaces(script: Path, tmp_path: Path) -> None:
    assert complete(script, "rollcap", "config-docs", "--format", "") == {
        "sample", "markdown", "man"}
    assert complete(script, "rollcap", "man", "") == {"rollcap", "rollcap.toml"}
    assert complete(script, "rollcap", "fetch", "-i", "l") == {"lo"}
    (tmp_path / "fleet.toml").write_text("")
    assert complete(script, "rollcap", "list", "--config", f"{tmp_path}/fl") == {
        f"{tmp_path}/fleet.toml"}
    assert complete(script, "rollcap", "fetch", "-w", f"{tmp_path}/f") == {
        f"{tmp_path}/fleet.toml"}
    assert complete(script, "rollcap", "list", "--since", "") == set()  # a time: no guess


def test_hosts_come_from_the_configs_destination(script: Path, tmp_path: Path) -> None:
    """-H offers this host and the hosts below a file:// destination's prefix."""
    archive = tmp_path / "archive"
    for h in ("web1", "db2", "_index", ".hidden"):
        (archive / h).mkdir(parents=True)
    cfg = tmp_path / "rollcap.toml"
    cfg.write_text(f'[capture]\nhostname = "me"\n[offload]\ndestination = "file://{archive}"\n')
    bindir = tmp_path / "bin"
    bindir.mkdir()
    rollcap = bindir / "rollcap"  # what the completion runs: the rollcap on the line
    rollcap.write_text(f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m rollcap \"$@\"\n")
    rollcap.chmod(0o755)
    got = complete(script, str(rollcap), "fetch", "--config", str(cfg), "-H", "")
    assert got == {"me", "web1", "db2"}
    assert complete(script, str(rollcap), "list", "--config", str(cfg), "-H", "w") == {"web1"}
    # an unreadable config: no hosts, no noise on the terminal
    assert complete(script, str(rollcap), "list", "--config", "/nonexistent", "-H", "") == set()


def test_rollcap_completion_prints_the_script() -> None:
    r = subprocess.run([sys.executable, "-m", "rollcap", "completion", "bash"], cwd=REPO,
                       capture_output=True, text=True, timeout=60, check=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert r.stdout == render_bash(build_parser())
    assert subprocess.run(["bash", "-n"], input=r.stdout, text=True, check=False).returncode == 0
