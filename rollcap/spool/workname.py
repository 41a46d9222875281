"""Names of the files tcpdump writes into the spool's work/ area.

``g000042-20261126T131347-eth0.pcap`` then ``...pcap1``, ``...pcap2`` for -C.
The generation number grows with every tcpdump start (persisted), so a
restart within the same second can never reuse, and so truncate, a file
name. The strftime part is expanded by tcpdump in UTC (we run it with
TZ=UTC0). The name ends in ``.pcap`` or ``.pcapN`` because Debian's AppArmor
profile lets tcpdump write nothing else outside $HOME and /tmp.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rollcap.spool.fs import Dir

_WORK_RE = re.compile(r"^g(?P<gen>\d{6,9})-(?P<ts>\d{8}T\d{6})-(?P<iface>.+)\.pcap(?P<n>\d*)$")
_TS_FMT = "%Y%m%dT%H%M%S"


def work_template(work_dir: Path, generation: int, iface: str) -> str:
    """The -w argument: strftime placeholders for tcpdump -G."""
    return str(work_dir / f"g{generation:06d}-%Y%m%dT%H%M%S-{iface}.pcap")


def work_name(work_dir: Path, generation: int, iface: str, opened: datetime) -> str:
    """The -w argument without -G (capture.rotate_align): the time is ours."""
    return str(work_dir / f"g{generation:06d}-{opened.strftime(_TS_FMT)}-{iface}.pcap")


@dataclass(frozen=True, order=True)
class WorkName:
    """Sorts as tcpdump wrote them: generation, then time, then -C counter."""

    generation: int
    opened: datetime  # UTC, from the strftime part
    counter: int  # -C suffix; no suffix = 0
    iface: str

    @classmethod
    def parse(cls, name: str) -> WorkName | None:
        m = _WORK_RE.fullmatch(name)
        if not m:
            return None
        try:
            opened = datetime.strptime(m["ts"], _TS_FMT).replace(tzinfo=UTC)
        except ValueError:
            return None
        return cls(int(m["gen"]), opened, int(m["n"] or 0), m["iface"])

    def format(self) -> str:
        n = str(self.counter) if self.counter else ""
        return f"g{self.generation:06d}-{self.opened.strftime(_TS_FMT)}-{self.iface}.pcap{n}"


# A fence (rollcap.capture.budget) is an empty directory of ours with this mode at a
# name tcpdump would write next. A directory planted with exactly this mode by our
# own user is taken for one: it is never handed off, and removed when empty.
FENCE_MODE = 0o500


def is_fence(st: os.stat_result) -> bool:
    return (
        stat.S_ISDIR(st.st_mode)
        and st.st_mode & 0o777 == FENCE_MODE  # work/ is setgid: so are its directories
        and st.st_uid == os.geteuid()
    )


def list_work(work: Dir) -> list[tuple[WorkName, str]]:
    """Every name in work/ that is a tcpdump output name, in the order tcpdump wrote
    them (what each entry really is, the hand-off checks by fd); never a fence."""
    found = []
    for e in work.scandir():
        w = WorkName.parse(e.name)
        if w is None:
            continue
        if e.is_dir(follow_symlinks=False):
            try:
                if is_fence(e.stat(follow_symlinks=False)):
                    continue
            except FileNotFoundError:
                continue
        found.append((w, e.name))
    found.sort(key=lambda t: t[0])
    return found
