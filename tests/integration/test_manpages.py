"""rollcap(8) and rollcap.toml(5) through man(1) (man-db, .ci/packages-test.txt):
they render without groff warnings, and `rollcap man` shows them from a clone."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from rollcap.config.render import render_manpage
from tests.unit.test_manpages import _rollcap8, _rollcap_man


@pytest.mark.parametrize("page", ["rollcap.8", "rollcap.toml.5"])
def test_pages_render_without_warnings(page: str, tmp_path: Path) -> None:
    f = tmp_path / page
    f.write_text(_rollcap8() if page == "rollcap.8" else render_manpage("1.0"))
    r = subprocess.run(["man", "--warnings", "-l", str(f)], capture_output=True, text=True,
                       env={**os.environ, "MANWIDTH": "80"}, timeout=60)  # fmt: skip
    assert r.returncode == 0 and r.stderr == "", r.stderr


@pytest.mark.parametrize(("page", "title", "inside"), [
    ([], "ROLLCAP(8)", "check-config"), (["rollcap.toml"], "ROLLCAP.TOML(5)", "rotate_seconds"),
])  # fmt: skip
def test_rollcap_man_shows_each_page_from_a_clone(page: list[str], title: str,
                                                  inside: str) -> None:  # fmt: skip
    r = _rollcap_man(*page)
    assert r.returncode == 0, r.stderr
    assert r.stdout.lstrip().startswith(title) and inside in r.stdout
