"""Case 8: hostile configs are refused with one clear line and exit 78, or handled safely.

Each config goes to `rollcap check-config` and to the daemon that would use
it; a daemon that starts anyway is killed after a timeout and fails the case.
Shell metacharacters in a filter would create /tmp/pwned-TOKEN if any shell
ever saw them.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.cfg import dump_toml, new_spool_dir
from tests.faults.proc import run_rollcap

TOKEN = secrets.token_hex(4)
PWNED = Path(f"/tmp/pwned-{TOKEN}")
SECRET = "S3cr3tV4lue" + TOKEN
NEVER = Path(f"/tmp/rollcap-faults-never-{TOKEN}")  # an archive no attack may reach

# (name, sections, daemons that must refuse it, text the message must contain);
# `rollcap check-config` must refuse every one of them too (it compiles the
# filter with tcpdump -d, as capture does).
ATTACKS: list[tuple[str, dict[str, dict[str, Any]], tuple[str, ...], str]] = [
    ("filter with ; touch", {"capture": {"filter": f"tcp; touch {PWNED}"}}, ("capture",), "filter"),
    ("filter with $(touch)", {"capture": {"filter": f"$(touch {PWNED})"}}, ("capture",), "filter"),
    ("filter with backticks", {"capture": {"filter": f"`touch {PWNED}`"}}, ("capture",), "filter"),
    (
        "filter with | sh",
        {"capture": {"filter": f"tcp | sh -c 'touch {PWNED}'"}},
        ("capture",),
        "filter",
    ),
    ("filter with newline", {"capture": {"filter": f"tcp\ntouch {PWNED}"}}, ("capture",), "filter"),
    (
        "interface with ;",
        {"capture": {"interface": f"lo;touch {PWNED}"}},
        ("capture",),
        "capture.interface",
    ),
    ("interface with $()", {"capture": {"interface": "$(id)"}}, ("capture",), "capture.interface"),
    ("interface path", {"capture": {"interface": "../../etc"}}, ("capture",), "capture.interface"),
    (
        "hostname ../",
        {"capture": {"hostname": "../../etc"}},
        ("capture", "offload"),
        "capture.hostname",
    ),
    (
        "hostname with /",
        {"capture": {"hostname": "a/b"}},
        ("capture", "offload"),
        "capture.hostname",
    ),
    (
        "key template ../",
        {"offload": {"key_template": "{prefix}/../{host}/{start}-{seq}{ext}"}},
        ("offload",),
        "offload.key_template",
    ),
    (
        "key template absolute",
        {"offload": {"key_template": "/etc/{host}/{start}-{seq}{ext}"}},
        ("offload",),
        "offload.key_template",
    ),
    (
        "key template without prefix",
        {"offload": {"key_template": "{host}/{start}-{seq}{ext}"}},
        ("offload",),
        "offload.key_template",
    ),
    (
        "key template attribute access",
        {"offload": {"key_template": "{prefix}/{start.__class__}/{host}-{seq}{ext}"}},
        ("offload",),
        "offload.key_template",
    ),
    (
        "key template huge width",
        {"offload": {"key_template": "{prefix}/{host}/{start:%Y}/{seq:0999999999}{ext}"}},
        ("offload",),
        "offload.key_template",
    ),
    (
        "destination with credentials",
        {"offload": {"destination": f"s3://AKIAX:{SECRET}@bucket/p"}},
        ("offload",),
        "offload.destination",
    ),
    (
        "endpoint with credentials",
        {"offload": {"endpoint_url": f"http://user:{SECRET}@127.0.0.1:9"}},
        ("offload",),
        "offload.endpoint_url",
    ),
    (
        "destination file:///",
        {"offload": {"destination": "file:///"}},
        ("offload",),
        "offload.destination",
    ),
    (
        "destination file:// with ..",
        {"offload": {"destination": "file:///var/../etc"}},
        ("offload",),
        "offload.destination",
    ),
    (
        "spool directory relative",
        {"spool": {"directory": "spool"}},
        ("capture", "offload"),
        "spool.directory",
    ),
    (
        "rotate_seconds 0",
        {"capture": {"rotate_seconds": 0}},
        ("capture",),
        "capture.rotate_seconds",
    ),
    (
        "rotate_seconds 2**62",
        {"capture": {"rotate_seconds": 2**62}},
        ("capture",),
        "capture.rotate_seconds",
    ),
    ("snaplen -1", {"capture": {"snaplen": -1}}, ("capture",), "capture.snaplen"),
    (
        "max_megabytes 1e308",
        {"spool": {"max_megabytes": 1e308}},
        ("capture", "offload"),
        "spool.max_megabytes",
    ),
    (
        "min_free_percent nan",
        {"spool": {"min_free_percent": float("nan")}},
        ("capture",),
        "spool.min_free_percent",
    ),
    (
        "min_free_percent inf",
        {"spool": {"min_free_percent": float("inf")}},
        ("capture",),
        "spool.min_free_percent",
    ),
    (
        "concurrency 1000000",
        {"offload": {"concurrency": 1_000_000}},
        ("offload",),
        "offload.concurrency",
    ),
    (
        "rotate_megabytes 2**63-1",
        {"capture": {"rotate_megabytes": 2**63 - 1}},
        ("capture",),
        "capture.rotate_megabytes",
    ),
    (
        "budget below two files",
        {"capture": {"rotate_megabytes": 100}, "spool": {"max_megabytes": 100}},
        ("capture",),
        "spool.max_megabytes",
    ),
]


@pytest.fixture(scope="module")
def spool_dir() -> Iterator[Path]:
    d = new_spool_dir()
    yield d
    shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(NEVER, ignore_errors=True)  # in case a daemon got as far as creating it


def _config(tmp_path: Path, spool: Path, sections: dict[str, dict[str, Any]]) -> Path:
    data: dict[str, dict[str, Any]] = {
        "capture": {"interface": "lo", "hostname": "attack", "rotate_seconds": 10,
                    "rotate_megabytes": 1},
        "spool": {"directory": str(spool), "group": "root", "max_megabytes": 10},
        "offload": {"destination": f"file://{NEVER}"},
    }  # fmt: skip
    for sec, vals in sections.items():
        data.setdefault(sec, {}).update(vals)
    p = tmp_path / "attack.toml"
    p.write_text(dump_toml(data))
    return p


@pytest.mark.case("8. config attacks")
@pytest.mark.hard_timeout(300)
def test_config_attacks_refused(tmp_path: Path, spool_dir: Path, reliability) -> None:  # type: ignore[no-untyped-def]
    failures: list[str] = []
    runs = 0
    for name, sections, daemons, must_name in ATTACKS:
        cfg = _config(tmp_path, spool_dir, sections)
        for args in ([c, "--config", str(cfg)] for c in ("check-config", *daemons)):
            runs += 1
            r = run_rollcap(args, timeout=25)
            err = r.stderr.strip()
            lines = err.splitlines()
            what = f"{name} / {args[0]}"
            if r.returncode != 78:
                failures.append(f"{what}: exit {r.returncode}, expected 78; {err[-300:]!r}")
                continue
            if "Traceback" in err:
                failures.append(f"{what}: traceback instead of a clear line")
            if not any(must_name in ln for ln in lines):
                failures.append(f"{what}: no line names {must_name!r}: {err[:300]!r}")
            if any(len(ln) > 400 for ln in lines):
                failures.append(f"{what}: a {max(map(len, lines))}-character error line")
            if SECRET in err or SECRET in r.stdout:
                failures.append(f"{what}: the secret from the URL was echoed")
    pwned = PWNED.exists()
    reliability.record(
        runs=runs, notes=f"{len(ATTACKS)} hostile configs x (check-config + the daemon(s) that "
        f"use them); {len(failures)} not refused cleanly; shell ran: {'YES' if pwned else 'no'}",
    )  # fmt: skip
    if pwned:
        PWNED.unlink()
    assert not pwned, "a shell interpreted the filter"
    assert not failures, "\n".join(failures)
