"""Fixtures of the system test: two builds of the .deb, a booted Debian, S3, a veth pair.

Everything is module-scoped and torn down in finalizers whatever happens:
the container is halted (then killed), the veth pair deleted, SeaweedFS stopped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.net import Veth
from tests.system.nspawn import Container, ensure_rootfs

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Debs:
    old: Path
    new: Path
    old_version: str
    new_version: str


def _build(suffix: str, out: Path) -> Path:
    env = {**os.environ, "VERSION_SUFFIX": suffix}
    r = subprocess.run(
        [str(REPO / "packaging/build-deb")], cwd=REPO, env=env, capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.fail(f"packaging/build-deb failed:\n{r.stdout}\n{r.stderr}")
    deb = REPO / r.stdout.strip().splitlines()[-1]
    dest = out / deb.name
    shutil.copy2(deb, dest)
    return dest


def _version(deb: Path) -> str:
    return subprocess.run(
        ["dpkg-deb", "--field", str(deb), "Version"], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> Debs:
    """The package built twice: an older and a newer version, for the upgrade."""
    out = tmp_path_factory.mktemp("debs")
    old = _build("~systest1", out)
    new = _build("+systest2", out)
    return Debs(old, new, _version(old), _version(new))


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    if os.geteuid() != 0:
        pytest.fail("the system test needs root (debootstrap, systemd-nspawn); CI runs as root")
    for tool in ("systemd-nspawn", "nsenter", "debootstrap"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (.ci/run installs it)")
    rootfs = ensure_rootfs()
    with Container.booted(tmp_path_factory.mktemp("nspawn"), rootfs) as c:
        yield c


@pytest.fixture(scope="module")
def sys_veth() -> Iterator[Veth]:
    """A veth pair in the host's (= the container's) network namespace."""
    v = Veth.create()
    try:
        yield v
    finally:
        v.delete()
