"""`rollcap list`: the stored captures whose packets overlap a window, and the
window's coverage: which hosts have none, and gaps (exit codes: _selection)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from rollcap.commands import _config
from rollcap.commands._format import human_bytes
from rollcap.commands._selection import (
    add_selection_arguments,
    capture_json,
    log,
    nothing_found,
    open_destination,
    rejected_lines,
    selection,
    setup,
    storage_errors,
)
from rollcap.config.schema import RollcapConfig
from rollcap.retrieve.catalog import Capture
from rollcap.retrieve.coverage import MIN_GAP
from rollcap.retrieve.select import Selection
from rollcap.retrieve.timeexpr import fmt_epoch, fmt_utc
from rollcap.timestamps import NS

if TYPE_CHECKING:
    from rollcap.keep.local import HeldSpan

HELP = "list captures overlapping a time window"
DESCRIPTION = (
    "List stored captures whose packets overlap [--since, --until). Times are shown in UTC."
)
# `--help` ends with these (and rollcap(8)); tests/unit/test_cli.py parses each
EXAMPLES: tuple[tuple[str, str | None], ...] = (
    ("rollcap list", "the last hour, every host"),
    ("rollcap list --since '10 min ago' -H web1 -i eth0", None),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    _config.add_config_argument(p)
    add_selection_arguments(p, default_span=3600 * NS)
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.add_argument(
        "--local", action="store_true",
        help="what this host's spool holds for the window (the flight recorder's ring; kept "
        "or not), not the bucket",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    cfg = _config.load_for_reading(args)
    if args.local:
        return _run_local(args, cfg)
    setup(args, cfg)
    storage = open_destination(cfg)
    out = sys.stdout
    try:
        sel, window_ns = selection(args, cfg, storage, workers=16)
        ring = ring_spans(args, cfg, window_ns)
        with storage_errors(storage.describe(), "listing"):
            if args.json:
                _write_json(out, sel, ring)
            else:
                _write_table(out, sel, ring)
        out.flush()  # a closed pipe: BrokenPipeError, the rule of rollcap.cli
    finally:
        storage.close()
    for note in local_notes(cfg):  # files on this host not in the bucket yet
        print(f"rollcap: note: {note}", file=sys.stderr)
    log.debug("looked at %s", sel.summary.describe)
    if not sel.summary.hosts_with_captures:
        raise nothing_found(args, storage, sel)
    return 0


def ring_spans(args: argparse.Namespace, cfg: RollcapConfig,
               window_ns: tuple[int, int]) -> list[HeldSpan]:  # fmt: skip
    """On-demand mode: what this host's ring holds of the window, shown as its own
    state and not as gaps (other hosts' rings cannot be seen from here:
    docs/capture.md, "Coverage"). Nothing when the spool cannot be read."""
    from pathlib import Path

    from rollcap.commands._selection import _hosts, _iface
    from rollcap.keep.local import held, spans
    from rollcap.spool.readyname import local_hostname

    host = local_hostname(cfg.capture.hostname)
    hosts = _hosts(args)
    if cfg.offload.mode != "on-demand" or (hosts and host not in hosts):
        return []
    try:
        files = held(Path(cfg.spool.directory), *window_ns, _iface(args))
    except OSError as e:
        print(f"rollcap: note: this host's ring ({cfg.spool.directory}/ready) is not read: "
              f"{e.strerror}; what it holds may show as gaps (`rollcap list --local` as root "
              "or group rollcap)", file=sys.stderr)  # fmt: skip
        return []
    return spans(files, host, window_ns[0] / NS, window_ns[1] / NS)


def local_notes(cfg: RollcapConfig) -> list[str]:
    """Captures on this host not in the archive yet: the file tcpdump is writing now
    (until it is cut: rotate_seconds, or `rollcap rotate`) and finished files still
    waiting in ready/ for offload."""
    from rollcap.capture import lock
    from rollcap.spool import Spool
    from rollcap.spool.readyname import ReadyName
    from rollcap.spool.state import read_state

    spool = Spool.at(cfg.spool.directory)
    notes: list[str] = []
    try:
        running = lock.holder(spool.capture_state) is not None
    except OSError:
        running = False
    st = read_state(spool.state_file("capture")) or {}
    active, since = st.get("active_file"), st.get("active_since")
    if running and isinstance(active, str):
        when = ""
        if isinstance(since, int | float):
            when = time.strftime(" since %Y-%m-%d %H:%M:%S UTC", time.gmtime(since))
        notes.append(
            f"still open on this host: {active[:200]!r}{when}, not listed until it is cut "
            "(`rollcap rotate` hands it off now)"
        )
    try:
        waiting = [n for n in spool.ready.iterdir() if ReadyName.parse(n.name)]
    except OSError:
        waiting = []
    if waiting and cfg.offload.mode == "on-demand":
        notes.append(
            f"the ring on this host holds {len(waiting)} finished file(s), uploaded only "
            "when kept (`rollcap list --local`, `rollcap keep`)"
        )
    elif waiting:
        notes.append(
            f"{len(waiting)} finished file(s) on this host wait in {spool.ready} for upload"
        )
    return notes


def _run_local(args: argparse.Namespace, cfg: RollcapConfig) -> int:
    """--local: the ring's files for the window, read from the spool (rollcap.keep.local)."""
    from pathlib import Path

    from rollcap.commands._selection import _hosts, _iface, _window
    from rollcap.errors import RollcapError
    from rollcap.keep.local import held

    since, until = _window(args)
    try:
        files = held(Path(cfg.spool.directory), since, until, _iface(args), _hosts(args))
    except PermissionError:
        raise RollcapError(f"cannot read {cfg.spool.directory}/ready: permission denied "
                           "(root and group rollcap may)") from None  # fmt: skip
    except FileNotFoundError:
        files = []
    if args.json:
        json.dump([{"name": f.name, "interface": f.iface, "start": fmt_epoch(f.start_ns / NS),
                    "last_write": fmt_epoch(f.end_ns / NS), "bytes": f.size,
                    "keep_id": f.keep_id or None} for f in files], sys.stdout)  # fmt: skip
        sys.stdout.write("\n")
    else:
        for f in files:
            print(f"{fmt_epoch(f.start_ns / NS)}  {fmt_epoch(f.end_ns / NS)}  "
                  f"{human_bytes(f.size):>9}  {f.state:<12}  {f.name}")  # fmt: skip
        kept = sum(1 for f in files if f.keep_id)
        print(f"# {len(files)} file(s) held on this host ({kept} kept), "
              f"{human_bytes(sum(f.size for f in files))}")  # fmt: skip
    return 0 if files else 1


