"""Sizes as operators write them, one rule for config keys and flags alike.

A number with an optional K, M, G or T (powers of 1000, as tcpdump's -C and
the spool's megabytes count; a trailing B is allowed and case does not
matter): ``500M``, ``2G``, ``1.5T``. A bare number is in the unit the key or
flag names: bytes for ``--max-bytes``, millions of bytes for a config key
ending in ``_megabytes`` (``spool.max_megabytes = 20000`` and ``= "20G"`` are
the same).
"""

from __future__ import annotations

import re
from fractions import Fraction

MB = 1000**2
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)B?", re.I)
_SCALE = {"": None, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}
SIZE_EXAMPLES = "e.g. 500M, 2G, 1.5T (K, M, G, T: powers of 1000)"


def parse_size(text: str, *, unit: int = 1) -> int:
    """Bytes; a bare number counts in ``unit`` bytes. ValueError (one line) if not a size."""
    m = _SIZE_RE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not a size; {SIZE_EXAMPLES}")
    scale = _SCALE[m[2].upper()] or unit
    return int(Fraction(m[1]) * scale)


def megabytes(value: object) -> object:
    """A config value in millions of bytes: an int as it is, a size string converted
    (it must come to a whole number of megabytes). Anything else is left for the
    schema's own type check and its message."""
    if not isinstance(value, str):
        return value
    n = parse_size(value, unit=MB)
    if n % MB:
        raise ValueError("not a whole number of megabytes (millions of bytes)")
    return n // MB
