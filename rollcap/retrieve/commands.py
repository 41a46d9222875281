"""`rollcap list` and `rollcap fetch`: find and fetch captures by time, host and filter.

Exit codes: 0 done; 1 nothing in the window, storage or I/O failure (access
denied names the S3 error code); 2 bad command line (time expression, host
name, BPF filter); 78 bad config.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from rollcap import exitcodes
from rollcap.config import RollcapConfig
from rollcap.errors import RollcapError, UsageError
from rollcap.journal import setup_logging
from rollcap.retrieve.catalog import Capture
from rollcap.retrieve.coverage import MIN_GAP
from rollcap.retrieve.output import resolve_output
from rollcap.retrieve.select import HOST_RE, Selection, Summary, collect, select
from rollcap.retrieve.timeexpr import (
    TimeExprError,
    fmt_epoch,
    fmt_utc,
    fmt_utc_ns,
    parse_window_ns,
    widened,
)
from rollcap.storage.base import Storage, StorageError

if TYPE_CHECKING:
    from rollcap.retrieve.fetch import FetchResult

log = logging.getLogger("rollcap.retrieve")

# how long after capture.rotate_seconds a file may still be on its way to the bucket
SETTLE = timedelta(minutes=2)
_HOST_RE = HOST_RE
_IFACE_RE = re.compile(r"^[A-Za-z0-9_.@:+-]{1,15}$")
_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
    "AccountProblem",
    "InvalidToken",
    "ExpiredToken",
    "403",
}
_TIME_HELP = (
    "ISO 8601 (2026-11-26T12:00:00Z, '2026-11-26 13:00+01:00'; without a zone it is local "
    "time), 'now', relative -15m / -2h / -1d, or @EPOCH"
)


class NothingFound(RollcapError):
    exit_code = exitcodes.FAILURE


# argparse takes "--since -15m" for an option because "-15m" starts with '-';
# its (private, long-stable) negative-number matcher decides what counts as a
# value. Extend it to relative times so the documented form just works.
_NEGATIVE_VALUE = re.compile(r"^-(\d+(\.\d+)?[smhdw])+$|^-\d+$|^-\d*\.\d+$")


def _common(p: argparse.ArgumentParser) -> None:
    p._negative_number_matcher = _NEGATIVE_VALUE
    p.add_argument("--since", required=True, metavar="TIME", help="window start; " + _TIME_HELP)
    p.add_argument("--until", default="now", metavar="TIME", help="window end (default: now)")
    p.add_argument(
        "--host",
        action="append",
        metavar="HOST",
        help="only this host (repeat, or comma-separate, for several; default: every host)",
    )
    p.add_argument("--interface", metavar="IFACE", help="only captures of this interface")
    p.add_argument("-v", "--verbose", action="store_true", help="log the prefixes listed")


def add_list_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "List stored captures whose packets overlap [--since, --until). Times are shown in UTC."
    )
    _common(p)
    p.add_argument("--json", action="store_true", help="print a JSON array")


def add_fetch_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Fetch the packets in [--since, --until) of the matching captures, merged by "
        "timestamp into one classic pcap (written atomically)."
    )
    _common(p)
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="pcap file to write (a new file), or - for stdout (| tcpdump -r -)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument(
        "--filter", default="", metavar="BPF", help="keep only packets matching this tcpdump filter"
    )
    p.add_argument(
        "--pcapng",
        action="store_true",
        help="write pcapng (via mergecap); needed when the captures have different link types",
    )
    p.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="parallel downloads (default: offload.concurrency)",
    )
    p.add_argument(
        "--max-bytes",
        type=_size,
        metavar="SIZE",
        help="decompress at most this much (e.g. 500M, 2G): refused up front when the "
        "captures record more; an object that decompresses past it is stopped",
    )


_SIZE_RE = re.compile(r"^(\d+)([KMGT]?)B?$", re.I)


def _size(text: str) -> int:
    """Bytes, or with a K/M/G/T suffix (powers of 1000, as the spool's megabytes)."""
    m = _SIZE_RE.fullmatch(text.strip())
    if not m or int(m[1]) == 0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a positive size in bytes, or with K, M, G or T (e.g. 500M)"
        )
    scale: int = 1000 ** " KMGT".index(m[2].upper() or " ")
    return int(m[1]) * scale


