"""Bash completion for `rollcap`, generated from its parser (rollcap/cli.py and
rollcap/commands/*), so a new command or option completes without an edit here.

Completed: subcommands; each one's options; the values of options with
choices; files for --config and -w/-o; interfaces (/sys/class/net) for -i;
hosts for -H from `rollcap completion --hosts` (this host, and the hosts below
the destination's prefix: one delimited listing, cut off after 2 s).
"""

from __future__ import annotations

import argparse
import shlex

FILE_METAVARS = frozenset({"PATH", "FILE"})


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def table(parser: argparse.ArgumentParser) -> dict[str, dict[str, list[str]]]:
    """command -> {"options": [...], "valued": [...], "files": [...], "choices:OPT": [...],
    "positional": [choices of its positional argument]}."""
    out: dict[str, dict[str, list[str]]] = {}
    for name, sub in _subparsers(parser).items():
        t: dict[str, list[str]] = {"options": [], "valued": [], "files": [], "positional": []}
        for a in sub._actions:
            if not a.option_strings:
                t["positional"] += [str(c) for c in a.choices or ()]
                continue
            t["options"] += a.option_strings
            if a.nargs == 0:
                continue
            t["valued"] += a.option_strings
            if a.metavar in FILE_METAVARS:
                t["files"] += a.option_strings
            for o in a.option_strings:
                if a.choices:
                    t[f"choices:{o}"] = [str(c) for c in a.choices]
        out[name] = t
    return out


def _words(items: list[str]) -> str:
    return shlex.quote(" ".join(items))


def render_bash(parser: argparse.ArgumentParser) -> str:
    t = table(parser)
    cases: list[str] = []
    for name, c in t.items():
        lines = [f"        {name})",
                 f"            opts={_words(c['options'])}",
                 f"            valued={_words(c['valued'])}",
                 f"            files={_words(c['files'])}",
                 f"            positional={_words(c['positional'])}"]  # fmt: skip
        choices = [(k.split(":", 1)[1], v) for k, v in c.items() if k.startswith("choices:")]
        if choices:
            lines.append('            case "$prev" in')
            for opt, vals in choices:
                lines.append(f"                {opt}) choices={_words(vals)} ;;")
            lines.append("            esac")
        lines.append("            ;;")
        cases += lines
    top = [*t, "--help", "--version"]
    return "\n".join([
        "# bash completion for rollcap, generated from its parser: rollcap completion bash",
        "_rollcap_hosts() {",
        "    local config=\"\" i",
        "    for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do",
        "        [[ ${COMP_WORDS[i]} == --config ]] && config=${COMP_WORDS[i + 1]}",
        "    done",
        "    timeout 2 \"${COMP_WORDS[0]}\" completion --hosts ${config:+--config \"$config\"}"
        " 2>/dev/null",
        "}",
        "",
        "_rollcap() {",
        "    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}",
        "    local cmd=\"\" i opts=\"\" valued=\"\" files=\"\" positional=\"\" choices=\"\"",
        "    COMPREPLY=()",
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        "        [[ ${COMP_WORDS[i]} != -* ]] && { cmd=${COMP_WORDS[i]}; break; }",
        "    done",
        "    if [[ -z $cmd ]]; then",
        f"        mapfile -t COMPREPLY < <(compgen -W {_words(top)} -- \"$cur\")",
        "        return",
        "    fi",
        "    case $cmd in",
        *cases,
        "        *) return ;;",
        "    esac",
        "    if [[ -n $choices ]]; then",
        "        mapfile -t COMPREPLY < <(compgen -W \"$choices\" -- \"$cur\")",
        "        return",
        "    fi",
        "    if [[ \" $valued \" == *\" $prev \"* ]]; then",
        "        case $prev in",
        "            -H | --host)",
        "                mapfile -t COMPREPLY < <(compgen -W \"$(_rollcap_hosts)\" -- \"$cur\") ;;",
        "            -i | --interface)",
        "                mapfile -t COMPREPLY < <(compgen -W \"$(ls /sys/class/net 2>/dev/null)\""
        " -- \"$cur\") ;;",
        "            *)",
        "                if [[ \" $files \" == *\" $prev \"* ]]; then",
        "                    compopt -o filenames 2>/dev/null",
        "                    mapfile -t COMPREPLY < <(compgen -f -- \"$cur\")",
        "                fi ;;",
        "        esac",
        "        return",
        "    fi",
        "    if [[ $cur == -* || -z $positional ]]; then",
        "        mapfile -t COMPREPLY < <(compgen -W \"$opts\" -- \"$cur\")",
        "    else",
        "        mapfile -t COMPREPLY < <(compgen -W \"$positional\" -- \"$cur\")",
        "    fi",
        "}",
        "complete -F _rollcap rollcap",
        "",
    ])  # fmt: skip
