"""Formatting that several commands share."""

from __future__ import annotations


def human_bytes(n: float) -> str:
    """Powers of 1000, as the spool's megabytes: 999 B, 1.5 kB, 2.0 GB."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError
