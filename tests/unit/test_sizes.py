"""One rule for sizes: config keys in megabytes and --max-bytes take the same suffixes."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollcap.config.load import load_config
from rollcap.sizes import MB, parse_size
from tests.support.cli import rollcap


@pytest.mark.parametrize(
    ("text", "unit", "value"),
    [("1500", 1, 1500), ("500M", 1, 500 * MB), ("2g", 1, 2000 * MB), ("10KB", 1, 10_000),
     ("1.5T", 1, 1_500_000 * MB), ("20000", MB, 20000 * MB), ("20G", MB, 20000 * MB),
     (" 2 GB ", MB, 2000 * MB)],
)  # fmt: skip
def test_parse_size(text: str, unit: int, value: int) -> None:
    assert parse_size(text, unit=unit) == value


@pytest.mark.parametrize("text", ["", "G", "-5M", "5X", "2 G B", "1e9"])
def test_not_a_size(text: str) -> None:
    with pytest.raises(ValueError, match=r"^not a size; e\.g\. 500M, 2G"):
        parse_size(text)


def test_config_takes_the_suffixes_the_flags_take(tmp_path: Path) -> None:
    f = tmp_path / "rollcap.toml"
    f.write_text('[spool]\nmax_megabytes = "20G"\nquarantine_megabytes = 500\n'
                 '[capture]\nrotate_megabytes = "1G"\n')  # fmt: skip
    cfg = load_config(f)
    assert (cfg.spool.max_megabytes, cfg.spool.quarantine_megabytes) == (20000, 500)
    assert cfg.capture.rotate_megabytes == 1000


@pytest.mark.parametrize(
    ("value", "says"),
    [('"20.5K"', 'not a whole number of megabytes (millions of bytes), got "20.5K"'),
     ('"lots"', 'not a size; e.g. 500M, 2G, 1.5T (K, M, G, T: powers of 1000), got "lots"'),
     ('"5M"', "must be at least 10, got 5"), ("true", "must be a whole number, got true")],
)  # fmt: skip
def test_config_size_errors_are_one_line_naming_file_and_key(
    tmp_path: Path, value: str, says: str
) -> None:
    f = tmp_path / "rollcap.toml"
    f.write_text(f"[spool]\nmax_megabytes = {value}\n")
    r = rollcap("check-config", str(f))
    assert (r.returncode, r.stderr) == (78, f"rollcap: {f}: spool.max_megabytes: {says}\n")
