"""Logging: structured journald fields under systemd, one readable line elsewhere.

Call sites pass fields as ``log.info("uploaded", extra=fields(file=..., bytes=...))``;
``fields`` turns them into UPPERCASE ``ROLLCAP_*`` journal fields, which
systemd-python's JournalHandler sends as-is.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

FIELD_PREFIX = "ROLLCAP_"


def fields(**kv: Any) -> dict[str, Any]:
    """``fields(file="x", bytes=3)`` -> ``{"ROLLCAP_FILE": "x", "ROLLCAP_BYTES": 3}``."""
    return {FIELD_PREFIX + k.upper(): v for k, v in kv.items() if v is not None}


def under_systemd() -> bool:
    """True when stderr is connected to the journal (systemd sets JOURNAL_STREAM)."""
    stream = os.environ.get("JOURNAL_STREAM")
    if not stream:
        return False
    try:
        dev, ino = (int(x) for x in stream.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


class _PlainFormatter(logging.Formatter):
    """``LEVEL component: message key=value ...`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(
            f"{k[len(FIELD_PREFIX) :].lower()}={v}"
            for k, v in record.__dict__.items()
            if k.startswith(FIELD_PREFIX)
        )
        ts = self.formatTime(record, "%H:%M:%S")
        line = f"{ts} {record.levelname.lower():7} {record.name}: {record.getMessage()}"
        if extra:
            line += f"  [{extra}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(level: str = "info", component: str = "rollcap") -> logging.Logger:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler: logging.Handler
    if under_systemd():
        from systemd.journal import JournalHandler

        handler = JournalHandler(SYSLOG_IDENTIFIER=component)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_PlainFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    # boto's own chatter is not an operator's business at info level
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3", "watchdog"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return logging.getLogger(component)
