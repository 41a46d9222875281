"""What the package ships matches what the README and fetch point to."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = (REPO / "debian/rollcap.docs").read_text().split()
CONTROL = (REPO / "debian/control").read_text()


def test_every_doc_the_readme_names_exists_and_is_shipped() -> None:
    readme = (REPO / "README.md").read_text()
    named = set(re.findall(r"\bdocs/[\w.-]+\.md\b", readme))
    assert {"docs/config.md", "docs/packaging.md"} <= named
    for doc in named:
        assert (REPO / doc).is_file(), doc
    # dh_installdocs ships the docs/ directory whole: the same relative paths
    assert {"README.md", "docs"} <= set(DOCS)


def test_package_suggests_mergecap_for_pcapng() -> None:
    binary = CONTROL.split("\nPackage: rollcap\n", 1)[1]
    assert re.search(r"^Suggests:(.*\n[ \t])*.*\bwireshark-common\b", binary, re.M)
