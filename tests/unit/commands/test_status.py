"""`rollcap status` on a spool that is not there says so (not "unreadable")."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import rollcap


def test_a_missing_spool_does_not_exist(tmp_path: Path) -> None:
    cfg = tmp_path / "rollcap.toml"
    cfg.write_text(f'[spool]\ndirectory = "{tmp_path / "no-spool"}"\n')
    out = rollcap("status", "--config", str(cfg)).stdout.splitlines()
    assert "  ready       does not exist" in out
    assert "  quarantine  does not exist" in out
    assert not any("unreadable" in line for line in out)


def test_short_status_names_only_what_needs_attention() -> None:
    """The default: a line per daemon, then a `!` line per problem, each with its cause."""
    from rollcap.commands.status import render_table

    now = 2_000_000_000.0
    report = {
        "capture": {"verdict": "degraded", "pid": 7, "age_seconds": 1, "problem": "paused",
                    "state": "paused", "interface": "eth0", "paused": True,
                    "pause_reason": "low free space", "packets_captured": 10,
                    "kernel_drops": 3, "last_drops": {"cause": "disk", "detail": "dirty pages"},
                    "dropped_files": 2, "dropped_bytes": 4_000_000},
        "offload": {"verdict": "running", "pid": 8, "age_seconds": 1, "state": "running",
                    "backlog_files": 0, "backlog_bytes": 0, "last_error": "PUT: SlowDown",
                    "compression_paused": "capture is dropping"},
        "spool": {"directory": "/s", "ready_files": 4, "ready_bytes": 10, "quarantine_files": 0,
                  "quarantine_bytes": 0, "ready_oldest": now - 1200},
    }  # fmt: skip
    lines = render_table(report, now).splitlines()
    assert lines[1] == "  paused on eth0, 10 packets captured, 3 kernel drops"
    assert [ln for ln in lines if ln.startswith("  ! ")] == [
        "  ! 3 kernel drops (likely disk: dirty pages)",
        "  ! paused: low free space",
        "  ! 2 files (4.0 MB) dropped to stay within the spool budget",
        "  ! last error: PUT: SlowDown",
        "  ! compression paused: capture is dropping",
        "  ! backlog: the oldest file in ready/ waits for 20m 00s",
    ]
    healthy = {**report["spool"], "ready_oldest": now - 5}
    assert not any(
        "backlog" in ln for ln in render_table({**report, "spool": healthy}, now).splitlines()
    )
