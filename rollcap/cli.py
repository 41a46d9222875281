"""The `rollcap` command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from rollcap import __version__
from rollcap.config import config_path_from_env, load_config
from rollcap.errors import ConfigError, RollcapError


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $ROLLCAP_CONFIG or /etc/rollcap.toml)",
    )


def build_parser() -> argparse.ArgumentParser:
    from rollcap.retrieve import commands as retrieve

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
        "status",
        help="what both daemons report (--json for machines); exit 3 unless both are running",
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

    p = sub.add_parser(
        "config-docs", help="print the sample config, markdown reference or man page"
    )
    p.add_argument("--format", choices=["sample", "markdown", "man"], default="sample")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as e:
        for line in e.problems:
            print(f"rollcap: {line}", file=sys.stderr)
        return e.exit_code
    except RollcapError as e:
        print(f"rollcap: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


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
    cfg = load_config(path)  # first, so a bad config exits 78 before anything starts
    if cmd == "capture":
        from rollcap.capture import service as capture_service

        return capture_service.run(path)
    if cmd == "offload":
        from rollcap.offload import service as offload_service

        return offload_service.run(path)
    if cmd == "check-config":
        from rollcap.capture.command import check_config_filter

        note = check_config_filter(cfg.capture)  # ConfigError (78) if tcpdump rejects it
        if args.show:
            from rollcap.config.show import dump_toml

            sys.stdout.write(dump_toml(cfg))
        else:
            print(f"{path}: OK")
        if note:
            print(f"rollcap: note: {note}", file=sys.stderr)
        return 0
    if cmd == "status":
        from rollcap import status

        report = status.collect(cfg)
        if args.json:
            print(json.dumps(report, indent=2, sort_keys=True, default=str))
        else:
            sys.stdout.write(status.render_table(report))
        # 3 = "not running", as systemctl status and LSB init scripts say it, so a
        # monitoring check can use the exit status alone.
        return 0 if report.get("ok") else 3
    if cmd == "rotate":
        from rollcap.capture import rotate

        return rotate.run(cfg)
    if cmd == "list":
        from rollcap.retrieve import commands as retrieve

        return retrieve.run_list(args, cfg)
    if cmd == "fetch":
        from rollcap.retrieve import commands as retrieve

        return retrieve.run_fetch(args, cfg)
    raise AssertionError(cmd)
