"""A strip job's freed memory goes back to the kernel: the capture daemon's
RSS must not keep each switch's high-water mark in the worker's malloc arena."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollcap.capture import stripworker
from rollcap.capture.stripworker import StripWorker

pytestmark = pytest.mark.skipif(stripworker._TRIM is None, reason="libc without malloc_trim")

BLOCK = 64 * 1024  # malloc'd from the thread's arena, under the mmap threshold


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def job() -> list[bytes]:
    """26 MB of 1 MB-ish reads, as a strip's; every 8th kept (a survivor pins
    the freed blocks between them in the arena, so free() alone returns nothing)."""
    blocks = [bytes([i % 251]) * BLOCK for i in range(400)]
    return blocks[::8]


def test_a_jobs_freed_memory_is_returned_after_it() -> None:
    w = StripWorker(lambda: None)
    try:
        w.submit(lambda: None).result()  # the thread and its arena exist
        before = rss_kb()
        kept = w.submit(job).result()
        grown = rss_kb() - before
    finally:
        w.stop()
    assert len(kept) == 50
    # 50 blocks kept (3.2 MB); without the trim the 22 MB freed stays resident
    assert grown < 10_000, f"RSS grew {grown} kB over the job"
