"""Fixtures and hooks of the fault-injection suite.

Every case gets the `faults` marker and a hard timeout (marker
``hard_timeout(seconds)``, default 150 s) enforced with SIGALRM, so a hung
daemon fails its case instead of hanging CI. The results table is written at
session end (see results.py).
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.proc import REPO
from tests.faults.results import Results, write_reports
from tests.faults.rig import Rig
from tests.support.net import Veth
from tests.support.seaweedfs import SeaweedFS

DEFAULT_TIMEOUT = 150
_RESULTS = pytest.StashKey[Results]()
_HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: fault-injection case (tests/faults)")
    config.addinivalue_line("markers", "hard_timeout(seconds): fail the case after this long")
    config.addinivalue_line("markers", "case(title): row title in docs/reliability.md")
    config.stash[_RESULTS] = Results()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.faults)


class HardTimeout(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    m = item.get_closest_marker("hard_timeout")
    seconds = int(m.args[0]) if m else DEFAULT_TIMEOUT
    if _HERE not in Path(str(item.fspath)).parents:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise HardTimeout(f"{item.name} exceeded its hard timeout of {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    if _HERE not in Path(str(item.fspath)).parents:
        return  # a whole-tree run: only this suite's cases are tallied
    results = item.config.stash[_RESULTS]
    if rep.when == "call" or (rep.when == "setup" and rep.outcome != "passed"):
        if hasattr(rep, "wasxfail"):
            res = "xfail (known bug)" if rep.skipped else "XPASS"
        else:
            res = {"passed": "pass", "failed": "**FAIL**", "skipped": "skipped"}[rep.outcome]
        results.outcomes[item.nodeid] = res


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    results = session.config.stash.get(_RESULTS, None)
    if results is None or not results.rows:
        return
    counts: dict[str, int] = {}
    for res in results.outcomes.values():
        counts[res.strip("*").lower()] = counts.get(res.strip("*").lower(), 0) + 1
    for p in write_reports(REPO, results, counts):
        print(f"\nfaults: wrote {p}")


class Recorder:
    def __init__(self, results: Results, nodeid: str, case: str, seed: int) -> None:
        self._results, self._nodeid, self.case, self.seed = results, nodeid, case, seed
        self._results.record(nodeid, case)

    def record(self, **kw: object) -> None:
        self._results.record(self._nodeid, self.case, **kw)


@pytest.fixture
def seed() -> int:
    return int(os.environ.get("FAULTS_SEED", str(int(time.time()))))


@pytest.fixture
def rng(seed: int) -> random.Random:
    return random.Random(seed)


@pytest.fixture
def reliability(request: pytest.FixtureRequest, seed: int) -> Recorder:
    m = request.node.get_closest_marker("case")
    case = m.args[0] if m else request.node.name
    return Recorder(request.config.stash[_RESULTS], request.node.nodeid, case, seed)


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the fault suite needs root (veth pairs, tcpdump, mounts); CI runs as root")


@pytest.fixture
def rig(seaweedfs: SeaweedFS, veth: Veth, all_pcap: Path, tmp_path: Path) -> Iterator[Rig]:
    """Capture + offload against the session's SeaweedFS, on a fresh veth pair."""
    _need_root()
    r = Rig(s3=seaweedfs, veth=veth, pcap=all_pcap, workdir=tmp_path)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def own_seaweedfs() -> Iterator[SeaweedFS]:
    """A SeaweedFS of this test alone, which it may stop and restart."""
    w = SeaweedFS(bucket="rollcap-outage").start()
    try:
        yield w
    finally:
        w.cleanup()


@pytest.fixture
def outage_rig(own_seaweedfs: SeaweedFS, veth: Veth, all_pcap: Path,
               tmp_path: Path) -> Iterator[Rig]:  # fmt: skip
    _need_root()
    r = Rig(s3=own_seaweedfs, veth=veth, pcap=all_pcap, workdir=tmp_path)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def offload_rig(seaweedfs: SeaweedFS, all_pcap: Path, tmp_path: Path) -> Iterator[Rig]:
    """Offload only (files are placed in ready/ by the test); no interface needed."""
    _need_root()
    r = Rig(s3=seaweedfs, veth=None, pcap=all_pcap, workdir=tmp_path)
    try:
        yield r
    finally:
        r.close()