def _hosts(args: argparse.Namespace) -> list[str] | None:
    if not args.host:
        return None
    hosts = [h.strip() for item in args.host for h in item.split(",") if h.strip()]
    for h in hosts:
        if not _HOST_RE.fullmatch(h) or ".." in h:
            raise UsageError(f"--host {h!r}: a host name of letters, digits, '.' and '-'")
    return hosts or None


def _iface(args: argparse.Namespace) -> str | None:
    iface: str | None = args.interface
    if iface is not None and not _IFACE_RE.fullmatch(iface):
        raise UsageError(f"--interface {iface!r}: 1-15 characters of A-Z a-z 0-9 _ . @ : + -")
    return iface


def _window(args: argparse.Namespace) -> tuple[int, int]:
    """[--since, --until) in epoch ns (exact: fetch cuts nanosecond captures there)."""
    try:
        return parse_window_ns(args.since, args.until)
    except TimeExprError as e:
        raise UsageError(str(e)) from None


def _open(cfg: RollcapConfig) -> Storage:
    from rollcap.storage import open_storage

    with _storage_errors(cfg.offload.destination, "opening"):
        return open_storage(cfg.offload)


@contextmanager
def _storage_errors(where: str, what: str) -> Iterator[None]:
    """One operator-facing line for any failure talking to the destination."""
    try:
        yield
    except StorageError as e:  # storage implementations raise nothing else
        code = e.code or ""
        msg = str(e)
        if code and code not in msg:
            msg = f"{msg} ({code})"
        if code in _DENIED:
            raise RollcapError(f"access denied {what} {where}: {msg}") from None
        raise RollcapError(f"{what} {where} failed: {msg}") from None


def _selection(args: argparse.Namespace, cfg: RollcapConfig, storage: Storage,
               workers: int) -> tuple[Selection, tuple[int, int]]:  # fmt: skip
    """The one selection of captures that list, fetch (and hold) share, and the
    window in ns. The selection's datetimes are the window widened to whole µs
    (a superset of the packets: fetch cuts at the exact ns)."""
    window = _window(args)
    since, until = widened(window)
    sel = select(
        storage,
        template=cfg.offload.key_template,
        prefix=storage.key_prefix,
        since=since,
        until=until,
        hosts=_hosts(args),
        iface=_iface(args),
        settled_until=settled_until(cfg),
        workers=workers,
        rotate=timedelta(seconds=cfg.capture.rotate_seconds),
    )
    return sel, window


def settled_until(cfg: RollcapConfig, now: datetime | None = None) -> datetime:
    """Captures newer than this may still be open or waiting on their host."""
    now = now or datetime.now(UTC)
    return now - timedelta(seconds=cfg.capture.rotate_seconds) - SETTLE


def _nothing(args: argparse.Namespace, storage: Storage, sel: Selection) -> NothingFound:
    iface = _iface(args)
    which = f" on interface {iface}" if iface else ""
    return NothingFound(
        f"no captures between {fmt_utc(sel.since)} and {fmt_utc(sel.until)}{which} in "
        f"{storage.describe()}; looked at {sel.summary.describe}"
    )


def _find(args: argparse.Namespace, cfg: RollcapConfig, storage: Storage,
          workers: int) -> tuple[list[Capture], Summary, tuple[int, int]]:  # fmt: skip
    sel, window = _selection(args, cfg, storage, workers)
    with _storage_errors(storage.describe(), "listing"):
        caps = collect(sel)
    log.debug("looked at %s", sel.summary.describe)
    for line in rejected_lines(sel.summary):  # fetch and hold: on stderr, as list shows them
        print(f"rollcap: {line}", file=sys.stderr)
    if not caps:
        raise _nothing(args, storage, sel)
    return caps, sel.summary, window


