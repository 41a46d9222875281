"""Temporary spools and rollcap.toml files for the fault cases."""

from __future__ import annotations

import math
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        out = v.replace("\\", "\\\\").replace('"', '\\"')
        out = "".join(c if ord(c) >= 0x20 or c == "\t" else f"\\u{ord(c):04x}" for c in out)
        return f'"{out}"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {type(v).__name__}")


def dump_toml(data: dict[str, dict[str, Any]]) -> str:
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        lines.append("")
    return "\n".join(lines)


def new_spool_dir(parent: str = "/tmp") -> Path:
    """A spool whose path tcpdump (after dropping to its own user) can traverse.

    pytest's tmp_path lives under a 0700 directory that the tcpdump user cannot
    enter, so spools are made directly under /tmp.
    """
    d = Path(tempfile.mkdtemp(prefix="rollcap-faults-", dir=parent))
    os.chmod(d, 0o755)
    return d


def unique_host() -> str:
    return "faults-" + secrets.token_hex(3)


def make_config(
    *,
    spool: Path,
    interface: str = "lo",
    hostname: str,
    destination: str,
    endpoint_url: str = "",
    capture: dict[str, Any] | None = None,
    spool_opts: dict[str, Any] | None = None,
    offload: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    return {
        "capture": {
            "interface": interface,
            "hostname": hostname,
            "rotate_seconds": 10,
            "rotate_megabytes": 1,
            **(capture or {}),
        },
        "spool": {
            "directory": str(spool),
            "max_megabytes": 500,
            "min_free_percent": 0,
            # no "rollcap" group on a test machine; root is always there
            "group": "root",
            **(spool_opts or {}),
        },
        "offload": {
            "destination": destination,
            "endpoint_url": endpoint_url,
            "region": "us-east-1" if endpoint_url else "",
            "rescan_seconds": 2,
            "retry_max_seconds": 2,
            **(offload or {}),
        },
        "log": {"level": "debug"},
        # never into the machine's node_exporter directory
        "metrics": {"textfile_directory": ""},
    }


def write_config(path: Path, data: dict[str, dict[str, Any]]) -> Path:
    path.write_text(dump_toml(data))
    return path
