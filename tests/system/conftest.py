"""Fixtures of the system test, per release: the package of this tree and of the
previous release, a booted Debian of that release, S3, a veth pair.

Every module-scoped fixture depends on `release`, so each test module runs once
per Debian release (ROLLCAP_SYSTEM_RELEASES="bookworm trixie" by default).
Everything is torn down in finalizers whatever happens: the container is halted
(then killed), the veth pair deleted, SeaweedFS stopped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.net import Veth
from tests.system.nspawn import REPO, Container, ensure_rootfs, unpack_rootfs

RELEASES = os.environ.get("ROLLCAP_SYSTEM_RELEASES", "bookworm trixie").split()
CACHE = Path(os.environ.get("ROLLCAP_CACHE", "/var/cache/rollcap"))
# The previous release: 0.1.0 as it landed (the last commit of its session),
# built by that commit's own packaging/build-deb.
PREVIOUS_VERSION = "0.1.0"
PREVIOUS_COMMIT = "1de544380eaaf1b0939c4df0961358e831c2889f"
CA = "/etc/ssl/certs/ca-certificates.crt"


@dataclass(frozen=True)
class Debs:
    old: Path
    new: Path
    old_version: str
    new_version: str


def _version(deb: Path) -> str:
    return subprocess.run(
        ["dpkg-deb", "--field", str(deb), "Version"], capture_output=True, text=True, check=True
    ).stdout.strip()


def _run(cmd: list[str], what: str, **kw: object) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if r.returncode != 0:
        pytest.fail(f"{what} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return str(r.stdout)


def build_current(release: str, out: Path) -> Path:
    """This tree's package for `release` (packaging/build-deb, as `make deb`)."""
    stdout = _run([str(REPO / "packaging/build-deb"), release], "packaging/build-deb", cwd=REPO)
    deb = REPO / stdout.strip().splitlines()[-1]
    dest = out / deb.name
    shutil.copy2(deb, dest)
    return dest


def build_previous(release: str) -> Path:
    """0.1.0 for `release`, built once per machine from its commit in a temporary
    worktree. Its build-deb builds for the python3 it runs with: on this machine
    for bookworm, inside trixie's build root (with network: it downloads wheels)
    for trixie, as a trixie user of 0.1.0 had to."""
    dest = CACHE / "previous" / f"{release}-{PREVIOUS_COMMIT[:12]}.deb"
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    epoch = _run(["git", "-C", str(REPO), "log", "-1", "--format=%ct", PREVIOUS_COMMIT], "git log")
    env = {**os.environ, "SOURCE_DATE_EPOCH": epoch.strip(), "PIP_BREAK_SYSTEM_PACKAGES": "1"}
    with tempfile.TemporaryDirectory(prefix="rollcap-previous-") as tmp:
        tree = Path(tmp) / "tree"
        _run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), PREVIOUS_COMMIT],
             "git worktree add")  # fmt: skip
        try:
            if release == "bookworm":
                env["WHEEL_CACHE"] = str(CACHE / "wheels/previous-bookworm")
                _run([str(tree / "packaging/build-deb")], "0.1.0's build-deb", cwd=tree, env=env)
            else:
                root = Path(tmp) / "root"
                tarball = _run([str(REPO / "packaging/build-deb"), "--print-root", release],
                               "build-deb --print-root", cwd=REPO).strip()  # fmt: skip
                unpack_rootfs(Path(tarball), root)
                shutil.copytree(tree, root / "build/old", symlinks=True)
                wheels = CACHE / f"wheels/previous-{release}"
                wheels.mkdir(parents=True, exist_ok=True)
                _run(["systemd-nspawn", "--quiet", "--register=no", "--keep-unit",
                      f"--machine=rcprev-{os.getpid()}", f"--directory={root}",
                      "--chdir=/build/old", f"--bind={wheels}:/build/wheels",
                      "--setenv=WHEEL_CACHE=/build/wheels",
                      f"--setenv=SOURCE_DATE_EPOCH={env['SOURCE_DATE_EPOCH']}",
                      "--setenv=PIP_BREAK_SYSTEM_PACKAGES=1",
                      # this machine's CA bundle: its network may re-sign TLS
                      f"--bind-ro={CA}:/etc/ssl/certs/rollcap-host-ca.crt",
                      "--setenv=PIP_CERT=/etc/ssl/certs/rollcap-host-ca.crt",
                      "packaging/build-deb"],
                     f"0.1.0's build-deb in {release}")  # fmt: skip
                tree = root / "build/old"
            debs = sorted((tree / "dist").glob("rollcap_*.deb"))
            assert len(debs) == 1, debs
            shutil.copy2(debs[0], dest)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                            str(Path(tmp) / "tree")], check=False)  # fmt: skip
    return dest


@pytest.fixture(scope="module", params=RELEASES)
def release(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def debs(release: str, tmp_path_factory: pytest.TempPathFactory) -> Debs:
    """The package of this tree and of the previous release, for `release`."""
    new = build_current(release, tmp_path_factory.mktemp(f"debs-{release}"))
    old = build_previous(release)
    return Debs(old, new, _version(old), _version(new))


@pytest.fixture(scope="module")
def container(release: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    if os.geteuid() != 0:
        pytest.fail("the system test needs root (debootstrap, systemd-nspawn); CI runs as root")
    for tool in ("systemd-nspawn", "nsenter", "debootstrap", "zstd"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (.ci/run installs it)")
    rootfs = ensure_rootfs(release)
    with Container.booted(tmp_path_factory.mktemp(f"nspawn-{release}"), rootfs) as c:
        yield c


@pytest.fixture(scope="module")
def sys_veth() -> Iterator[Veth]:
    """A veth pair in the host's (= the container's) network namespace."""
    v = Veth.create()
    try:
        yield v
    finally:
        v.delete()
