"""`rollcap status`: what the two daemons last wrote into the spool's state/."""

from __future__ import annotations

import time
from typing import Any

from rollcap.config import RollcapConfig
from rollcap.spool import Spool
from rollcap.state import read_state

DAEMONS = ("capture", "offload")
# A daemon that has not refreshed its state file for this long is reported stale.
STALE_SECONDS = 90


def collect(cfg: RollcapConfig) -> dict[str, Any]:
    spool = Spool.at(cfg.spool.directory)
    report: dict[str, Any] = {}
    now = time.time()
    for name in DAEMONS:
        st = read_state(spool.state / f"{name}.json")
        if st is None:
            report[name] = {"running": False, "note": "no state file (never ran?)"}
            continue
        age = now - float(st.get("updated", 0))
        st["stale"] = age > STALE_SECONDS
        st["age_seconds"] = round(age, 1)
        report[name] = st
    return report


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".")
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    return str(v)


def render_table(report: dict[str, Any]) -> str:
    lines = []
    for name in DAEMONS:
        st = report.get(name, {})
        lines.append(f"{name}:")
        width = max((len(k) for k in st), default=0)
        for k in sorted(st):
            lines.append(f"  {k:<{width}}  {_fmt(st[k])}")
    return "\n".join(lines) + "\n"
