"""Generate the commented sample config and the reference doc from the schema."""

from __future__ import annotations

import json
import textwrap
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from rollcap import sizes
from rollcap.config.schema import RollcapConfig

_HEADER = """\
# /etc/rollcap.toml: configuration of rollcap-capture and rollcap-offload.
#
# Generated from rollcap's schema (rollcap.config.schema): every key is listed
# with its default. Validate edits with `rollcap check-config`, then
# `systemctl reload rollcap-capture` and `systemctl restart rollcap-offload`.
"""


def _sections() -> list[tuple[str, type[BaseModel], FieldInfo]]:
    out = []
    for name, field in RollcapConfig.model_fields.items():
        ann = field.annotation
        assert isinstance(ann, type) and issubclass(ann, BaseModel)
        out.append((name, ann, field))
    return out


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table; None is an unset optional key
        items = ", ".join(
            f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items() if v is not None
        )
        return "{ " + items + " }" if items else "{}"
    raise TypeError(f"no TOML rendering for {type(value).__name__}")


def _default(field: FieldInfo) -> Any:
    return field.get_default(call_default_factory=True)


def _allowed(field: FieldInfo) -> str:
    parts = []
    for m in field.metadata:
        for attr, word in (("ge", "at least"), ("le", "at most")):
            v = getattr(m, attr, None)
            if v is not None:
                parts.append(f"{word} {v}")
    if any(getattr(m, "func", None) is sizes.megabytes for m in field.metadata):
        parts.append('or a size with a unit: "20G", "500M"')
    args = getattr(field.annotation, "__args__", None)
    if args and all(isinstance(a, str) for a in args):
        parts.append("one of " + ", ".join(json.dumps(a) for a in args))
    return "; ".join(parts)


def render_sample() -> str:
    """The shipped config/rollcap.toml: every key, commented, at its default."""
    lines = [_HEADER]
    for name, model, _ in _sections():
        lines.append(f"[{name}]")
        for fname, field in model.model_fields.items():
            desc = field.description or ""
            allowed = _allowed(field)
            if allowed:
                desc += f" ({allowed})"
            lines.extend("# " + w for w in textwrap.wrap(desc, 76))
            lines.append(f"{fname} = {toml_value(_default(field))}")
            lines.append("")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def render_markdown() -> str:
    """docs/config.md."""
    lines = [
        "# rollcap.toml reference",
        "",
        "Generated from `rollcap/config/schema.py` by `rollcap config-docs --format markdown`; "
        "do not edit by hand. Unknown keys are errors; every config error exits 78.",
        "",
    ]
    for name, model, _ in _sections():
        lines += [f"## [{name}]", "", (model.__doc__ or "").strip(), ""]
        lines += ["| key | default | allowed | meaning |", "|---|---|---|---|"]
        for fname, field in model.model_fields.items():
            default = toml_value(_default(field)).replace("|", "\\|")
            desc = (field.description or "").replace("|", "\\|")
            lines.append(f"| `{fname}` | `{default}` | {_allowed(field)} | {desc} |")
        lines.append("")
    return "\n".join(lines)


def render_manpage(version: str) -> str:
    """rollcap.toml(5) in roff."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("-", "\\-").replace("\n.", "\n\\&.")

    def breakable(s: str) -> str:
        # \: (a break point of no width) after each '/': a long default
        # (key_template) wraps there instead of "can't break line"
        return s.replace("/", "/\\:")

    out = [
        f'.TH ROLLCAP.TOML 5 "" "rollcap {version}" "File Formats"',
        ".SH NAME",
        "rollcap.toml \\- configuration of the rollcap capture and offload services",
        ".SH DESCRIPTION",
        esc(
            "/etc/rollcap.toml is read by rollcap-capture.service and rollcap-offload.service. "
            "Unknown keys and invalid values are errors (exit status 78)."
        ),
    ]
    for name, model, _ in _sections():
        out += [f".SH [{name.upper()}]", esc((model.__doc__ or "").strip())]
        for fname, field in model.model_fields.items():
            allowed = _allowed(field)
            out += [
                ".TP",
                f"\\fB{esc(fname)}\\fR = {breakable(esc(toml_value(_default(field))))}",
                esc((field.description or "") + (f" ({allowed})" if allowed else "")),
            ]
    out += [".SH SEE ALSO", "\\fBrollcap\\fR(8), \\fBtcpdump\\fR(8)"]
    return "\n".join(out) + "\n"
