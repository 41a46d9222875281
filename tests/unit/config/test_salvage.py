"""status/list read what they can of a broken config (the daemons never do)."""

from __future__ import annotations

from pathlib import Path

from rollcap.config.salvage import load_for_reading


def test_valid_keys_kept_broken_ones_defaulted(tmp_path: Path) -> None:
    p = tmp_path / "rollcap.toml"
    p.write_text('[spool]\ndirectory = "/srv/spool"\nmax_megabytes = -5\n'
                 '[offload]\ndestination = "file:///srv/archive"\ncompresion = "zstd"\n'
                 '[capture]\ninterface = "eth1"\nrotate_seconds = 0\n')  # fmt: skip
    cfg, warnings = load_for_reading(p)
    assert cfg.spool.directory == "/srv/spool" and cfg.spool.max_megabytes > 0
    assert cfg.offload.destination == "file:///srv/archive"
    assert cfg.capture.interface == "eth1" and cfg.capture.rotate_seconds == 600
    assert any("compresion" in w for w in warnings) and any("rotate_seconds" in w for w in warnings)
    assert warnings[-1] == "using the file's valid keys and defaults for the rest"


def test_unreadable_or_not_toml_gives_defaults(tmp_path: Path) -> None:
    p = tmp_path / "rollcap.toml"
    p.write_text("[spool\n")
    cfg, warnings = load_for_reading(p)
    assert cfg.spool.directory == "/var/spool/rollcap" and "TOML syntax error" in warnings[0]
    cfg, warnings = load_for_reading(tmp_path / "missing.toml")
    assert "not found" in warnings[0] and warnings[-1] == "using the defaults for every key"


def test_a_valid_file_has_no_warnings(tmp_path: Path) -> None:
    p = tmp_path / "rollcap.toml"
    p.write_text('[capture]\ninterface = "lo"\n')
    cfg, warnings = load_for_reading(p)
    assert warnings == [] and cfg.capture.interface == "lo"
