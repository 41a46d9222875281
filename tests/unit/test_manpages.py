"""rollcap(8) and rollcap.toml(5): render without groff warnings; EXIT STATUS is complete."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rollcap import exitcodes
from rollcap.config.render import render_manpage

REPO = Path(__file__).resolve().parents[2]


def _rollcap8() -> str:
    return subprocess.run(
        [sys.executable, "debian/manpage.py", "1.0"], cwd=REPO, check=True,
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    ).stdout  # fmt: skip


@pytest.mark.skipif(shutil.which("man") is None, reason="man-db not installed")
@pytest.mark.parametrize("page", ["rollcap.8", "rollcap.toml.5"])
def test_pages_render_without_warnings(page: str, tmp_path: Path) -> None:
    f = tmp_path / page
    f.write_text(_rollcap8() if page == "rollcap.8" else render_manpage("1.0"))
    r = subprocess.run(["man", "--warnings", "-l", str(f)], capture_output=True, text=True,
                       env={**os.environ, "MANWIDTH": "80"}, timeout=60)  # fmt: skip
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_exit_status_lists_every_code() -> None:
    page = _rollcap8()
    section = page.split(".SH EXIT STATUS", 1)[1].split(".SH ", 1)[0]
    codes = re.findall(r"^\\fB(.+?)\\fR$", section, re.M)
    assert codes == [c for c, _ in exitcodes.DESCRIPTIONS]
    assert {"0", "1", "2", "3", "4", "5", "78"} <= set(codes)
    values = {v for k, v in vars(exitcodes).items() if k.isupper() and isinstance(v, int)}
    values -= {exitcodes.SIGNAL_BASE, exitcodes.INTERRUPTED}  # the 128+N line
    assert {str(v) for v in values} <= set(codes)


def test_readme_names_every_status_code() -> None:
    readme = (REPO / "README.md").read_text()
    for code in ("0", "3", "4", "5"):
        assert f"| {code} |" in readme
