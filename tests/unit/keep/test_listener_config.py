"""[listener] through the real `rollcap check-config`: bad values are one line each."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.config.test_load import EX_CONFIG, check_config


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('listen = "9819"', "listener.listen:"),
        ('listen = "run/keep.sock"', "listener.listen:"),
        ('listen = "/run/../etc/keep.sock"', "a unix socket path: absolute, no '..'"),
        ('token_credential = "../s3-credentials"', "listener.token_credential: "),
        ("lookback_seconds = -1", "listener.lookback_seconds:"),
        ("max_window_seconds = 0", "listener.max_window_seconds:"),
        ("windows_per_hour = 0", "listener.windows_per_hour:"),
        ("enabled = 1", "listener.enabled:"),
        ("port = 9819", "listener.port:"),
    ],
)
def test_a_bad_listener_setting_is_one_line(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "rollcap.toml"
    path.write_text(f"[listener]\n{text}\n")
    r = check_config(str(path))
    assert r.returncode == EX_CONFIG, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert says in line, line


def test_good_listener_settings_pass(tmp_path: Path) -> None:
    path = tmp_path / "rollcap.toml"
    path.write_text('[listener]\nenabled = true\nlisten = "/run/rollcap-offload/keep.sock"\n'
                    'megabytes_per_day = "50G"\nreason_labels = ["instance"]\n')  # fmt: skip
    r = check_config(str(path))
    assert r.returncode == 0, r.stderr
