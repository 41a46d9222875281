"""What `rollcap list`, `fetch` and `hold` share: the window, host and interface
arguments, and the one selection of captures they act on.

Exit codes: 0 done; 1 nothing in the window, storage or I/O failure (access
denied names the S3 error code); 2 bad command line (time expression, host
name, BPF filter); 78 bad config.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from rollcap import exitcodes
from rollcap.config import RollcapConfig
from rollcap.errors import RollcapError, UsageError
from rollcap.journal import setup_logging
from rollcap.retrieve import timeexpr
from rollcap.retrieve.catalog import Capture
from rollcap.retrieve.select import (
    HOST_RE,
    Selection,
    Summary,
    collect,
    interfaces_in_window,
    select,
)
from rollcap.retrieve.timeexpr import TimeExprError, fmt_utc, fmt_utc_ns, widened
from rollcap.storage.base import Storage, StorageError
from rollcap.timestamps import NS

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


class NothingFound(RollcapError):
    exit_code = exitcodes.FAILURE


_NEGATIVE_VALUE = timeexpr.NEGATIVE_VALUE  # --since -15m (keep takes it from there)


def add_selection_arguments(p: argparse.ArgumentParser, *, default_span: int | None) -> None:
    """The window and host/interface arguments. ``default_span`` (ns): the window
    without --since or --around (up to --until); None: the command needs one."""
    p._negative_number_matcher = _NEGATIVE_VALUE
    p.set_defaults(default_span=default_span)
    default = (
        "default: an hour before --until" if default_span == 3600 * NS else "required, or --around"
    )
    p.add_argument("--since", metavar="TIME", help=f"window start ({default}): {timeexpr.HELP}")
    p.add_argument("--until", metavar="TIME", help="window end (default: now)")
    p.add_argument(
        "--around",
        metavar="TIME",
        help="instead of --since/--until: the window around TIME, "
        f"--before and --after it (default {timeexpr.DEFAULT_AROUND} each)",
    )
    p.add_argument("--before", metavar="DURATION", help="with --around: " + timeexpr.DURATION_HELP)
    p.add_argument("--after", metavar="DURATION", help="with --around: " + timeexpr.DURATION_HELP)
    p.add_argument(
        "-H",
        "--host",
        action="append",
        metavar="HOST",
        help="only this host (repeat, or comma-separate, for several; default: every host)",
    )
    p.add_argument("-i", "--interface", metavar="IFACE", help="only captures of this interface")
    p.add_argument("-v", "--verbose", action="store_true", help="log the prefixes listed")


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
        return timeexpr.window_ns(
            args.since,
            args.until,
            around=args.around,
            before=args.before,
            after=args.after,
            default_span_ns=args.default_span,
            command=args.command,
        )
    except TimeExprError as e:
        raise UsageError(str(e)) from None


def check_arguments(args: argparse.Namespace) -> None:
    """The window, hosts and interface, checked before anything is opened: a bad
    command line is exit 2 whatever the destination."""
    _window(args)
    _hosts(args)
    _iface(args)


def open_destination(cfg: RollcapConfig) -> Storage:
    from rollcap.storage import open_storage

    with storage_errors(cfg.offload.destination, "opening"):
        return open_storage(cfg.offload)


@contextmanager
def storage_errors(where: str, what: str) -> Iterator[None]:
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


def selection(args: argparse.Namespace, cfg: RollcapConfig, storage: Storage,
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


def nothing_found(args: argparse.Namespace, storage: Storage, sel: Selection) -> NothingFound:
    """Nothing in the window; a --host or --interface that names nothing there is
    answered with the ones that exist (one more listing, on this path only)."""
    iface = _iface(args)
    which = f" on interface {iface}" if iface else ""
    where = storage.describe()
    hosts = _hosts(args) or []
    with storage_errors(where, "listing"):
        known = sorted(sel.known_hosts()) if hosts else []
        missing = [h for h in hosts if h not in known]
        if missing and known:
            return NothingFound(
                f"no host {', '.join(map(repr, missing))} in {where}; hosts seen: " + _some(known)
            )
        ifaces = interfaces_in_window(sel) if iface else []
    if ifaces:
        return NothingFound(
            f"no captures on interface {iface!r} between {fmt_utc(sel.since)} and "
            f"{fmt_utc(sel.until)} in {where}; interfaces with captures then: {_some(ifaces)}"
        )
    return NothingFound(
        f"no captures between {fmt_utc(sel.since)} and {fmt_utc(sel.until)}{which} in "
        f"{where}; looked at {sel.summary.describe}"
    )


def _some(names: list[str], most: int = 20) -> str:
    shown = ", ".join(names[:most])
    return shown if len(names) <= most else f"{shown}, ... ({len(names)} in all)"


def find(args: argparse.Namespace, cfg: RollcapConfig, storage: Storage,
         workers: int) -> tuple[list[Capture], Summary, tuple[int, int]]:  # fmt: skip
    sel, window = selection(args, cfg, storage, workers)
    with storage_errors(storage.describe(), "listing"):
        caps = collect(sel)
    log.debug("looked at %s", sel.summary.describe)
    for line in rejected_lines(sel.summary):  # fetch and hold: on stderr, as list shows them
        print(f"rollcap: {line}", file=sys.stderr)
    if not caps:
        raise nothing_found(args, storage, sel)
    return caps, sel.summary, window


def setup(args: argparse.Namespace, cfg: RollcapConfig) -> None:
    setup_logging("debug" if args.verbose else max(cfg.log.level, "info", key=_rank), "rollcap")


def _rank(level: str) -> int:
    return ["debug", "info", "warning", "error"].index(level)


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


def capture_json(c: Capture) -> dict[str, Any]:
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
