"""rollcap(8), from the argparse parser in rollcap/cli.py.

The package builds it with debian/manpage.py (debian/rules); `rollcap man`
shows the same page from a clone. The option and command texts come from the
parser itself, so the page cannot drift from `rollcap --help`.
"""

from __future__ import annotations

import argparse

from rollcap import exitcodes
from rollcap.cli import COMMANDS, build_parser
from rollcap.commands import Command


def esc(s: str) -> str:
    s = s.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + ln) if ln.startswith((".", "'")) else ln for ln in s.split("\n"))


def _subparsers(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                out.append((name, helps.get(name, ""), sub))
    return out


def _options(sub: argparse.ArgumentParser) -> list[str]:
    lines: list[str] = []
    for a in sub._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        meta = a.metavar if isinstance(a.metavar, str) else None
        if a.option_strings:
            names = ", ".join(f"\\fB{esc(o)}\\fR" for o in a.option_strings)
            if a.nargs != 0:
                names += f" \\fI{esc(meta or a.dest.upper())}\\fR"
        else:
            names = f"\\fI{esc(meta or a.dest)}\\fR"
        text = a.help or ""
        if a.choices and not isinstance(a, argparse._SubParsersAction):
            text += " (one of: " + ", ".join(str(c) for c in a.choices) + ")"
        lines += [".TP", names, esc(text)]
    return lines


def _examples(command: Command) -> list[str]:
    """The examples that end the command's --help, one per line, comments as in --help."""
    lines = [".PP", "Examples:", ".RS", ".nf"]
    for line, note in command.EXAMPLES:
        lines.append(esc(line + (f"    # {note}" if note else "")))
    return [*lines, ".fi", ".RE"]


def _exit_status() -> list[str]:
    """Every code, from their one home (rollcap/exitcodes.py)."""
    lines: list[str] = []
    for code, text in exitcodes.DESCRIPTIONS:
        lines += [".TP", f"\\fB{esc(code)}\\fR", esc(text[:1].upper() + text[1:] + ".")]
    return lines


def render(version: str) -> str:
    parser = build_parser()
    out = [
        f'.TH ROLLCAP 8 "" "rollcap {esc(version)}" "System Administration"',
        ".SH NAME",
        "rollcap \\- " + esc(parser.description or ""),
        ".SH SYNOPSIS",
        "\\fBrollcap\\fR \\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
        ".br",
        "\\fBrollcap \\-\\-version\\fR",
        ".SH DESCRIPTION",
        esc(
            "rollcap runs tcpdump with rotation under rollcap-capture.service (as the "
            "unprivileged user rollcap-capture, with CAP_NET_RAW only; tcpdump runs as the "
            "same user) and hands finished files to a spool. "
            "rollcap-offload.service, running as the unprivileged user rollcap, compresses "
            "them, uploads them to S3 or a file:// archive, verifies and deletes them. "
            "Both read /etc/rollcap.toml, described in rollcap.toml(5)."
        ),
        ".SH COMMANDS",
    ]
    for name, help_, sub in _subparsers(parser):
        out += [".SS " + esc(name), esc(help_[:1].upper() + help_[1:] + ".")]
        usage = sub.format_usage().strip().removeprefix("usage: ")
        out += [".PP", "\\fB" + esc(usage) + "\\fR"]
        out += [".RS", *_options(sub), ".RE", *_examples(COMMANDS[name])]
    out += [
        ".SH SERVICES",
        ".TP",
        "\\fBrollcap\\-capture.service\\fR",
        esc("Runs rollcap capture as user rollcap-capture. systemctl reload runs rollcap "
            "reload: the daemon re-reads the config, and a file it rejects makes the reload "
            "fail with the reason while capture goes on unchanged; an unchanged file cuts "
            "the current file now, as rollcap rotate does."),
        ".TP",
        "\\fBrollcap\\-offload.service\\fR",
        esc("Runs rollcap offload as user rollcap; it reads the config at start only "
            "(rollcap check-config, then systemctl restart). S3 keys may be given as an AWS "
            "shared-credentials file /etc/credstore/rollcap-s3-credentials (mode 0600, "
            "owner root), "
            "passed to the service with LoadCredential=."),
        ".PP",
        esc("Neither is enabled at installation: edit /etc/rollcap.toml, check it with "
            "rollcap check-config, then systemctl enable --now rollcap-capture "
            "rollcap-offload. Both log to the journal with ROLLCAP_* fields "
            "(journalctl -u rollcap-offload -o json)."),
        ".SH FILES",
        ".TP", "\\fI/etc/rollcap.toml\\fR", esc("Configuration, see rollcap.toml(5)."),
        ".TP", "\\fI/etc/credstore/rollcap\\-s3\\-credentials\\fR", esc("Optional S3 credentials."),
        ".TP", "\\fI/var/spool/rollcap\\fR",
        esc("Spool: work/ capture/ ready/ quarantine/ tmp/ state/."),
        ".TP", "\\fI/var/lib/rollcap/archive\\fR", esc("Default file:// archive."),
        ".SH EXIT STATUS",
        *_exit_status(),
        ".SH SEE ALSO",
        "\\fBrollcap.toml\\fR(5), \\fBtcpdump\\fR(8), \\fBsystemctl\\fR(1), "
        "\\fBjournalctl\\fR(1)",
    ]  # fmt: skip
    return "\n".join(out) + "\n"
