"""Object keys from the configured template.

Keys are unique by construction ({host} and {seq} are required) and can never
leave the prefix: the template must start with "{prefix}/", and every rendered
key is checked again, because a host name or interface comes from outside.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from datetime import UTC, datetime

from rollcap.errors import ConfigError

_ALLOWED = {"prefix", "host", "iface", "start", "seq", "ext"}
_REQUIRED = {"host", "seq", "start"}
_SAFE_KEY = re.compile(r"^[A-Za-z0-9!_.*'()/:@+=-]+$")
MAX_KEY_BYTES = 1024  # S3's limit
# Widths and precisions in a placeholder's format spec ("{seq:06d}", "%10Y"):
# anything larger only pads, and a huge one would build a gigabyte-sized key.
_MAX_WIDTH = 64
# A precision cuts a string: "{host:.3}" would make two hosts' keys collide,
# "{prefix:.2}" would leave the prefix.
_NO_PRECISION = {"prefix", "host", "iface"}
MAX_SEGMENT_BYTES = 255  # a file name (file://) and a sane S3 key segment


@dataclass(frozen=True)
class KeyFields:
    prefix: str
    host: str
    iface: str
    start: datetime
    seq: int
    ext: str


def validate_template(template: str) -> None:
    """Raise ValueError (for pydantic) if the template is unusable."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ValueError(f"not a valid template: {e}") from None
    names = set()
    for _literal, name, spec, conv in parsed:
        if name is None:
            continue
        if name not in _ALLOWED:
            allowed = ", ".join("{" + n + "}" for n in sorted(_ALLOWED))
            raise ValueError(f"unknown placeholder {{{name}}}; allowed: {allowed}")
        if conv:
            raise ValueError(f"placeholder {{{name}}} takes no !conversion")
        widths = [int(n) for n in re.findall(r"\d+", spec or "")]
        if any(w > _MAX_WIDTH for w in widths):
            raise ValueError(
                f"placeholder {{{name}}}: width {max(widths)} in {spec!r} is over {_MAX_WIDTH}"
            )
        if name in _NO_PRECISION and "." in (spec or ""):
            raise ValueError(f"placeholder {{{name}}} takes no precision (it would cut {spec!r})")
        names.add(name)
    missing = _REQUIRED - names
    if missing:
        raise ValueError(
            "must contain "
            + " and ".join("{" + n + "}" for n in sorted(missing))
            + " so that keys are unique and sortable"
        )
    if not template.startswith("{prefix}/"):
        raise ValueError('must start with "{prefix}/" so keys stay below the prefix')
    sample = KeyFields("p", "host", "eth0", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), 7, ".pcap")
    try:
        key = render_unchecked(template, sample)
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"cannot be rendered: {e}") from None
    check_key(key, "p")


def render_unchecked(template: str, f: KeyFields) -> str:
    return template.format(
        prefix=f.prefix, host=f.host, iface=f.iface, start=f.start, seq=f.seq, ext=f.ext
    )


def check_key(key: str, prefix: str) -> str:
    """Return the key if it is safe and below prefix, else raise ValueError."""
    if len(key.encode()) > MAX_KEY_BYTES:
        raise ValueError(f"key of {len(key.encode())} bytes is longer than {MAX_KEY_BYTES}")
    parts = key.split("/")
    if key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"key {key!r} has an empty, '.' or '..' path segment")
    long = [p for p in parts if len(p.encode()) > MAX_SEGMENT_BYTES]
    if long:
        raise ValueError(
            f"key has a path segment of {len(long[0].encode())} bytes, over {MAX_SEGMENT_BYTES}"
        )
    if not _SAFE_KEY.fullmatch(key):
        raise ValueError(
            f"key {key!r} contains characters outside A-Z a-z 0-9 ! _ . * ' ( ) / : @ + = -"
        )
    if prefix and not key.startswith(prefix.rstrip("/") + "/"):
        raise ValueError(f"key {key!r} is not below the prefix {prefix!r}")
    return key


def render_key(template: str, f: KeyFields) -> str:
    """Render and check a key; the prefix may be empty (bucket root)."""
    key = render_unchecked(template, f)
    if not f.prefix:
        key = key.lstrip("/")  # "{prefix}/..." with an empty prefix
    try:
        return check_key(key, f.prefix)
    except ValueError as e:
        raise ConfigError(f"offload.key_template: {e}") from None
