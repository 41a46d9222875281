"""`rollcap keep --fleet` and `--status` on the command line: what an operator
types, against a file:// archive (the same Storage calls as S3)."""

from __future__ import annotations

import json
from pathlib import Path

from rollcap.config.schema import OffloadConfig
from rollcap.keep import fleet
from rollcap.keep.request import KeepOutcome
from rollcap.storage.local import LocalStorage
from tests.support.cli import rollcap


def _config(tmp: Path) -> Path:
    (tmp / "archive").mkdir()
    cfg = tmp / "rollcap.toml"
    cfg.write_text(f'[spool]\ndirectory = "{tmp / "spool"}"\n'
                   f'[offload]\ndestination = "file://{tmp / "archive"}"\n')  # fmt: skip
    return cfg


def test_a_request_then_its_status(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    r = rollcap("keep", "--config", str(cfg), "--fleet", "--host", "web*", "--host", "db1",
                "--since", "-30m", "--reason", "INC-42")  # fmt: skip
    assert r.returncode == 0, r.stderr
    rid = r.stdout.strip()
    body = json.loads((tmp_path / "archive" / "_requests" / f"{rid}.json").read_text())
    assert body["hosts"] == ["web*", "db1"] and body["until_ns"] - body["since_ns"] == 1800 * 10**9
    assert body["expires_ns"] - body["created_ns"] == 24 * 3600 * 10**9
    req = fleet.FleetRequest.model_validate_json(json.dumps(body))
    st = LocalStorage(OffloadConfig(destination=f"file://{tmp_path / 'archive'}"))
    fleet.write_ack(st, "", fleet.make_ack(req, "web1", KeepOutcome(rid, 2, 200)))
    s = rollcap("keep", "--config", str(cfg), "--status", rid)
    assert s.returncode == 0, s.stderr  # every host known has answered
    assert "shipped: 1\n  web1: 2 files, 200 bytes" in s.stdout
    assert "not answered: 0" in s.stdout


def test_bad_input_gets_one_line_naming_it(tmp_path: Path) -> None:
    cfg = str(_config(tmp_path))
    cases = [
        (("--fleet", "--host", "web[1]", "--since", "-5m", "--reason", "x"), "--host 'web[1]'"),
        (("--host", "web1", "--since", "-5m", "--reason", "x"), "only with --fleet"),
        (("--fleet", "--since", "-5m"), "needs --reason"),
        (("--fleet", "--since", "-25h", "--reason", "x"), "longer than 24 h"),
        (("--fleet", "--since", "-5m", "--reason", "x", "--expires", "8d"), "at most 7 days"),
        (("--status", "nope"), "no fleet keep request nope"),
        (("--status", "../x"), "request id '../x'"),
    ]
    for args, words in cases:
        r = rollcap("keep", "--config", cfg, *args)
        assert r.returncode in (1, 2), (args, r.stderr)
        assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
    assert not (tmp_path / "archive" / "_requests").exists() or not any(
        (tmp_path / "archive" / "_requests").iterdir())
