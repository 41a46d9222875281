"""bench.common.smaps_by_kind: the switches soak's evidence for where the
capture daemon's RSS sits (the main malloc arena or a thread's own)."""

from __future__ import annotations

from bench.common import smaps_by_kind

ARENA = 64 << 20


def mapping(lo: int, hi: int, perms: str, name: str, rss_kb: int) -> str:
    return (f"{lo:012x}-{hi:012x} {perms} 00000000 00:00 0          {name}\n"
            f"Size:           {(hi - lo) >> 10} kB\nRss:            {rss_kb} kB\n"
            "Pss:            0 kB\n")  # fmt: skip


def test_a_threads_arena_heap_is_told_from_other_anonymous_memory() -> None:
    heap2 = 3 * ARENA  # a thread arena's heap: 64 MiB-aligned, the rest reserved
    text = (
        mapping(0x555555554000, 0x555555600000, "r-xp", "/usr/bin/python3.11", 3000)
        + mapping(0x555555600000, 0x555556000000, "rw-p", "[heap]", 9000)
        + mapping(heap2, heap2 + (5 << 20), "rw-p", "", 4100)
        + mapping(heap2 + (5 << 20), heap2 + ARENA, "---p", "", 0)
        # a full 64 MiB heap has no reserved rest
        + mapping(5 * ARENA, 6 * ARENA, "rw-p", "", 700)
        # aligned, but its PROT_NONE neighbour does not end the 64 MiB: a thread
        # stack's guard page, or an mmap that happens to be aligned
        + mapping(8 * ARENA, 8 * ARENA + (1 << 20), "rw-p", "", 1024)
        + mapping(8 * ARENA + (1 << 20), 8 * ARENA + (1 << 20) + 4096, "---p", "", 0)
        # pymalloc's 1 MiB arenas, not aligned
        + mapping(9 * ARENA + 4096, 9 * ARENA + 4096 + (1 << 20), "rw-p", "", 800)
        + mapping(0x7FFD00000000, 0x7FFD00021000, "rw-p", "[stack]", 40)
    )
    assert smaps_by_kind(text) == {
        "brk_heap": 9000, "thread_arenas": 4100 + 700, "thread_arena_heaps": 2,
        "other_anon": 1024 + 800 + 40, "file": 3000,
    }  # fmt: skip
