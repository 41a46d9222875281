"""The schema, the shipped sample config and docs/config.md can never disagree."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from rollcap.config.load import parse_config
from rollcap.config.render import render_manpage, render_markdown, render_sample
from rollcap.config.schema import RollcapConfig
from rollcap.config.show import dump_toml

REPO = Path(__file__).resolve().parents[3]
REGENERATE = "regenerate: python3 -m rollcap config-docs{} > {}"


def _rollcap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollcap", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_shipped_sample_equals_schema() -> None:
    shipped = (REPO / "config" / "rollcap.toml").read_text()
    assert shipped == render_sample(), REGENERATE.format("", "config/rollcap.toml")


def test_shipped_markdown_equals_schema() -> None:
    shipped = (REPO / "docs" / "config.md").read_text()
    assert shipped == render_markdown(), REGENERATE.format(" --format markdown", "docs/config.md")


def test_sample_sets_every_field_to_its_default() -> None:
    data = tomllib.loads(render_sample())
    assert RollcapConfig.model_validate(data) == RollcapConfig()
    for section, field in RollcapConfig.model_fields.items():
        model = field.annotation
        assert isinstance(model, type)
        assert set(data[section]) == set(model.model_fields)  # type: ignore[attr-defined]


def test_every_field_is_documented() -> None:
    md = render_markdown()
    man = render_manpage("0")
    for section, field in RollcapConfig.model_fields.items():
        assert f"## [{section}]" in md
        model = field.annotation
        for name, sub in model.model_fields.items():  # type: ignore[union-attr]
            assert sub.description, f"{section}.{name} has no description"
            assert f"| `{name}` |" in md
            assert f"\\fB{name}\\fR".replace("-", "\\-") in man


def test_config_docs_cli_prints_the_same() -> None:
    assert _rollcap("config-docs").stdout == render_sample()
    assert _rollcap("config-docs", "--format", "markdown").stdout == render_markdown()
    assert _rollcap("config-docs", "--format", "man").stdout.startswith(".TH ROLLCAP.TOML 5")


def test_show_round_trips(tmp_path: Path) -> None:
    """--show prints the effective config; feeding it back changes nothing."""
    src = tmp_path / "in.toml"
    src.write_text(
        '[capture]\ninterface = "lo"\nrotate_seconds = 30\n'
        '[spool]\ndirectory = "/srv/rc"\nmin_free_percent = 5\n'
        '[offload]\ndestination = "s3://bucket/pre/fix"\nendpoint_url = "http://127.0.0.1:8333"\n'
    )
    first = _rollcap("check-config", str(src), "--show")
    assert first.returncode == 0, first.stderr
    again = tmp_path / "again.toml"
    again.write_text(first.stdout)
    second = _rollcap("check-config", str(again), "--show")
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    cfg = parse_config(first.stdout)
    assert cfg == parse_config(src.read_text())
    assert cfg.capture.interface == "lo"
    assert cfg.offload.bucket == "bucket" and cfg.offload.prefix == "pre/fix"
    assert cfg.spool.max_megabytes == RollcapConfig().spool.max_megabytes  # default filled in
    assert dump_toml(cfg) == first.stdout
