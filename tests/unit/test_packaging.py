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


# runtime dependencies whose Debian 12 package is recent enough: not bundled
# in the bookworm backport, a dependency of both packages
FROM_DEBIAN_12 = {"numpy"}  # python3-numpy 1.24 (bookworm), 2.2 (trixie)


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
    backport = (REPO / "packaging/build-deb").read_text()
    for dep in _runtime_deps():
        module = {"systemd-python": "systemd"}.get(dep, dep)
        assert f"python3-{module}" in debian, f"debian/control Depends lacks python3-{module}"
        if dep in FROM_DEBIAN_12:  # Debian 12's own package: a dependency there too
            assert dep not in pinned and f"python3-\\({module}" not in backport
            assert f"\\|{module}\\" not in backport
        else:
            assert dep in pinned, f"packaging/requirements.txt lacks {dep}"
