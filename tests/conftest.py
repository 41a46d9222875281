"""Shared fixtures. Integration fixtures start real servers and real interfaces."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.net import TEST_PCAPS, Veth, merged_pcaps
from tests.support.seaweedfs import SeaweedFS

REPO = Path(__file__).resolve().parents[1]


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("integration tests need root (veth pairs, tcpdump); CI runs as root")


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedFS]:
    """One real SeaweedFS S3 gateway for the session, on free loopback ports."""
    w = SeaweedFS().start()
    try:
        yield w
    finally:
        w.cleanup()


@pytest.fixture
def veth() -> Iterator[Veth]:
    _need_root()
    for tool in ("ip", "tcpreplay", "tcpdump"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (.ci/run installs it)")
    v = Veth.create()
    try:
        yield v
    finally:
        v.delete()


@pytest.fixture(scope="session")
def all_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 30 test captures (5,374 packets) merged into one classic pcap."""
    if not TEST_PCAPS.is_dir():
        pytest.fail(f"{TEST_PCAPS} is missing")
    return merged_pcaps(tmp_path_factory.mktemp("pcaps"))
