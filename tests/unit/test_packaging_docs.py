"""What the package ships matches what the README and fetch point to."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_DEB = (REPO / "packaging/build-deb").read_text()


def test_every_doc_the_readme_names_exists_and_is_shipped() -> None:
    readme = (REPO / "README.md").read_text()
    named = set(re.findall(r"\bdocs/[\w.-]+\.md\b", readme))
    assert {"docs/config.md", "docs/packaging.md"} <= named
    for doc in named:
        assert (REPO / doc).is_file(), doc
    # shipped at the same relative path next to README.md.gz
    assert 'for f in docs/*.md; do' in BUILD_DEB and '"$doc/docs/$(basename "$f").gz"' in BUILD_DEB
    assert '"$doc/README.md.gz"' in BUILD_DEB


def test_package_suggests_mergecap_for_pcapng() -> None:
    control = BUILD_DEB.split("cat > \"$root/DEBIAN/control\" <<CONTROL", 1)[1].split("CONTROL")[0]
    assert re.search(r"^Suggests: .*\bwireshark-common\b", control, re.M)
