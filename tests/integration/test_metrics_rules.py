"""The shipped alert rules load in Prometheus (promtool check rules) and each
alert fires, and stays quiet, when its unit tests say (promtool test rules)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "packaging" / "prometheus" / "rollcap.rules.yml"
RULE_TESTS = REPO / "tests" / "data" / "prometheus" / "rollcap_rules_test.yml"
ALERTS = (
    "RollcapKernelDrops", "RollcapBacklogGrowing", "RollcapNoUpload", "RollcapDestinationDown",
    "RollcapSpoolNearlyFull", "RollcapCaptureDown", "RollcapOffloadDown",
)  # fmt: skip


def _promtool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is not installed (Debian package prometheus, .ci/packages-test.txt)")
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True)


def test_rules_are_valid() -> None:
    r = _promtool("check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in r.stdout


def test_every_alert_has_unit_tests_that_pass() -> None:
    text = RULE_TESTS.read_text()
    for alert in ALERTS:
        assert f"alertname: {alert}" in text, f"{alert} has no promtool unit test"
        assert f"alert: {alert}" in RULES.read_text()
    r = _promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout
