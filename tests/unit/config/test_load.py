"""Malformed configs through the real CLI: one line each, naming key, rule and value; exit 78."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
EX_CONFIG = 78


def check_config(*args: str, preexec: object = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("ROLLCAP_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "rollcap", "check-config", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=preexec,  # type: ignore[arg-type]
    )


# (id, file content, substrings the single error line must contain)
MALFORMED: list[tuple[str, str, list[str]]] = [
    # wrong types: TOML types are taken literally (no "65535" -> 65535 coercion)
    (
        "int-as-string",
        '[capture]\nsnaplen = "65535"',
        ["capture.snaplen:", "whole number", 'got "65535"'],
    ),
    (
        "int-as-float",
        "[capture]\nrotate_seconds = 10.5",
        ["capture.rotate_seconds:", "whole number", "got 10.5"],
    ),
    (
        "int-as-bool",
        "[offload]\nconcurrency = true",
        ["offload.concurrency:", "whole number", "got true"],
    ),
    (
        "bool-as-string",
        '[capture]\nexclude_offload_traffic = "yes"',
        ["capture.exclude_offload_traffic:", "true or false", 'got "yes"'],
    ),
    (
        "float-as-string",
        '[spool]\nmin_free_percent = "10"',
        ["spool.min_free_percent:", "must be a number", 'got "10"'],
    ),
    (
        "string-as-int",
        "[capture]\ninterface = 3",
        ["capture.interface:", "must be a string", "got 3"],
    ),
    ("section-as-value", "capture = 5", ["capture:", "must be a table", "got 5"]),
    ("section-as-array", '[[spool]]\ndirectory = "/x"', ["spool:", "must be a table"]),
    # unknown and misspelled keys
    (
        "misspelled-key",
        "[capture]\nrotate_second = 60",
        ["capture.rotate_second: unknown key", "did you mean 'capture.rotate_seconds'"],
    ),
    (
        "misspelled-section",
        '[ofload]\ndestination = "file:///x"',
        ["ofload: unknown key", "did you mean 'offload'"],
    ),
    ("unknown-key", "[log]\ncolour = true", ["log.colour: unknown key", "allowed: level"]),
    (
        "unknown-top-key",
        'hostname = "x"',
        ["hostname: unknown key", "allowed: capture, spool, offload, log"],
    ),
    # out-of-range numbers
    (
        "rotate-too-short",
        "[capture]\nrotate_seconds = 0",
        ["capture.rotate_seconds: must be at least 10, got 0"],
    ),
    (
        "snaplen-too-big",
        "[capture]\nsnaplen = 300000",
        ["capture.snaplen: must be at most 262144, got 300000"],
    ),
    (
        "negative-concurrency",
        "[offload]\nconcurrency = -1",
        ["offload.concurrency: must be at least 1, got -1"],
    ),
    (
        "free-percent-too-high",
        "[spool]\nmin_free_percent = 95.5",
        ["spool.min_free_percent: must be at most 90, got 95.5"],
    ),
    (
        "spool-smaller-than-two-files",
        "[capture]\nrotate_megabytes = 100\n[spool]\nmax_megabytes = 150",
        ["spool.max_megabytes:", "twice capture.rotate_megabytes", "got 150"],
    ),
    # bad URLs and paths
    (
        "destination-scheme",
        '[offload]\ndestination = "ftp://host/x"',
        ["offload.destination:", "s3://bucket/prefix", 'got "ftp://host/x"'],
    ),
    (
        "destination-relative-file",
        '[offload]\ndestination = "file://archive"',
        ["offload.destination:", "absolute path", 'got "file://archive"'],
    ),
    (
        "bucket-name",
        '[offload]\ndestination = "s3://My_Bucket/x"',
        ["offload.destination:", "bucket name", 'got "s3://My_Bucket/x"'],
    ),
    (
        "s3-prefix-dotdot",
        '[offload]\ndestination = "s3://bucket/a/../b"',
        ["offload.destination:", "no '..'", "got"],
    ),
    (
        "endpoint-scheme",
        '[offload]\nendpoint_url = "127.0.0.1:8333"',
        ["offload.endpoint_url:", "http:// or https://", 'got "127.0.0.1:8333"'],
    ),
    (
        "endpoint-port",
        '[offload]\nendpoint_url = "http://127.0.0.1:99999"',
        ["offload.endpoint_url:", "bad port", "got"],
    ),
    (
        "archive-inside-spool",
        '[spool]\ndirectory = "/srv/spool"\n[offload]\ndestination = "file:///srv/spool/archive"',
        ["offload.destination:", "must not be inside the spool"],
    ),
    (
        "spool-relative",
        '[spool]\ndirectory = "spool"',
        ["spool.directory:", "absolute path", 'got "spool"'],
    ),
    (
        "hostile-interface",
        '[capture]\ninterface = "eth0; rm -rf /"',
        ["capture.interface:", "interface name", "got"],
    ),
    (
        "filter-control-chars",
        '[capture]\nfilter = "port 80\\u0000"',
        ["capture.filter:", "control characters", "got"],
    ),
    (
        "key-template-escapes-prefix",
        '[offload]\nkey_template = "{host}/{start:%Y}/{seq}{ext}"',
        ["offload.key_template:", '"{prefix}/"', "got"],
    ),
    (
        "key-template-unknown-placeholder",
        '[offload]\nkey_template = "{prefix}/{hots}/{start:%Y}/{seq}"',
        ["offload.key_template:", "unknown placeholder {hots}", "{host}"],
    ),
    # bad enum values
    (
        "compression-enum",
        '[offload]\ncompression = "lz4"',
        ["offload.compression:", "'zstd', 'gzip' or 'none'", 'got "lz4"'],
    ),
    (
        "on-full-enum",
        '[spool]\non_full = "drop_oldest"',
        ["spool.on_full:", "'drop-oldest' or 'pause-capture'", 'got "drop_oldest"'],
    ),
    (
        "log-level-enum",
        '[log]\nlevel = "INFO"',
        ["log.level:", "'debug', 'info', 'warning' or 'error'", 'got "INFO"'],
    ),
    # TOML syntax errors name the line and column; duplicates are syntax errors in TOML
    (
        "toml-unclosed-table",
        "[capture\ninterface = 'lo'",
        ["line 1, column 9: TOML syntax error", "']'"],
    ),
    (
        "toml-bare-word",
        "[capture]\n\ninterface = eth0",
        ["line 3, column 13: TOML syntax error", "Invalid value"],
    ),
    (
        "toml-unterminated-string",
        '[capture]\nfilter = "port 80',
        ["line 2, column 18: TOML syntax error", "Illegal character"],
    ),
    (
        "duplicate-key",
        "[capture]\nsnaplen = 100\nsnaplen = 200",
        ["line 3, column", "duplicate key"],
    ),
    ("duplicate-table", "[log]\n[capture]\n[log]", ["line 3, column", "declared twice"]),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_config_exits_78_with_one_line(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = tmp_path / "rollcap.toml"
    path.write_text(text + "\n")
    r = check_config(str(path))
    assert r.returncode == EX_CONFIG, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"rollcap: {path}"), lines[0]
    for part in expected:
        assert part in lines[0], f"{part!r} not in {lines[0]!r}"
    assert r.stdout == ""


def test_at_least_25_distinct_malformed_configs() -> None:
    assert len({c[1] for c in MALFORMED}) >= 25


@pytest.mark.parametrize(
    "url",
    [
        "s3://AKIAEXAMPLE:hunter2secret@bucket/prefix",
        "s3://AKIAEXAMPLE:hunter2/secret@bucket/prefix",  # '/' in the secret
        "https://AKIAEXAMPLE:hunter2secret@s3.example.com",
        "https://AKIAEXAMPLE:hunter2/secret@s3.example.com:8333",
    ],
)
def test_credentials_in_url_are_refused_and_never_echoed(tmp_path: Path, url: str) -> None:
    key = "endpoint_url" if url.startswith("https") else "destination"
    path = tmp_path / "rollcap.toml"
    path.write_text(f'[offload]\n{key} = "{url}"\n')
    r = check_config(str(path))
    assert r.returncode == EX_CONFIG
    assert f"offload.{key}: credentials must not be written into the URL" in r.stderr
    assert "hunter2" not in r.stderr and "secret" not in r.stderr.replace("***", "")
    assert "AKIAEXAMPLE" not in r.stderr


def test_several_problems_one_line_each(tmp_path: Path) -> None:
    path = tmp_path / "rollcap.toml"
    path.write_text('[capture]\nsnaplen = 1\nrotate_seconds = 1\n[log]\nlevel = "loud"\n')
    r = check_config(str(path))
    assert r.returncode == EX_CONFIG
    lines = r.stderr.strip().splitlines()
    assert [ln.split(": ")[2] for ln in lines] == [
        "capture.snaplen",
        "capture.rotate_seconds",
        "log.level",
    ]


def test_missing_file(tmp_path: Path) -> None:
    r = check_config(str(tmp_path / "nope.toml"))
    assert r.returncode == EX_CONFIG
    assert r.stderr.strip() == f"rollcap: {tmp_path / 'nope.toml'}: config file not found"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    r = check_config(str(tmp_path))
    assert r.returncode == EX_CONFIG
    assert r.stderr.strip() == f"rollcap: {tmp_path}: not a regular file"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "rollcap.toml"
    path.write_bytes(b"[capture]\ninterface = '\xff'\n")
    r = check_config(str(path))
    assert r.returncode == EX_CONFIG
    assert "not UTF-8 text" in r.stderr


def _drop_dac_capabilities() -> None:
    """preexec for root: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding
    set, so the exec'd process is root without the permission bypass (mode 000 then fails)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop = 24
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "rollcap.toml"
    path.write_text("[log]\nlevel = 'info'\n")
    path.chmod(0)
    preexec = _drop_dac_capabilities if os.geteuid() == 0 else None
    r = check_config(str(path), preexec=preexec)
    assert r.returncode == EX_CONFIG, r.stderr
    assert r.stderr.strip() == f"rollcap: {path}: permission denied reading the config file"


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    path = tmp_path / "rollcap.toml"
    path.write_text("")
    r = check_config(str(path), "--show")
    assert r.returncode == 0, r.stderr
    from rollcap.config.schema import RollcapConfig
    from rollcap.config.show import dump_toml

    assert r.stdout == dump_toml(RollcapConfig())


def test_shipped_config_is_valid() -> None:
    r = check_config(str(REPO / "config" / "rollcap.toml"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith(": OK")


def test_rollcap_config_env_is_the_default_path(tmp_path: Path) -> None:
    path = tmp_path / "from-env.toml"
    path.write_text("[capture]\nsnaplen = 1\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "ROLLCAP_CONFIG": str(path)}
    r = subprocess.run(
        [sys.executable, "-m", "rollcap", "check-config"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == EX_CONFIG
    assert str(path) in r.stderr and "capture.snaplen" in r.stderr
