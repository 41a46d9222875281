"""The `rollcap` command."""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sys
from collections.abc import Sequence

from rollcap import __version__, exitcodes
from rollcap.config import config_path_from_env, load_config
from rollcap.config.schema import RollcapConfig
from rollcap.errors import ConfigError, RollcapError
from rollcap.spool import Spool

# Commands that only read: a config error is a warning for them (config.salvage).
# reload, too: a broken file is exactly when the daemon's verdict is needed.
READ_ONLY = ("status", "list", "reload")


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $ROLLCAP_CONFIG or /etc/rollcap.toml)",
    )


def build_parser() -> argparse.ArgumentParser:
    from rollcap.retrieve import commands as retrieve
    from rollcap.retrieve import hold as hold_cmd
    from rollcap.storage import destcheck

    parser = argparse.ArgumentParser(
        prog="rollcap",
        description="Rolling packet capture with verified offload to S3 or a local archive.",
    )
    parser.add_argument("--version", action="version", version=f"rollcap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("capture", help="run the capture daemon in the foreground")
    _add_config(p)
    p = sub.add_parser("offload", help="run the offload daemon in the foreground")
    _add_config(p)

    p = sub.add_parser("check-config", help="validate the config; --show prints it in full")
    p.add_argument("path", nargs="?", help="config file to check (default: as --config)")
    _add_config(p)
    p.add_argument("--show", action="store_true", help="print the effective config as TOML")

    p = sub.add_parser(
        "reload",
        help="make the capture daemon re-read the config and wait for its verdict: exit 1 "
        "when it rejects the file and keeps capturing as before (the unit's ExecReload)",
    )
    _add_config(p)
    p.add_argument("--pid", type=int, help="the daemon's pid (default: $MAINPID, else its state)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="how long to wait for the verdict (default: 60)")  # fmt: skip

    p = sub.add_parser(
        "status",
        help="what both daemons report (--json for machines); exit 0 when both run and "
        "do their job, 3 when one is not running, 4 unknown, 5 running but not working",
    )
    _add_config(p)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser(
        "rotate", help="cut the file being captured now and hand it off (exit 3: not running)"
    )
    _add_config(p)

    p = sub.add_parser("list", help="list captures overlapping a time window")
    _add_config(p)
    retrieve.add_list_arguments(p)
    p = sub.add_parser("fetch", help="fetch packets of a time window into one pcap")
    _add_config(p)
    retrieve.add_fetch_arguments(p)

    p = sub.add_parser("hold", help="set or release a legal hold on captures of a time window")
    _add_config(p)
    hold_cmd.add_arguments(p)
    p = sub.add_parser(
        "check-destination",
        help="check credentials, bucket and permissions; print a least-privilege IAM policy",
    )
    _add_config(p)
    destcheck.add_arguments(p)

    p = sub.add_parser(
        "link-metrics",
        help="(root; each unit's ExecStartPre) remove what lets or let a rollcap user write "
        "into node_exporter's directory, and publish a copy of the daemon's textfile there",
    )
    _add_config(p)
    p.add_argument("daemon", nargs="?", choices=["capture", "offload"])
    p.add_argument(
        "--publish",
        action="store_true",
        help="only publish copies of both daemons' textfiles (rollcap-metrics-publish.service)",
    )

    p = sub.add_parser(
        "config-docs", help="print the sample config, markdown reference or man page"
    )
    p.add_argument("--format", choices=["sample", "markdown", "man"], default="sample")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = _dispatch(args)
        sys.stdout.flush()  # here, not at exit: a closed pipe is caught below
        return code
    except BrokenPipeError as e:
        if not _stdout_closed():  # another pipe (a child's): an error like any other
            print(f"rollcap: {e}", file=sys.stderr)
            return exitcodes.FAILURE
        return _reader_went_away(args)
    except ConfigError as e:
        for line in e.problems:
            print(f"rollcap: {line}", file=sys.stderr)
        return e.exit_code
    except RollcapError as e:
        print(f"rollcap: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return exitcodes.INTERRUPTED


def _stdout_closed() -> bool:
    """stdout is a pipe or socket whose reader has gone (poll: POLLERR/POLLHUP)."""
    p = select.poll()
    try:
        p.register(sys.stdout.fileno(), select.POLLOUT)
    except (OSError, ValueError):  # no file descriptor behind sys.stdout
        return False
    return any(ev & (select.POLLERR | select.POLLHUP) for _fd, ev in p.poll(0))


def _reader_went_away(args: argparse.Namespace) -> int:
    """The one rule for a closed stdout (`rollcap status --json | head -3`, `fetch -o - |
    head -c 100`): the reader has seen enough. Nothing more is written, no traceback,
    exit 141 (128 + SIGPIPE) as a Unix tool killed by SIGPIPE; except `status`,
    whose exit code is the health a check reads (set before it prints)."""
    # stdout's buffer still holds what could not be written: point the fd at
    # /dev/null so the interpreter's final flush cannot raise again
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    health = getattr(args, "health", None)
    return health if isinstance(health, int) else exitcodes.by_signal(signal.SIGPIPE)


def _dispatch(args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "config-docs":
        from rollcap.config import render

        if args.format == "man":
            sys.stdout.write(render.render_manpage(__version__))
        elif args.format == "markdown":
            sys.stdout.write(render.render_markdown())
        else:
            sys.stdout.write(render.render_sample())
        return 0
    path = config_path_from_env(getattr(args, "path", None) or args.config)
    if cmd == "link-metrics":
        from rollcap.config.salvage import load_for_reading
        from rollcap.metrics import publish

        if (args.daemon is None) != args.publish:
            raise RollcapError("link-metrics takes a daemon (capture or offload) or --publish")
        # before the daemon starts, which reports a broken config itself
        cfg = load_for_reading(path)[0]
        if args.publish:
            return publish.publish_and_log(cfg)
        return publish.publish_at_start(cfg, args.daemon)
    if cmd in READ_ONLY:
        # they must answer while the daemons run on an earlier config
        from rollcap.config.salvage import load_for_reading

        cfg, warnings = load_for_reading(path)
        if cmd != "reload":  # the daemon's verdict says it
            for line in warnings:
                print(f"rollcap: warning: {line}", file=sys.stderr)
    else:
        cfg = load_config(path)  # first, so a bad config exits 78 before anything starts
    if cmd == "capture":
        from rollcap.capture import service as capture_service

        return capture_service.run(path)
    if cmd == "offload":
        from rollcap.offload import service as offload_service

        return offload_service.run(path)
    if cmd == "check-config":
        from rollcap.capture import preflight

        # what the daemon checks at start and reload: ConfigError (78) on an error
        warnings, notes = preflight.check(cfg)
        if args.show:
            from rollcap.config.show import dump_toml

            sys.stdout.write(dump_toml(cfg))
        else:
            print(f"{path}: OK")  # warnings (stderr) do not stop the daemon
        for line in warnings:
            print(f"rollcap: warning: {line}", file=sys.stderr)
        for line in notes:
            print(f"rollcap: note: {line}", file=sys.stderr)
        return 0
    if cmd == "reload":
        from rollcap.capture import reload_verdict

        state_dir = Spool.at(cfg.spool.directory).capture_state
        print(reload_verdict.request(_capture_pid(args, cfg), state_dir, args.timeout))
        return 0
    if cmd == "status":
        from rollcap import status

        report = status.collect(cfg)
        # 0 ok, 3 not running, 4 unknown, 5 not doing its job (rollcap.exitcodes):
        # a monitoring check can use the exit status alone, read before a pipe closes
        args.health = int(report["exit_code"])
        if args.json:
            print(json.dumps(report, indent=2, sort_keys=True, default=str))
        else:
            sys.stdout.write(status.render_table(report))
        return int(args.health)
    if cmd == "rotate":
        from rollcap.capture import rotate

        return rotate.run(cfg)
    if cmd == "list":
        from rollcap.retrieve import commands as retrieve

        return retrieve.run_list(args, cfg)
    if cmd == "fetch":
        from rollcap.retrieve import commands as retrieve

        return retrieve.run_fetch(args, cfg)
    if cmd == "hold":
        from rollcap.retrieve import hold as hold_cmd

        return hold_cmd.run(args, cfg)
    if cmd == "check-destination":
        from rollcap.storage import destcheck

        return destcheck.run(args, cfg)
    raise AssertionError(cmd)


def _capture_pid(args: argparse.Namespace, cfg: RollcapConfig) -> int:
    """--pid, systemd's $MAINPID (set for ExecReload), or the pid in capture.json."""
    from rollcap.spool.state import read_state

    if args.pid:
        return int(args.pid)
    main_pid = os.environ.get("MAINPID", "")
    if main_pid.isdigit() and int(main_pid) > 0:
        return int(main_pid)
    st = read_state(Spool.at(cfg.spool.directory).state_file("capture"))
    pid = st.get("pid") if st else None
    if not isinstance(pid, int) or st is None or st.get("state") == "stopped":
        raise RollcapError("reload: no running capture daemon found (give --pid)")
    return pid
