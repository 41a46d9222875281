"""The upgrade from the last root-capture release (0.1.0) in a booted Debian.

The old package is built from the commit before capture lost root (found in
git history: the parent of the commit that introduced User=rollcap-capture).
It captures as root into its spool; then the new package is installed over
it, with capture running. The config and every capture must survive, every
spool file must belong to its new owner, capture must run again, now without
root, and offload must then archive every packet.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from rollcap.storage.local import SIDECAR
from tests.support.net import Veth, count_packets
from tests.system.conftest import REPO, _build
from tests.system.nspawn import Container
from tests.system.test_package import (
    REPLAY_PPS,
    SETTLE,
    SPOOL,
    _unit_processes,
    tcpdump_child,
    unit_props,
    wait_for,
)

pytestmark = pytest.mark.system

ENV = {"DEBIAN_FRONTEND": "noninteractive"}


def _old_revision() -> str:
    out = subprocess.run(
        ["git", "log", "--format=%H", "-S", "User=rollcap-capture", "--",
         "units/rollcap-capture.service"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    if not out:
        pytest.fail("cannot find the commit that made capture unprivileged in git history")
    return out[-1] + "^"


@pytest.fixture(scope="module")
def old_and_new(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("debs-upgrade")
    tree = tmp_path_factory.mktemp("old-tree")
    archive = subprocess.run(["git", "archive", _old_revision()], cwd=REPO,
                             capture_output=True, check=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    r = subprocess.run([str(tree / "packaging/build-deb")], cwd=tree, capture_output=True,
                       text=True, env={**os.environ, "VERSION_SUFFIX": "~root1"})  # fmt: skip
    if r.returncode != 0:
        pytest.fail(f"building the old package failed:\n{r.stdout}\n{r.stderr}")
    old_deb = tree / r.stdout.strip().splitlines()[-1]
    old = out / old_deb.name
    shutil.copy2(old_deb, old)
    return old, _build("+unpriv2", out)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_upgrade_from_root_capture_keeps_everything_and_drops_root(
    container: Container, sys_veth: Veth, all_pcap: Path, old_and_new: tuple[Path, Path]
) -> None:
    c = container
    old, new = old_and_new
    for deb in (old, new):
        shutil.copy2(deb, c.path("/root") / deb.name)
    c.run(["apt-get", "install", "-y", f"/root/{old.name}"], env=ENV, timeout=300)
    c.write("/etc/rollcap.toml", f"""\
[capture]
interface = "{sys_veth.b}"
rotate_seconds = 600
rotate_megabytes = 1
hostname = "upgrade"
""")  # fmt: skip
    config_sha = _sha(c.path("/etc/rollcap.toml"))
    c.run(["systemctl", "start", "rollcap-capture"], timeout=60)
    wait_for("the old capture's tcpdump", lambda: _old_tcpdump(c))
    sys_veth.replay(all_pcap, loop=2, pps=REPLAY_PPS)  # ~2.6 MB: two files handed off
    time.sleep(SETTLE)
    wait_for("files in ready/", lambda: len(list(c.path(f"{SPOOL}/ready").iterdir())) >= 2)
    before = {p.name: _sha(p) for p in c.path(f"{SPOOL}/ready").iterdir()}
    assert c.run(["stat", "-c", "%U", f"{SPOOL}/work"]).stdout.strip() == "tcpdump"
    # the upgrade, with capture running as root. The shipped sample changed and
    # the operator edited it: keep theirs, as an operator answering dpkg would
    keep = ["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]
    c.run(["apt-get", "install", "-y", *keep, f"/root/{new.name}"], env=ENV, timeout=300)
    assert _sha(c.path("/etc/rollcap.toml")) == config_sha, "the config changed"
    assert unit_props(c, "rollcap-capture.service", "ActiveState")["ActiveState"] == "active"
    wait_for("the new capture's tcpdump", lambda: tcpdump_child(c, "rollcap-capture.service"))
    _check_capture_only(c)
    after = {p.name: _sha(p) for p in c.path(f"{SPOOL}/ready").iterdir()}
    assert {n: after.get(n) for n in before} == before, "a capture in ready/ was lost or changed"
    owners = c.run(["find", SPOOL, "-mindepth", "2", "-type", "f", "-printf", "%P %u\n"]).stdout
    offloads = ("state/", "tmp/")  # offload's own, owned by rollcap
    wrong = [
        ln for ln in owners.splitlines()
        if not ln.startswith(offloads) and not ln.endswith(" rollcap-capture")
    ]  # fmt: skip
    assert not wrong, f"spool files not moved to rollcap-capture: {wrong}"
    assert c.path(f"{SPOOL}/capture/capture-counters.json").exists()
    assert not c.path(f"{SPOOL}/state/capture-counters.json").exists()
    # every packet captured by the old package reaches the archive
    c.run(["systemctl", "stop", "rollcap-capture"], timeout=60)
    c.run(["systemctl", "start", "rollcap-offload"], timeout=60)
    expected = 2 * count_packets(all_pcap)
    wait_for(f"{expected} packets in the archive", lambda: _archived(c) >= expected, 120)
    assert _archived(c) == expected
    c.run(["systemctl", "stop", "rollcap-offload"], timeout=60)


def _old_tcpdump(c: Container) -> bool:
    """0.1.0 published its state in state/ (no procps in a minimal Debian)."""
    try:
        st = json.loads(c.path(f"{SPOOL}/state/capture.json").read_text())
    except (FileNotFoundError, ValueError):
        return False
    return isinstance(st, dict) and st.get("state") == "capturing"


def _check_capture_only(c: Container) -> None:
    uid = c.run(["id", "-u", "rollcap-capture"]).stdout.strip()
    procs = _unit_processes(c, "rollcap-capture.service")
    assert "tcpdump" in {p["Name"] for p in procs.values()}, procs
    for pid, st in procs.items():
        assert st["Uid"].split() == [uid] * 4, (pid, st["Name"], st["Uid"])
        assert int(st["CapEff"], 16) & ~(1 << 13) == 0, (pid, st["Name"], st["CapEff"])


def _archived(c: Container) -> int:
    root = c.path("/var/lib/rollcap/archive")
    total = 0
    for p in root.rglob("*.pcap*"):
        if p.is_file() and not p.name.endswith(SIDECAR) and "/.rollcap-tmp/" not in str(p):
            total += count_packets(p)
    return total
