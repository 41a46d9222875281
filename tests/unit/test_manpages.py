"""rollcap(8) and rollcap.toml(5): EXIT STATUS is complete, one source for the
package and `rollcap man` (rendering with man(1): tests/integration/test_manpages.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from rollcap import exitcodes
from rollcap.config.render import render_manpage

REPO = Path(__file__).resolve().parents[2]


def _rollcap8() -> str:
    return subprocess.run(
        [sys.executable, "debian/manpage.py", "1.0"], cwd=REPO, check=True,
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    ).stdout  # fmt: skip


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


def _rollcap_man(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MANPAGER": "cat", "MANWIDTH": "80"}
    if path is not None:
        env["PATH"] = path
    return subprocess.run([sys.executable, "-m", "rollcap", "man", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_rollcap_man_roff_is_the_packages_source() -> None:
    """One source: what `rollcap man --roff` prints is what debian/rules installs."""
    from rollcap import __version__

    packaged = subprocess.run(
        [sys.executable, "debian/manpage.py", __version__], cwd=REPO, check=True,
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    ).stdout  # fmt: skip
    assert _rollcap_man("--roff").stdout == packaged
    assert _rollcap_man("--roff", "rollcap.toml").stdout == render_manpage(__version__)


def test_rollcap_man_without_man_says_what_to_install() -> None:
    r = _rollcap_man("rollcap.toml", path="/nonexistent")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == ("rollcap: man is not installed (apt install man-db); "
                        "rollcap man --roff rollcap.toml prints the page's source\n")  # fmt: skip
