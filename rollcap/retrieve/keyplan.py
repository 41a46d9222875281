"""Reading object keys back: which prefixes to list, and what a key says.

The key template (offload.key_template) decides both. For the default
``{prefix}/{host}/{start:%Y}/{start:%m}/{start:%d}/...`` a window becomes one
listing per host and UTC day. For a custom template we plan as far as the
template allows: the static text up to the first placeholder that varies
within a day (seq, ext, a time-of-day start field, an interface when none was
asked for). When that is just the prefix, the whole prefix is listed.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

# strftime directives a key may use, as regex fragments and the unit they name
_DIRECTIVES: dict[str, tuple[str, str]] = {
    "Y": (r"\d{4}", "day"),
    "y": (r"\d{2}", "day"),
    "m": (r"\d{2}", "day"),
    "d": (r"\d{2}", "day"),
    "j": (r"\d{3}", "day"),
    "H": (r"\d{2}", "time"),
    "M": (r"\d{2}", "time"),
    "S": (r"\d{2}", "time"),
    "f": (r"\d{6}", "time"),
    "s": (r"\d+", "time"),
}
_EXPAND = {"F": "%Y-%m-%d", "T": "%H:%M:%S", "D": "%m/%d/%y"}
_EXT_RE = r"\.pcap(?:\.zst|\.gz)?"
EXTENSIONS = (".pcap.zst", ".pcap.gz", ".pcap")
# Beyond this many days per host, list the host's prefix once instead.
MAX_PLANNED_DAYS = 400


def base_prefix(prefix: str) -> str:
    """What to list for "everything rollcap stored": 'pfx/' or '' at the bucket root."""
    return prefix.strip("/") + "/" if prefix.strip("/") else ""


def _expand(spec: str) -> str:
    for k, v in _EXPAND.items():
        spec = spec.replace("%" + k, v)
    return spec


def _directives(spec: str) -> list[str] | None:
    """The directives in a strftime spec, or None if one is unknown to us."""
    out = []
    i = 0
    while i < len(spec):
        if spec[i] == "%":
            if i + 1 >= len(spec):
                return None
            c = spec[i + 1]
            if c != "%":
                if c not in _DIRECTIVES:
                    return None
                out.append(c)
            i += 2
        else:
            i += 1
    return out


def _parsed(template: str) -> list[tuple[str, str | None, str]]:
    return [(lit, name, spec or "") for lit, name, spec, _c in string.Formatter().parse(template)]


def supports_host_discovery(template: str) -> bool:
    """True when hosts are the first level below the prefix ({prefix}/{host}/...)."""
    parts = _parsed(template)
    return (
        len(parts) >= 3
        and parts[0][:2] == ("", "prefix")
        and parts[1][:2] == ("/", "host")
        and parts[2][0].startswith("/")
    )


def plan_prefixes(
    template: str,
    prefix: str,
    host: str | None,
    days: list[date],
    iface: str | None = None,
) -> list[str]:
    """Prefixes that together hold every key of host (None: any host) on those UTC days."""
    parts = _parsed(template)
    pieces: list[str | None] = []  # None marks "the day-dependent start field goes here"
    day_specs: list[str] = []
    for lit, name, spec in parts:
        pieces.append(lit)
        if name is None:
            continue
        if name == "prefix":
            pieces.append(prefix)
        elif name == "host" and host is not None:
            pieces.append(host)
        elif name == "iface" and iface is not None:
            pieces.append(iface)
        elif name == "start":
            d = _directives(_expand(spec))
            if d is None or not d or any(_DIRECTIVES[c][1] != "day" for c in d):
                break
            pieces.append(None)
            day_specs.append(spec)
        else:
            break
    if days and day_specs and len(days) > MAX_PLANNED_DAYS:
        cut = pieces.index(None)
        pieces, day_specs = pieces[:cut], []
    if not day_specs:
        return [_clean(prefix, "".join(p for p in pieces if p is not None))]
    out: list[str] = []
    for day in days:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        specs = iter(day_specs)
        text = "".join(p if p is not None else format(start, next(specs)) for p in pieces)
        text = _clean(prefix, text)
        if text not in out:
            out.append(text)
    return out


def _clean(prefix: str, text: str) -> str:
    # "{prefix}/..." with an empty prefix renders "/...": keys drop that slash
    return text.lstrip("/") if not prefix else text


def window_days(since: datetime, until: datetime, lookback: timedelta) -> list[date]:
    """UTC days from (since - lookback) to until: files open before since count too."""
    first = (since - lookback).astimezone(UTC).date()
    last = (until - timedelta(microseconds=1)).astimezone(UTC).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


@dataclass(frozen=True)
class ParsedKey:
    host: str | None
    iface: str | None
    start: datetime | None
    precision: timedelta  # start is truncated to this


class KeyPattern:
    """Parses keys rendered from a template back into host, interface and start."""

    def __init__(self, template: str, prefix: str) -> None:
        self.regex: re.Pattern[str] | None = self._build(template, prefix)

    @staticmethod
    def _build(template: str, prefix: str) -> re.Pattern[str] | None:
        rx: list[str] = []
        seen: set[str] = set()
        drop_slash = False
        for lit, name, spec in _parsed(template):
            if drop_slash and lit.startswith("/"):
                lit = lit[1:]
            drop_slash = False
            rx.append(re.escape(lit))
            if name is None:
                continue
            if name == "prefix":
                rx.append(re.escape(prefix))
                drop_slash = not prefix
            elif name in ("host", "iface", "seq", "ext"):
                if name in seen:
                    rx.append(f"(?P={name})")
                    continue
                seen.add(name)
                frag = {
                    "host": r"[A-Za-z0-9][A-Za-z0-9.-]*?",
                    "iface": r"[A-Za-z0-9_.@:+-]+?",
                    "seq": r"\d+",
                    "ext": _EXT_RE,
                }[name]
                rx.append(f"(?P<{name}>{frag})")
            elif name == "start":
                expanded = _expand(spec)
                if _directives(expanded) is None or not spec:
                    return None
                i = 0
                while i < len(expanded):
                    c = expanded[i]
                    if c == "%":
                        d = expanded[i + 1]
                        if d == "%":
                            rx.append("%")
                        elif "t_" + d in seen:
                            rx.append(f"(?P=t_{d})")
                        else:
                            seen.add("t_" + d)
                            rx.append(f"(?P<t_{d}>{_DIRECTIVES[d][0]})")
                        i += 2
                    else:
                        rx.append(re.escape(c))
                        i += 1
            else:
                return None
        if "ext" not in seen:
            rx.append(_EXT_RE)
        return re.compile("".join(rx))

    def parse(self, key: str) -> ParsedKey | None:
        if self.regex is None:
            return None
        m = self.regex.fullmatch(key)
        if not m:
            return None
        g = {k: v for k, v in m.groupdict().items() if v is not None}
        return ParsedKey(g.get("host"), g.get("iface"), *self._start(g))

    @staticmethod
    def _start(g: dict[str, str]) -> tuple[datetime | None, timedelta]:
        forever = timedelta(days=36500)
        try:
            if "t_s" in g:
                return datetime.fromtimestamp(int(g["t_s"]), UTC), timedelta(seconds=1)
            if "t_Y" in g:
                year = int(g["t_Y"])
            elif "t_y" in g:
                year = 2000 + int(g["t_y"])
            else:
                return None, forever
            if "t_j" in g:
                day = datetime(year, 1, 1, tzinfo=UTC) + timedelta(days=int(g["t_j"]) - 1)
            else:
                day = datetime(year, int(g.get("t_m", 1)), int(g.get("t_d", 1)), tzinfo=UTC)
            start = day.replace(
                hour=int(g.get("t_H", 0)),
                minute=int(g.get("t_M", 0)),
                second=int(g.get("t_S", 0)),
                microsecond=int(g.get("t_f", 0)),
            )
        except (ValueError, OverflowError):
            return None, forever
        if "t_S" in g:
            precision = timedelta(seconds=1)
        elif "t_M" in g:
            precision = timedelta(minutes=1)
        elif "t_H" in g:
            precision = timedelta(hours=1)
        elif "t_d" in g or "t_j" in g:
            precision = timedelta(days=1)
        else:
            precision = forever
        return start, precision
