"""`python -m rollcap ARGS` as a subprocess, the way an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def rollcap(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m rollcap ARGS` with no ROLLCAP_CONFIG from the caller's environment."""
    e = {**os.environ, "PYTHONPATH": str(REPO)}
    e.pop("ROLLCAP_CONFIG", None)
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "rollcap", *args],
        cwd=REPO,
        env=e,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def run_rollcap(
    config: Path, env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollcap", *args, "--config", str(config)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def run_into_closed_pipe(
    config: Path, env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """As run_rollcap, with stdout a pipe whose reader has already gone (`| head`
    that quit): the first write fails with EPIPE, every time, no race."""
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run(
            [sys.executable, "-m", "rollcap", *args, "--config", str(config)],
            cwd=REPO, env=env, stdout=w, stderr=subprocess.PIPE, text=True, timeout=timeout,
        )  # fmt: skip
    finally:
        os.close(w)
