"""The reliability table, written from the suite's own measurements.

Each case calls ``reliability.record(...)`` with what it counted, before it
asserts, so failing cases are reported too. At session end the table replaces
the block between the markers in docs/reliability.md (and in README.md when
it carries ``<!-- reliability:start -->`` / ``<!-- reliability:end -->``).
Rows of cases that did not run this time are kept as they were.
"""

from __future__ import annotations

import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

START, END = "<!-- reliability:start -->", "<!-- reliability:end -->"
HEADER = (
    "| case | result | runs | packets in | packets out | lost | duplicated | notes |\n"
    "|---|---|---:|---:|---:|---:|---:|---|"
)


@dataclass
class Row:
    case: str
    result: str = "not run"
    runs: int = 0
    packets_in: int | str = "-"
    packets_out: int | str = "-"
    lost: int | str = "-"
    duplicated: int | str = "-"
    notes: str = ""

    def markdown(self) -> str:
        notes = self.notes.replace("|", "\\|").replace("\n", " ")
        cells = [self.case, self.result, self.runs, self.packets_in, self.packets_out,
                 self.lost, self.duplicated, notes]  # fmt: skip
        return "| " + " | ".join(str(c) for c in cells) + " |"


@dataclass
class Results:
    rows: dict[str, Row] = field(default_factory=dict)  # by nodeid
    outcomes: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def record(self, nodeid: str, case: str, **kw: object) -> None:
        row = self.rows.setdefault(nodeid, Row(case))
        row.case = case
        for k, v in kw.items():
            setattr(row, k, v)

    def finished_rows(self) -> list[Row]:
        out = []
        for nodeid, row in self.rows.items():
            row.result = self.outcomes.get(nodeid, "error")
            out.append(row)
        return out


def _parse_rows(block: str) -> dict[str, str]:
    rows = {}
    for line in block.splitlines():
        m = re.match(r"^\| (.+?) \| ", line)
        if m and not line.startswith("| case |") and not line.startswith("|---"):
            rows[m.group(1)] = line
    return rows


def render_block(rows: list[Row], old_block: str, summary: str) -> str:
    merged = _parse_rows(old_block)
    for r in rows:
        merged[r.case] = r.markdown()
    body = "\n".join(merged[k] for k in sorted(merged, key=_case_order))
    return f"{START}\n{HEADER}\n{body}\n\n{summary}\n{END}"


def _case_order(case: str) -> tuple[int, str]:
    m = re.match(r"^(\d+)", case)
    return (int(m.group(1)) if m else 99, case)


def replace_block(text: str, block: str) -> str | None:
    i, j = text.find(START), text.find(END)
    if i < 0 or j < i:
        return None
    return text[:i] + block + text[j + len(END) :]


def write_reports(repo: Path, results: Results, counts: dict[str, int]) -> list[Path]:
    rows = results.finished_rows()
    if not rows:
        return []
    wall = time.time() - results.started
    tally = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()) if n)
    summary = (
        f"Last run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: `pytest tests/faults`, "
        f"{tally}, {wall:.0f} s wall time on {os.cpu_count()} cores, Linux "
        f"{platform.release()}. Written by tests/faults/results.py from the suite's own counts; "
        "method, cases and findings: docs/reliability.md."
    )
    written = []
    doc = repo / "docs" / "reliability.md"
    old = doc.read_text() if doc.exists() else ""
    i, j = old.find(START), old.find(END)
    old_block = old[i:j] if 0 <= i < j else ""
    block = render_block(rows, old_block, summary)
    new = replace_block(old, block) if old else None
    if new is None:
        new = (old.rstrip() + "\n\n" if old else "# Reliability\n\n") + block + "\n"
    doc.write_text(new)
    written.append(doc)
    readme = repo / "README.md"
    if readme.exists():
        text = readme.read_text()
        upd = replace_block(text, block)
        if upd is not None and upd != text:
            readme.write_text(upd)
            written.append(readme)
    return written