def _setup(args: argparse.Namespace, cfg: RollcapConfig) -> None:
    setup_logging("debug" if args.verbose else max(cfg.log.level, "info", key=_rank), "rollcap")


def _rank(level: str) -> int:
    return ["debug", "info", "warning", "error"].index(level)


def _local_notes(cfg: RollcapConfig) -> None:
    from rollcap.capture.openfiles import local_notes

    for note in local_notes(cfg):
        print(f"rollcap: note: {note}", file=sys.stderr)


def run_list(args: argparse.Namespace, cfg: RollcapConfig) -> int:
    _setup(args, cfg)
    storage = _open(cfg)
    out = sys.stdout
    try:
        sel, _window_ns = _selection(args, cfg, storage, workers=16)
        with _storage_errors(storage.describe(), "listing"):
            if args.json:
                _write_json(out, sel)
            else:
                _write_table(out, sel)
        out.flush()  # a closed pipe: BrokenPipeError, the rule of rollcap.cli
    finally:
        storage.close()
    _local_notes(cfg)  # files on this host not in the bucket yet
    log.debug("looked at %s", sel.summary.describe)
    if not sel.summary.hosts_with_captures:
        raise _nothing(args, storage, sel)
    return 0


def _write_table(out: TextIO, sel: Selection) -> None:
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
    out.write(render_summary(sel))


def _flush_rows(out: TextIO, caps: list[Capture], widths: list[int]) -> list[int]:
    text, new = table_rows(caps, widths, header=not widths)
    out.write(text)
    return new


def _write_json(out: TextIO, sel: Selection) -> None:
    """One JSON object: window, captures (streamed), coverage."""
    out.write("{\n")
    out.write(f'  "since": {json.dumps(fmt_utc(sel.since))},\n')
    out.write(f'  "until": {json.dumps(fmt_utc(sel.until))},\n')
    out.write('  "captures": [')
    first = True
    for r in sel:
        for c in r.captures:
            out.write(("\n    " if first else ",\n    ") + json.dumps(_as_json(c)))
            first = False
    out.write("\n  ],\n" if not first else "],\n")
    cov = json.dumps(coverage_json(sel), indent=2).replace("\n", "\n  ")
    out.write(f'  "coverage": {cov}\n}}\n')


def coverage_json(sel: Selection) -> dict[str, Any]:
    s = sel.summary
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
            for g in s.gaps
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


MAX_REJECTED_LINES = 50


def rejected_lines(s: Summary) -> list[str]:
    """Entries (and objects) not believed, one line each (at most MAX_REJECTED_LINES)."""
    if not s.rejected:
        return []
    lines = [
        f"{len(s.rejected)} index entries or objects rejected (not shown, not fetched): "
        "they claim what their writer may not claim (docs/retrieve.md, trust model)"
    ]
    lines += [f"rejected: {r.entry}: {r.reason}" for r in s.rejected[:MAX_REJECTED_LINES]]
    if len(s.rejected) > MAX_REJECTED_LINES:
        lines.append(f"rejected: ... and {len(s.rejected) - MAX_REJECTED_LINES} more (--json)")
    return lines


def render_summary(sel: Selection) -> str:
    """The coverage of the window, as '#' lines after the table."""
    s = sel.summary
    lines = [
        f"# coverage {fmt_utc(sel.since)} .. {fmt_utc(sel.until)}: {s.hosts_seen} hosts seen, "
        f"{s.hosts_with_captures} with captures, {len(s.without)} without"
    ]
    if s.without:
        lines.append("# no capture in the window: " + ", ".join(s.without))
    for g in s.gaps:
        lines.append(
            f"# gap: {g.host} {g.iface} {fmt_epoch(g.start)} .. {fmt_epoch(g.end)} "
            f"({g.seconds:.0f} s without a capture)"
        )
    lines += ["# " + line for line in rejected_lines(s)]
    if sel.settled_until < sel.until:
        lines.append(
            f"# after {fmt_utc(sel.settled_until)} captures may still be on their hosts "
            "(capture.rotate_seconds + 2 min): not counted as gaps"
        )
    return "".join(line + "\n" for line in lines)


