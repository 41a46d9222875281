"""One offload per spool: the second one is refused, naming the first one's pid."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from rollcap.errors import RollcapError
from rollcap.offload.lock import SpoolLock


def test_a_second_offload_on_the_same_spool_is_refused_with_the_first_ones_pid(
    tmp_path: Path,
) -> None:
    path = tmp_path / "offload.lock"
    path.write_text("999999999\n")  # a stale pid from an earlier run is overwritten
    first = SpoolLock(path, tmp_path, threading.Event())
    first.acquire()
    assert path.read_text() == f"{os.getpid()}\n"
    # flock excludes per open file description: a second open in this process
    # is refused like another process would be
    with pytest.raises(RollcapError, match=rf"pid {os.getpid()}\) is already using the spool"):
        SpoolLock(path, tmp_path, threading.Event()).acquire()
