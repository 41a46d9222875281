"""The pcap record walk counts what capinfos counts, over the test captures."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from rollcap.pcapfile import NotPcapError, scan
from tests.support.net import TEST_PCAPS

pytestmark = pytest.mark.integration


@pytest.mark.skipif(shutil.which("capinfos") is None, reason="capinfos (wireshark-common)")
def test_packet_counts_agree_with_capinfos() -> None:
    files = sorted(TEST_PCAPS.glob("*.pcap"))
    assert files, TEST_PCAPS
    checked = 0
    for f in files:
        try:
            s = scan(f)
        except NotPcapError:
            continue  # pcapng in the set
        out = subprocess.run(
            ["capinfos", "-M", "-c", "-T", "-r", str(f)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        assert s.packets == int(out.split("\t")[-1]), f
        checked += 1
    assert checked >= 10
