"""debian/ agrees with the project: one version, every runtime dependency packaged."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from rollcap import __version__

REPO = Path(__file__).resolve().parents[2]


def _runtime_deps() -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower().replace("_", "-")
            for d in project["dependencies"]]  # fmt: skip


def test_debian_changelog_is_at_the_package_version() -> None:
    first = (REPO / "debian/changelog").read_text().splitlines()[0]
    assert first.startswith(f"rollcap ({__version__}) "), first


def test_every_runtime_dependency_is_in_both_packages() -> None:
    """Debian 13's package depends on the distribution's module; Debian 12's bundles it."""
    control = (REPO / "debian/control").read_text().split("\n\n")[1]
    depends = re.search(r"^Depends:(.*(?:\n[ \t].*)*)", control, re.M)
    assert depends
    debian = {re.split(r"[\s(]", d.strip())[0] for d in depends.group(1).split(",")}
    pinned = {
        ln.split("==")[0].strip().lower().replace("_", "-")
        for ln in (REPO / "packaging/requirements.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    }
    for dep in _runtime_deps():
        module = {"systemd-python": "systemd"}.get(dep, dep)
        assert f"python3-{module}" in debian, f"debian/control Depends lacks python3-{module}"
        assert dep in pinned, f"packaging/requirements.txt lacks {dep}"
