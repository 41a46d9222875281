"""A command line imports its own command only: `rollcap keep` (trigger to
durable pin, goal 1 s) and `rollcap --version` never load the heavy libraries
other commands need (bench/cli_start.py measures the time)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration.capture_daemon import REPO

HEAVY = ("numpy", "boto3", "botocore", "prometheus_client", "duckdb", "pyarrow")
PROBE = """
import json, runpy, sys
sys.argv = ["rollcap", *sys.argv[1:]]
try:
    runpy.run_module("rollcap", run_name="__main__")
except SystemExit:
    pass
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("LOADED", json.dumps([heavy, "pydantic" in sys.modules]), file=sys.stderr)
"""


def _loaded(*argv: str) -> tuple[list[str], bool]:
    r = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv], cwd=REPO,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    line = [x for x in r.stderr.splitlines() if x.startswith("LOADED")][-1]
    heavy, pydantic = json.loads(line.removeprefix("LOADED "))
    return heavy, pydantic


def test_version_loads_no_command() -> None:
    assert _loaded("--version") == ([], False)


@pytest.mark.parametrize("argv", [["keep", "--help"], ["status", "--help"], ["fetch", "--help"]])
def test_a_command_loads_no_other_commands_libraries(argv: list[str]) -> None:
    assert _loaded(*argv)[0] == []


def test_help_still_lists_every_command() -> None:
    r = subprocess.run([sys.executable, "-m", "rollcap", "--help"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    for name in ("capture", "offload", "keep", "flows", "check-destination", "completion"):
        assert name in r.stdout
