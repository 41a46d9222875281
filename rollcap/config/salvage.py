"""A config good enough to *find* things with, when the file has an error.

`rollcap status` and `rollcap list` must still answer while the daemons run on
an earlier config and someone has just broken the file (a typo, a half-done
edit): a monitoring check that only gets "exit 78" is blind. They take the
file's valid keys, the defaults for the broken ones (or for all, if the file
is not TOML at all), and say so on stderr. The daemons and `check-config`
never use this: they refuse a broken file (exit 78).
"""

from __future__ import annotations

import os
import tomllib
from typing import Any

from pydantic import ValidationError

from rollcap.config.load import load_config
from rollcap.config.schema import RollcapConfig
from rollcap.errors import ConfigError

_MAX_ROUNDS = 20  # each round drops the keys pydantic named; a few suffice


def _drop(data: dict[str, Any], loc: tuple[int | str, ...]) -> bool:
    """Remove the value at loc (or its nearest dict ancestor's key); False if none."""
    node: Any = data
    for part in loc[:-1]:
        if not isinstance(node, dict) or part not in node:
            return False
        if not isinstance(node[part], dict):  # a list or scalar: drop the whole key
            del node[part]
            return True
        node = node[part]
    if isinstance(node, dict) and loc and loc[-1] in node:
        del node[loc[-1]]
        return True
    return False


def salvage(data: dict[str, Any]) -> RollcapConfig:
    """The config from data without the keys that fail validation."""
    for _ in range(_MAX_ROUNDS):
        try:
            return RollcapConfig.model_validate(data)
        except ValidationError as e:
            dropped = [_drop(data, tuple(err["loc"])) for err in e.errors()]
            if not any(dropped):  # a cross-field rule: nothing single to drop
                break
    return RollcapConfig()


def load_for_reading(path: str | os.PathLike[str]) -> tuple[RollcapConfig, list[str]]:
    """(config, warnings): the file as it is when valid, else what can be salvaged."""
    try:
        return load_config(path), []
    except ConfigError as e:
        problems = e.problems
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return RollcapConfig(), [*problems, "using the defaults for every key"]
    return salvage(data), [*problems, "using the file's valid keys and defaults for the rest"]
