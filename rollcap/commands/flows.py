"""`rollcap flows`: the flows of a window that match --ip/--net/--port/--proto
and --filter, from the flow index alone (rollcap/flows/query.py): which hosts saw them,
when, in which capture. Exit 0 when a flow matched, 1 when none did (or on a
storage failure), 2 on a bad command line."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from rollcap.commands import _config
from rollcap.commands._format import human_bytes
from rollcap.commands._selection import (
    NothingFound,
    _hosts,
    _iface,
    _window,
    add_selection_arguments,
    open_destination,
    setup,
    storage_errors,
)
from rollcap.errors import UsageError
from rollcap.flows.query import (
    PROTO_NAMES,
    FlowSearch,
    Found,
    Query,
    QueryError,
    Report,
    parse_filter,
    parse_ip,
    parse_net,
    parse_port,
    parse_proto,
)
from rollcap.retrieve.catalog import HANDOVER
from rollcap.retrieve.entrycheck import EntryCheck
from rollcap.retrieve.timeexpr import fmt_utc_ns
from rollcap.timestamps import NS

HELP = "find flows (who talked to whom, when, on which host) in the flow index"
DESCRIPTION = (
    "List the flows of [--since, --until) that match every given --ip, --net, --port, "
    "--proto and --filter, from the flow summaries the offload writes (offload.flow_index) "
    "without downloading any capture. Times are shown in UTC."
)
EXAMPLES: tuple[tuple[str, str | None], ...] = (
    ("rollcap flows --ip 203.0.113.7", "the last hour, every host"),
    ("rollcap flows --net 10.1.0.0/16 --port 443 --since '2026-11-26 12:00' --until 13:00 -H web1",
     None),
    ("rollcap flows --proto udp --port 53 --json", None),
    ("rollcap flows --filter 'host 203.0.113.7 and tcp port 443 and not net 10.0.0.0/8'",
     None),
)  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    _config.add_config_argument(p)
    add_selection_arguments(p, default_span=3600 * NS)
    p.add_argument("--ip", metavar="ADDR", help="flows with this address on either side")
    p.add_argument("--net", metavar="CIDR", help="flows with an address in this network")
    p.add_argument("--port", metavar="N", help="flows with this TCP/UDP/SCTP port on either side")
    p.add_argument("--proto", metavar="P", help="tcp, udp, icmp, icmp6, sctp or a number")
    p.add_argument("--filter", metavar="EXPR",
                   help="flows that may hold a packet this tcpdump filter matches (numeric "
                        "host/net/port/portrange, src/dst, ip/ip6/tcp/udp/sctp/icmp/icmp6/..., "
                        "proto N, vlan [N], and/or/not); --json marks flows that only may "
                        "match; a filter the index cannot decide (names, ether, len, byte "
                        "offsets...) is an error (docs/retrieve.md)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-compaction", action="store_true",
                   help="read every capture's own summary, not the slots' compactions "
                        "(`rollcap index --compact`, docs/flows.md)")  # fmt: skip


def query_of(args: argparse.Namespace) -> Query:
    try:
        return Query(
            ip=parse_ip(args.ip) if args.ip else None,
            net=parse_net(args.net) if args.net else None,
            port=parse_port(args.port) if args.port else None,
            proto=parse_proto(args.proto) if args.proto else None,
            filter=parse_filter(args.filter) if args.filter is not None else None,
        )
    except QueryError as e:
        raise UsageError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    query = query_of(args)
    window = _window(args)
    hosts, iface = _hosts(args), _iface(args)
    cfg = _config.load_for_reading(args)
    setup(args, cfg)
    storage = open_destination(cfg)
    check = EntryCheck(storage, cfg.offload.key_template, storage.key_prefix)
    search = FlowSearch(
        storage, prefix=storage.key_prefix, window=window, query=query, hosts=hosts,
        iface=iface, lookback=timedelta(seconds=cfg.capture.rotate_seconds) + HANDOVER,
        in_scope=check.in_scope, use_compaction=not args.no_compaction,
    )  # fmt: skip
    out = sys.stdout
    try:
        with storage_errors(storage.describe(), "reading the flow index of"):
            if args.json:
                _write_json(out, search, query, window)
            else:
                _write_table(out, search)
        out.flush()
    finally:
        storage.close()
    r = search.report
    for line in report_lines(r):
        print(f"rollcap: {line}", file=sys.stderr)
    if not r.hosts:
        raise NothingFound(
            f"no flow matching {query.describe()} between {fmt_utc_ns(window[0])} and "
            f"{fmt_utc_ns(window[1])} in {storage.describe()}: {r.summaries} flow summaries "
            f"read ({r.flows_scanned} flows), {r.captures_in_window} captures in the window"
        )
    return 0


def report_lines(r: Report) -> list[str]:
    """What the answer does not cover, one line each (stderr)."""
    lines = []
    for key, why in r.unreadable[:50]:
        lines.append(f"flow summary {key}: {why}; its capture was not searched")
    if len(r.unreadable) > 50:
        lines.append(f"... and {len(r.unreadable) - 50} more unreadable flow summaries")
    if r.unreadable:
        lines.append(f"{len(r.unreadable)} flow summaries unreadable (--json lists them)")
    if r.rejected:
        lines.append(f"{r.rejected} index names ignored: they name a capture outside their "
                     "host's prefix (docs/retrieve.md, trust model)")  # fmt: skip
    if r.without_summary:
        lines.append(
            f"note: {r.without_summary} of {r.captures_in_window} captures in the window have no "
            "flow summary (offload.flow_index off, or stored before it), so their flows are not "
            "here: `rollcap index` with the same window writes them; `rollcap fetch --filter` "
            "searches their packets"
        )
    if r.maybe:
        lines.append(
            f"note: {r.maybe} flows shown only may match the filter (IPv6 extension headers, "
            "the reverse direction, IP fragments, VLAN offsets): --json marks them "
            '"filter_match": "maybe"'
        )
    if r.incomplete_count:
        lines.append(
            f"note: {r.incomplete_count} captures' summaries are incomplete (over the flow cap) "
            "and may hold more matching flows; fetch them: " + ", ".join(r.incomplete[:5])
            + (" ..." if r.incomplete_count > 5 else "")
        )
    return lines


def _time(ns: Any) -> str:
    if not isinstance(ns, int):
        return "?"
    return datetime.fromtimestamp(ns / NS, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:23]


def _endpoint(addr: Any, port: Any) -> str:
    a = str(addr)
    if port is None:
        return a
    return f"[{a}]:{port}" if ":" in a else f"{a}:{port}"


def _proto(f: dict[str, Any]) -> str:
    p = f.get("proto")
    name = PROTO_NAMES.get(p, str(p)) if isinstance(p, int) else "?"
    if f.get("icmp_type") is not None:
        name += f" {f['icmp_type']}/{f.get('icmp_code')}"
    if f.get("vlan"):
        name += " vlan " + ".".join(str(v) for v in f["vlan"])
    return name


_HEAD = ("HOST", "IFACE", "PROTO", "ADDR", "", "PEER", "FIRST (UTC)", "LAST (UTC)",
         "PACKETS", "BYTES", "CAPTURE")  # fmt: skip


def row_of(found: Found) -> tuple[str, ...]:
    f, e = found.flow, found.entry
    ends = [_endpoint(f.get("src"), f.get("sport")), _endpoint(f.get("dst"), f.get("dport"))]
    mine, peer = ends[found.side], ends[1 - found.side]
    # '->': the query's side sent the flow's first packet in this capture
    arrow = "->" if found.side == 0 else "<-"
    return (e.host, e.iface, _proto(f), mine, arrow, peer, _time(f.get("first_ns")),
            _time(f.get("last_ns")), str(f.get("packets")), str(f.get("bytes")), e.key)  # fmt: skip


def _lines(rows: list[tuple[str, ...]], widths: list[int], header: bool) -> tuple[str, list[int]]:
    widths = [max([len(r[i]) for r in [_HEAD, *rows]] + widths[i : i + 1])
              for i in range(len(_HEAD))]  # fmt: skip
    right = {8, 9}

    def line(r: tuple[str, ...]) -> str:
        cells = [r[i].rjust(w) if i in right else r[i].ljust(w) for i, w in enumerate(widths)]
        return "  ".join(cells).rstrip() + "\n"

    return "".join(line(r) for r in ([_HEAD] if header else []) + rows), widths


def _write_table(out: TextIO, search: FlowSearch) -> None:
    """Rows as they come, 500 at a time (bounded memory), then '#' lines:
    per-host totals and what was read."""
    widths: list[int] = []
    batch: list[tuple[str, ...]] = []
    for found in search:
        batch.append(row_of(found))
        if len(batch) >= 500:
            text, widths = _lines(batch, widths, header=not widths)
            out.write(text)
            batch = []
    if batch:
        text, widths = _lines(batch, widths, header=not widths)
        out.write(text)
    out.write(summary_text(search.report))


def summary_text(r: Report) -> str:
    lines = []
    for host in sorted(r.hosts):
        t = r.hosts[host]
        lines.append(
            f"# {host}: {t.flows} flows in {t.captures} captures, {t.packets} packets, "
            f"{human_bytes(t.nbytes)}, {_time(t.first_ns)} .. {_time(t.last_ns)}"
        )
    lines.append(
        f"# {len(r.hosts)} hosts; read {r.summaries} flow summaries ({r.flows_scanned} flows; "
        f"{r.from_compaction} from {r.compactions} slot compactions) "
        f"with {r.slots_listed} listings; {r.captures_in_window} captures in the window, "
        f"{r.without_summary} without a summary, {len(r.unreadable)} unreadable"
    )
    return "".join(line + "\n" for line in lines)


def flow_json(found: Found, filtered: bool = False) -> dict[str, Any]:
    """One flow of --json; with --filter, whether it surely holds a matching
    packet ("yes") or only may ("maybe": verdict.flow_verdict)."""
    f, e = found.flow, found.entry
    row = {k: v for k, v in f.items() if k not in ("row", "host", "iface", "key")}
    if filtered:
        row["filter_match"] = "maybe" if found.maybe else "yes"
    return {
        "host": e.host, "iface": e.iface, "capture": e.key,
        "addr": f.get(("src", "dst")[found.side]), "peer": f.get(("dst", "src")[found.side]),
        **row,
        "first": fmt_utc_ns(f["first_ns"]) if isinstance(f.get("first_ns"), int) else None,
        "last": fmt_utc_ns(f["last_ns"]) if isinstance(f.get("last_ns"), int) else None,
    }  # fmt: skip




def _write_json(out: TextIO, search: FlowSearch, query: Query, window: tuple[int, int]) -> None:
    out.write("{\n")
    out.write(f'  "since": {json.dumps(fmt_utc_ns(window[0]))},\n')
    out.write(f'  "until": {json.dumps(fmt_utc_ns(window[1]))},\n')
    out.write(f'  "query": {json.dumps(query.describe())},\n')
    out.write('  "flows": [')
    first, filtered = True, query.filter is not None
    for found in search:
        out.write(("\n    " if first else ",\n    ") + json.dumps(flow_json(found, filtered)))
        first = False
    out.write("\n  ],\n" if not first else "],\n")
    r = search.report
    hosts = {
        h: {"flows": t.flows, "captures": t.captures, "packets": t.packets, "bytes": t.nbytes,
            "first_ns": t.first_ns, "last_ns": t.last_ns}
        for h, t in sorted(r.hosts.items())
    }  # fmt: skip
    index = {
        "listings": r.slots_listed,
        "summaries_read": r.summaries,
        "from_compaction": r.from_compaction,
        "compactions": r.compactions,
        "flows_scanned": r.flows_scanned,
        "captures_in_window": r.captures_in_window,
        "without_summary": r.without_summary,
        "without_summary_examples": r.without_examples,
        "unreadable": [{"summary": k, "reason": why} for k, why in r.unreadable],
        "rejected": r.rejected,
        "incomplete": r.incomplete_count,
        "filter_maybe": r.maybe,
        "incomplete_examples": r.incomplete,
    }
    out.write(f'  "hosts": {json.dumps(hosts, indent=2).replace(chr(10), chr(10) + "  ")},\n')
    out.write(f'  "index": {json.dumps(index, indent=2).replace(chr(10), chr(10) + "  ")}\n}}\n')
