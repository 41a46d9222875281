"""`rollcap fetch`: the packets of a window, from the stored captures, merged by
timestamp into one pcap (exit codes: _selection)."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rollcap import exitcodes
from rollcap.commands import _config
from rollcap.commands._format import human_bytes
from rollcap.commands._selection import (
    NothingFound,
    add_selection_arguments,
    check_arguments,
    find,
    open_destination,
    setup,
    storage_errors,
)
from rollcap.errors import RollcapError, UsageError
from rollcap.retrieve.output import resolve_output
from rollcap.retrieve.timeexpr import widened
from rollcap.sizes import SIZE_EXAMPLES, parse_size
from rollcap.timestamps import NS

if TYPE_CHECKING:
    from rollcap.config.schema import RollcapConfig
    from rollcap.retrieve.fetch import FetchResult
    from rollcap.retrieve.output import Output

HELP = "fetch packets of a time window into one pcap"
DESCRIPTION = (
    "Fetch the packets in [--since, --until) of the matching captures, merged by "
    "timestamp into one classic pcap (written atomically). Like tcpdump: -i for the "
    "interface, -w for the output file (-w - for stdout) and a filter expression after "
    "the options."
)
# `--help` ends with these (and rollcap(8)); tests/unit/test_cli.py parses each
EXAMPLES: tuple[tuple[str, str | None], ...] = (
    (
        "rollcap fetch --since 10m -H web1 -w x.pcap tcp port 443",
        "a trailing filter, as tcpdump takes one",
    ),
    ("rollcap fetch --around 12:45 --before 2m --after 1m -w - | tcpdump -nr -", None),
    ("rollcap fetch --local --since 5m -w x.pcap", "from this host's ring, not the bucket"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    _config.add_config_argument(p)
    add_selection_arguments(p, default_span=None)
    p.add_argument(
        "-w",
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="pcap file to write (a new file), or - for stdout (| tcpdump -r -)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument(
        "--filter",
        default="",
        metavar="BPF",
        help="keep only packets matching this tcpdump filter (or give it after the options)",
    )
    p.add_argument(
        "expression",
        nargs="*",
        metavar="EXPRESSION",
        help="a tcpdump filter expression, as tcpdump takes one: "
        "rollcap fetch --since 10m -w x.pcap tcp port 443",
    )
    p.add_argument(
        "--no-flow-index",
        action="store_true",
        help="with a filter, download every capture in the window, even those whose flow "
        "summary proves no packet matches (docs/retrieve.md)",
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
    p.add_argument(
        "--local", action="store_true",
        help="read this host's spool (the flight recorder's ring, ready/), not the bucket; "
        "root and group rollcap may",
    )  # fmt: skip


def _size(text: str) -> int:
    """Bytes, or with a K/M/G/T suffix: the one rule of rollcap.sizes (config too)."""
    try:
        n = parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a positive size; {SIZE_EXAMPLES}")
    return n


def filter_expression(args: argparse.Namespace) -> str:
    """--filter, or the words after the options joined with spaces (as tcpdump does)."""
    trailing = " ".join(args.expression)
    if trailing and args.filter:
        raise UsageError(
            f"a filter twice: --filter {args.filter!r} and the expression {trailing!r}; "
            "give one of them"
        )
    return trailing or str(args.filter)


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(exitcodes.by_signal(signum))


def run(args: argparse.Namespace) -> int:
    from rollcap.retrieve.fetch import check_bpf, fetch
    from rollcap.retrieve.progress import Progress
    from rollcap.retrieve.skip import SkipReport, prune

    cfg = _config.load_for_reading(args) if args.local else _config.load(args)
    setup(args, cfg)
    # SIGTERM unwinds like Ctrl-C, so the temp directory is removed
    signal.signal(signal.SIGTERM, _terminated)
    workers = args.jobs if args.jobs is not None else cfg.offload.concurrency
    if not 1 <= workers <= 64:
        raise UsageError(f"--jobs {workers}: between 1 and 64")
    bpf_filter = filter_expression(args)
    check_arguments(args)
    output = resolve_output(args.output, force=args.force)  # before any download
    if args.local:
        return _run_local(args, cfg, output, bpf_filter, workers)
    storage = open_destination(cfg)
    try:
        caps, _summary, window = find(args, cfg, storage, workers=max(workers, 8))
        since, until = widened(window)
        hosts = sorted({c.host for c in caps})
        skip: SkipReport | None = None
        if bpf_filter and not args.no_flow_index and storage.manifests:
            # a bad filter is refused before any summary is read
            check_bpf(caps, bpf_filter, cfg.capture.tcpdump_path)
            with storage_errors(storage.describe(), "reading flow summaries from"):
                caps, skip = prune(storage, caps, bpf_filter, window=window)
            if args.verbose:
                for line in skip.lines():
                    print(f"rollcap: {line}", file=sys.stderr)
        progress = Progress(len(caps), sum(c.size for c in caps))
        with storage_errors(storage.describe(), "downloading from"):
            result = fetch(
                storage,
                caps,
                since=since,
                until=until,
                window_ns=window,
                output=output,
                bpf_filter=bpf_filter,
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
    line = summary(result, hosts)
    if skip is not None and skip.skipped:
        line += f"; {_plural(skip.skipped, 'capture')} skipped by the flow index"
    print("rollcap: " + line, file=sys.stderr)
    if result.refused:
        # the output holds the rest; a script must not take it for the whole window
        print(f"rollcap: error: {_plural(len(result.refused), 'object')} refused (named "
              "above): the output lacks their packets", file=sys.stderr)  # fmt: skip
        return exitcodes.FAILURE
    return exitcodes.OK


def _run_local(args: argparse.Namespace, cfg: RollcapConfig, output: Output, bpf_filter: str,
               workers: int) -> int:  # fmt: skip
    """--local: the window, filter and cut of a bucket fetch, from ready/ (keep.ringfetch)."""
    from rollcap.commands._selection import _hosts, _iface, _window
    from rollcap.keep.ringfetch import RingSource, ring_captures
    from rollcap.retrieve.fetch import check_bpf, fetch
    from rollcap.retrieve.timeexpr import fmt_utc
    from rollcap.spool.fs import Dir

    window = _window(args)
    since, until = widened(window)
    ready_path = Path(cfg.spool.directory) / "ready"
    try:
        ready = Dir(ready_path)
    except PermissionError:
        raise RollcapError(f"cannot read {ready_path}: permission denied "
                           "(root and group rollcap may)") from None  # fmt: skip
    except FileNotFoundError:
        raise RollcapError(f"{ready_path}: no spool here (spool.directory)") from None
    with ready:
        try:
            caps = ring_captures(ready, *window, _iface(args), _hosts(args))
        except PermissionError:
            raise RollcapError(f"cannot read {ready_path}: permission denied "
                               "(root and group rollcap may)") from None  # fmt: skip
        if not caps:
            raise NothingFound(f"no captures in {ready_path} between {fmt_utc(since)} and "
                               f"{fmt_utc(until)}")  # fmt: skip
        if bpf_filter:
            check_bpf(caps, bpf_filter, cfg.capture.tcpdump_path)
        source = RingSource(ready, cfg.capture.user)
        with storage_errors(source.describe(), "reading"):
            try:
                result = fetch(source, caps, since=since, until=until, window_ns=window,
                               output=output, bpf_filter=bpf_filter,
                               tcpdump=cfg.capture.tcpdump_path, workers=workers,
                               pcapng=args.pcapng, max_bytes=args.max_bytes)  # fmt: skip
            except BrokenPipeError:
                raise
            except OSError as e:
                raise RollcapError(f"fetch into {output.describe()}: {e}") from None
    line = summary(result, sorted({c.host for c in caps})).replace("downloaded", "read")
    print(f"rollcap: {line} (this host's ring)", file=sys.stderr)
    if window[1] > time.time_ns() - cfg.capture.rotate_seconds * NS:
        # the file tcpdump writes now is not in ready/ until it is cut
        print("rollcap: note: packets still in the file being written are not included "
              "until it is cut (`rollcap rotate` hands it off now)", file=sys.stderr)  # fmt: skip
    if result.refused:
        print(f"rollcap: error: {_plural(len(result.refused), 'file')} refused (named "
              "above): the output lacks their packets", file=sys.stderr)  # fmt: skip
        return exitcodes.FAILURE
    return exitcodes.OK


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def summary(result: FetchResult, hosts: list[str]) -> str:
    """One line for stderr: what was written (its own size) and what was downloaded."""
    return (
        f"wrote {result.output.describe()}: {_plural(result.packets, 'packet')} "
        f"({human_bytes(result.pcap_bytes)}) from {_plural(result.objects, 'object')} "
        f"({human_bytes(result.downloaded_bytes)} downloaded) of {', '.join(hosts)}"
    )
