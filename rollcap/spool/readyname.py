"""Names of finished capture files in the spool's ready/ area.

``20261126T130501Z-000042_web1_eth0.pcap``: UTC start time first and a
persistent zero-padded sequence number second, so a plain sort of ready/ is
handing-off order even across interface changes; host and interface after.
Host names never contain '_' (we map it to '-'), so the name parses back
unambiguously; the interface is the rest.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

_READY_RE = re.compile(
    r"^(?P<start>\d{8}T\d{6}Z)-(?P<seq>\d{6,})_(?P<host>[A-Za-z0-9.-]+)_(?P<iface>[A-Za-z0-9_.@:+-]+)\.pcap$"
)
_TS_FMT = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class ReadyName:
    start: datetime  # UTC, whole seconds
    seq: int
    host: str
    iface: str

    def format(self) -> str:
        return f"{self.start.strftime(_TS_FMT)}-{self.seq:06d}_{self.host}_{self.iface}.pcap"

    @classmethod
    def parse(cls, name: str) -> ReadyName | None:
        m = _READY_RE.fullmatch(name)
        if not m:
            return None
        try:
            start = datetime.strptime(m["start"], _TS_FMT).replace(tzinfo=UTC)
        except ValueError:  # 20261399T..., not a date: not one of ours
            return None
        return cls(start, int(m["seq"]), m["host"], m["iface"])


def sanitize_host(name: str) -> str:
    """A host name safe for file names and keys: letters, digits, '.', '-'."""
    cleaned = re.sub(r"[^A-Za-z0-9.-]", "-", name).strip(".-")
    cleaned = re.sub(r"\.{2,}", ".", cleaned)
    return cleaned[:63] or "localhost"


def local_hostname(configured: str = "") -> str:
    return sanitize_host(configured or socket.gethostname().split(".")[0])