def _as_json(c: Capture) -> dict[str, Any]:
    return {
        "key": c.key,
        "host": c.host,
        "iface": c.iface,
        "first": fmt_utc_ns(c.first_ns) if c.first_ns is not None else None,
        "last": fmt_utc_ns(c.last_ns) if c.last_ns is not None else None,
        "first_ts": c.first_ts,
        "last_ts": c.last_ts,
        # exact (a float of seconds cannot hold a nanosecond capture's times)
        "first_ns": c.first_ns,
        "last_ns": c.last_ns,
        "opened": fmt_utc(c.start) if c.start else None,
        "packets": c.packets,
        "size": c.size,
        "pcap_bytes": c.pcap_bytes,
        "linktype": c.linktype,
        "metadata": c.has_metadata,
    }


def _human(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    raise AssertionError


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
            _human(c.size),
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


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(exitcodes.by_signal(signum))


def run_fetch(args: argparse.Namespace, cfg: RollcapConfig) -> int:
    from rollcap.retrieve.fetch import fetch
    from rollcap.retrieve.progress import Progress

    _setup(args, cfg)
    # SIGTERM unwinds like Ctrl-C, so the temp directory is removed
    signal.signal(signal.SIGTERM, _terminated)
    workers = args.jobs if args.jobs is not None else cfg.offload.concurrency
    if not 1 <= workers <= 64:
        raise UsageError(f"--jobs {workers}: between 1 and 64")
    output = resolve_output(args.output, force=args.force)  # before any download
    storage = _open(cfg)
    try:
        caps, _summary, window = _find(args, cfg, storage, workers=max(workers, 8))
        since, until = widened(window)
        progress = Progress(len(caps), sum(c.size for c in caps))
        with _storage_errors(storage.describe(), "downloading from"):
            result = fetch(
                storage,
                caps,
                since=since,
                until=until,
                window_ns=window,
                output=output,
                bpf_filter=args.filter,
                tcpdump=cfg.capture.tcpdump_path,
                workers=workers,
                pcapng=args.pcapng,
                max_bytes=args.max_bytes,
                progress=progress,
            )
    except BrokenPipeError:
        raise  # the reader of `-o -` went away: the rule of rollcap.cli
    except OSError as e:
        raise RollcapError(f"fetch into {output.describe()}: {e}") from None
    finally:
        storage.close()
    print("rollcap: " + summary(result, sorted({c.host for c in caps})), file=sys.stderr)
    if result.refused:
        # the output holds the rest; a script must not take it for the whole window
        print(f"rollcap: error: {_plural(len(result.refused), 'object')} refused (named "
              "above): the output lacks their packets", file=sys.stderr)  # fmt: skip
        return exitcodes.FAILURE
    return exitcodes.OK


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def summary(result: FetchResult, hosts: list[str]) -> str:
    """One line for stderr: what was written (its own size) and what was downloaded."""
    return (
        f"wrote {result.output.describe()}: {_plural(result.packets, 'packet')} "
        f"({_human(result.pcap_bytes)}) from {_plural(result.objects, 'object')} "
        f"({_human(result.downloaded_bytes)} downloaded) of {', '.join(hosts)}"
    )


# For commands that act on exactly what `rollcap list` selects (rollcap hold).
add_selection_arguments = _common
open_destination = _open
setup = _setup
capture_json = _as_json


def select_captures(args: argparse.Namespace, cfg: RollcapConfig, storage: Storage
                    ) -> list[Capture]:  # fmt: skip
    """The captures `rollcap list` shows for these arguments (NothingFound if none)."""
    return _find(args, cfg, storage, workers=8)[0]
