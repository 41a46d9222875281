"""The guides in docs/ give commands and config an operator copies: each
`rollcap ...` line in their sh/console blocks must parse with the real parser
(and its window with the real time grammar), each toml block must pass the real
config schema, and README must link every guide."""

from __future__ import annotations

import re
import shlex
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rollcap.cli import build_parser
from rollcap.retrieve import timeexpr

REPO = Path(__file__).resolve().parents[2]
GUIDES = ["sizing.md", "alert-to-packets.md", "retention.md", "privacy.md", "fleet.md"]
PRESENT = [g for g in GUIDES if (REPO / "docs" / g).exists()]
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def blocks(guide: str, lang: str) -> list[str]:
    text = (REPO / "docs" / guide).read_text()
    return [body for kind, body in BLOCK.findall(text) if kind == lang]


def commands(guide: str) -> list[list[str]]:
    """Each rollcap invocation: continuation lines joined, up to a pipe, after any
    `ssh HOST sudo` in front."""
    found = []
    for body in blocks(guide, "sh") + blocks(guide, "console"):
        for line in body.replace("\\\n", " ").splitlines():
            words = shlex.split(line.removeprefix("$ "), comments=True)
            if "rollcap" not in words:
                continue
            words = words[words.index("rollcap") + 1 :]
            found.append(words[: words.index("|")] if "|" in words else words)
    return found


def test_readme_links_every_guide() -> None:
    readme = (REPO / "README.md").read_text()
    assert PRESENT, "no guide in docs/"
    for g in PRESENT:
        assert f"(docs/{g})" in readme, g


@pytest.mark.parametrize("guide", PRESENT)
def test_every_command_in_a_guide_parses(guide: str) -> None:
    cmds = commands(guide)
    if guide in {"alert-to-packets.md", "privacy.md", "fleet.md"}:
        assert cmds, f"{guide} shows no rollcap command"
    now = datetime(2026, 12, 7, 14, 20, tzinfo=UTC)
    for words in cmds:
        try:
            args = build_parser().parse_args(words)
        except SystemExit as e:  # argparse's refusal
            pytest.fail(f"{guide}: rollcap {shlex.join(words)}: refused ({e.code})")
        if args.command in {"list", "fetch", "hold"}:
            timeexpr.window_ns(
                args.since, args.until, around=args.around, before=args.before,
                after=args.after, now=now, default_span_ns=3600 * 10**9,
            )  # fmt: skip


@pytest.mark.parametrize("guide", PRESENT)
def test_every_config_in_a_guide_is_valid(guide: str) -> None:
    from rollcap.config.load import parse_config

    for body in blocks(guide, "toml"):
        parse_config(body, source=guide)  # raises (exit 78) on any error
