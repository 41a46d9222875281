"""Render an effective (validated) config back to TOML for `check-config --show`."""

from __future__ import annotations

from rollcap.config.render import toml_value
from rollcap.config.schema import RollcapConfig


def dump_toml(cfg: RollcapConfig) -> str:
    lines = []
    for section, values in cfg.model_dump().items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in values.items())
        lines.append("")
    return "\n".join(lines)
