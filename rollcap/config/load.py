"""Read /etc/rollcap.toml and turn every problem into one operator-facing line."""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from rollcap.config.schema import RollcapConfig
from rollcap.errors import ConfigError

DEFAULT_CONFIG_PATH = "/etc/rollcap.toml"
# Everything between "://" and the last "@": a password may itself hold '/' or '@'.
_USERINFO = re.compile(r"://[^\s]*@")
_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_TOML_HINTS = {
    "Cannot overwrite a value": "a key is set twice (duplicate key)",
    "Cannot declare": "a table is declared twice (duplicate [section])",
}


def config_path_from_env(cli_value: str | None) -> str:
    """--config beats ROLLCAP_CONFIG beats the default."""
    return cli_value or os.environ.get("ROLLCAP_CONFIG") or DEFAULT_CONFIG_PATH


def load_config(path: str | os.PathLike[str]) -> RollcapConfig:
    """Load and validate; raise ConfigError (exit 78) with one line per problem."""
    p = Path(path)
    try:
        if not p.is_file() and p.exists():
            raise ConfigError(f"{p}: not a regular file")
        raw = p.read_bytes()
    except FileNotFoundError:
        hint = ""
        if str(p) == DEFAULT_CONFIG_PATH:  # nobody named a file: say how to
            hint = " (name another with --config PATH or $ROLLCAP_CONFIG)"
        raise ConfigError(f"{p}: config file not found{hint}") from None
    except PermissionError:
        raise ConfigError(f"{p}: permission denied reading the config file") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the config file: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte offset {e.start})") from None
    return parse_config(text, str(p))


def parse_config(text: str, source: str = "<config>") -> RollcapConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(_toml_error(source, str(e))) from None
    return validate_data(data, source)


def _toml_error(source: str, message: str) -> str:
    """``FILE, line L, column C: TOML syntax error: ...``."""
    # tomllib's message ends with "(at line L, column C)" (or "(at end of document)")
    where = ""
    m = _TOML_POS.search(message)
    if m:
        message = message[: m.start()]
        where = f", line {m[1]}, column {m[2]}"
    message = message.replace(" (at end of document)", " at the end of the file")
    for start, hint in _TOML_HINTS.items():
        if message.startswith(start):
            message = f"{hint}: {message}"
    return f"{source}{where}: TOML syntax error: {message}"


def validate_data(data: dict[str, Any], source: str = "<config>") -> RollcapConfig:
    try:
        return RollcapConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError([f"{source}: {line}" for line in format_errors(e, data)]) from None


def format_errors(err: ValidationError, data: dict[str, Any]) -> list[str]:
    lines = []
    for item in err.errors(include_url=False):
        loc = [str(x) for x in item["loc"]]
        key = ".".join(loc) or "(top level)"
        kind = item["type"]
        given = item.get("input")
        ctx = item.get("ctx") or {}
        if kind == "extra_forbidden":
            lines.append(f"{key}: unknown key{_did_you_mean(loc)}")
            continue
        if kind in ("greater_than_equal", "greater_than"):
            msg = f"must be at least {_num(ctx.get('ge', ctx.get('gt')))}"
        elif kind in ("less_than_equal", "less_than"):
            msg = f"must be at most {_num(ctx.get('le', ctx.get('lt')))}"
        elif kind == "literal_error":
            msg = f"must be one of {ctx.get('expected')}"
        elif kind in ("int_type", "int_parsing", "int_from_float"):
            msg = "must be a whole number"
        elif kind in ("float_type", "float_parsing"):
            msg = "must be a number"
        elif kind in ("string_type",):
            msg = "must be a string"
        elif kind in ("bool_type", "bool_parsing"):
            msg = "must be true or false"
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            msg = "must be a table ([section])"
        elif kind == "value_error":
            msg = str(ctx.get("error", item["msg"]))
        else:
            msg = item["msg"]
        if not loc:  # a cross-field check: its message names the keys itself
            lines.append(msg)
            continue
        shown = _show(given) if not isinstance(given, dict) else "a table"
        lines.append(f"{key}: {msg}, got {shown}")
    return lines


def _num(value: Any) -> Any:
    """90.0 -> 90: a float field's bound reads as the operator wrote it."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        s = _USERINFO.sub("://***@", value)  # never echo a secret written into a URL
        s = s if len(s) <= 80 else s[:77] + "..."
        return '"' + s.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
    s = repr(value)
    return s if len(s) <= 80 else s[:77] + "..."


def _did_you_mean(loc: list[str]) -> str:
    model: type[BaseModel] = RollcapConfig
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        ann = field.annotation if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return ""
        model = ann
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1, cutoff=0.6)
    if not close:
        return f"; allowed: {', '.join(model.model_fields)}"
    return f"; did you mean {'.'.join([*loc[:-1], close[0]])!r}?"