def _write_table(out: TextIO, sel: Selection, ring: list[HeldSpan] | None = None) -> None:
    """Rows as hosts come (bounded memory), then the coverage summary as '#' lines."""
    widths: list[int] = []
    batch: list[Capture] = []
    for r in sel:
        batch += r.captures
        if len(batch) >= 500:
            widths = _flush_rows(out, batch, widths)
            batch = []
    if batch or not widths:
        _flush_rows(out, batch, widths)
    out.write(render_summary(sel, ring))


def _flush_rows(out: TextIO, caps: list[Capture], widths: list[int]) -> list[int]:
    text, new = table_rows(caps, widths, header=not widths)
    out.write(text)
    return new


def _write_json(out: TextIO, sel: Selection, ring: list[HeldSpan] | None = None) -> None:
    """One JSON object: window, captures (streamed), coverage."""
    out.write("{\n")
    out.write(f'  "since": {json.dumps(fmt_utc(sel.since))},\n')
    out.write(f'  "until": {json.dumps(fmt_utc(sel.until))},\n')
    out.write('  "captures": [')
    first = True
    for r in sel:
        for c in r.captures:
            out.write(("\n    " if first else ",\n    ") + json.dumps(capture_json(c)))
            first = False
    out.write("\n  ],\n" if not first else "],\n")
    cov = json.dumps(coverage_json(sel, ring), indent=2).replace("\n", "\n  ")
    out.write(f'  "coverage": {cov}\n}}\n')


def coverage_json(sel: Selection, ring: list[HeldSpan] | None = None) -> dict[str, Any]:
    from rollcap.keep.local import uncovered

    s = sel.summary
    ring = ring or []
    return {
        "hosts_seen": s.hosts_seen,
        "hosts_with_captures": s.hosts_with_captures,
        "hosts_without_capture": s.without,
        "gaps": [
            {
                "host": g.host,
                "iface": g.iface,
                "start": fmt_epoch(g.start),
                "end": fmt_epoch(g.end),
                "seconds": round(g.seconds, 3),
            }
            for g in uncovered(s.gaps, ring)
        ],
        "held_locally": [
            {
                "host": h.host,
                "iface": h.iface,
                "start": fmt_epoch(h.start),
                "end": fmt_epoch(h.end),
                "files": h.files,
                "kept_files": h.kept,
            }
            for h in ring
        ],
        "settled_until": fmt_utc(sel.settled_until),
        "min_gap_seconds": MIN_GAP,
        "source": s.mode,
        "hosts_checked_by_listing": s.checked,
        "rejected_entries": len(s.rejected),
        "rejected": [
            {"entry": r.entry, "host": r.host, "key": r.key, "reason": r.reason} for r in s.rejected
        ],
    }


def render_summary(sel: Selection, ring: list[HeldSpan] | None = None) -> str:
    """The coverage of the window, as '#' lines after the table."""
    from rollcap.keep.local import uncovered

    s = sel.summary
    ring = ring or []
    lines = [
        f"# coverage {fmt_utc(sel.since)} .. {fmt_utc(sel.until)}: {s.hosts_seen} hosts seen, "
        f"{s.hosts_with_captures} with captures, {len(s.without)} without"
    ]
    if s.without:
        lines.append("# no capture in the window: " + ", ".join(s.without))
    for g in uncovered(s.gaps, ring):
        lines.append(
            f"# gap: {g.host} {g.iface} {fmt_epoch(g.start)} .. {fmt_epoch(g.end)} "
            f"({g.seconds:.0f} s without a capture)"
        )
    for h in ring:
        kept = f", {h.kept} kept: shipping" if h.kept else ""
        lines.append(
            f"# held locally, not shipped: {h.host} {h.iface} {fmt_epoch(h.start)} .. "
            f"{fmt_epoch(h.end)} ({h.files} file(s) in this host's ring{kept}; "
            "`rollcap list --local`, `rollcap keep` ships it)"
        )
    lines += ["# " + line for line in rejected_lines(s)]
    if sel.settled_until < sel.until:
        lines.append(
            f"# after {fmt_utc(sel.settled_until)} captures may still be on their hosts "
            "(capture.rotate_seconds + 2 min): not counted as gaps"
        )
    return "".join(line + "\n" for line in lines)


def _time(ts: float | None) -> str:
    """UTC with milliseconds, always the same width."""
    if ts is None:
        return "?"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:23]


def render_table(caps: list[Capture]) -> str:
    """Columns: key, host, iface, first, last (UTC), packets, size (stored)."""
    return table_rows(caps, [], header=True)[0]


_HEAD = ("KEY", "HOST", "IFACE", "FIRST (UTC)", "LAST (UTC)", "PACKETS", "SIZE")


def table_rows(caps: list[Capture], widths: list[int], header: bool) -> tuple[str, list[int]]:
    """Rows of the table, columns at least ``widths`` wide; returns the widths used."""
    rows = [
        (
            c.key,
            c.host,
            c.iface,
            _time(c.first_ts)
            if c.has_metadata
            else _time(c.start.timestamp() if c.start else None) + "~",
            _time(c.last_ts),
            str(c.packets) if c.packets is not None else "?",
            human_bytes(c.size),
        )
        for c in caps
    ]
    widths = [
        max([len(r[i]) for r in [_HEAD, *rows]] + widths[i : i + 1]) for i in range(len(_HEAD))
    ]
    right = {5, 6}

    def line(r: tuple[str, ...]) -> str:
        cells = [r[i].rjust(w) if i in right else r[i].ljust(w) for i, w in enumerate(widths)]
        return "  ".join(cells).rstrip() + "\n"

    return "".join(line(r) for r in ([_HEAD] if header else []) + rows), widths
