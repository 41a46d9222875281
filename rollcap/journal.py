"""Logging: structured journald fields under systemd, one readable line elsewhere.

Call sites pass fields as ``log.info("uploaded", extra=fields(file=..., bytes=...))``;
``fields`` turns them into UPPERCASE ``ROLLCAP_*`` journal fields
(`journalctl -o json` shows them; `journalctl ROLLCAP_FILE=...` filters).
"""

from __future__ import annotations

import json
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


def _plain_value(v: Any) -> str:
    """Quote a value only when it would otherwise run into the next key=value."""
    s = str(v)
    if not s or any(c.isspace() or c in '="[]' for c in s):
        return json.dumps(s)
    return s


class PlainFormatter(logging.Formatter):
    """``HH:MM:SS level component: message`` on one line.

    The message says it all (it is what `journalctl` shows, too); the
    ROLLCAP_* fields follow as ``[key=value ...]`` only when ``fields`` is
    set (log.level = "debug"): at info, a file is one short line, not 300
    characters of fields.
    """

    def __init__(self, fields: bool = False) -> None:
        super().__init__()
        self.fields = fields

    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(
            f"{k[len(FIELD_PREFIX) :].lower()}={_plain_value(v)}"
            for k, v in record.__dict__.items()
            if k.startswith(FIELD_PREFIX)
        ) if self.fields else ""
        ts = self.formatTime(record, "%H:%M:%S")
        line = f"{ts} {record.levelname.lower():7} {record.name}: {record.getMessage()}"
        if extra:
            line += f"  [{extra}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


# journald priorities (syslog levels), as systemd-python's JournalHandler maps them
_PRIORITIES = ((logging.DEBUG, 7), (logging.INFO, 6), (logging.WARNING, 4), (logging.ERROR, 3))


def priority(levelno: int) -> int:
    """Python level -> journald PRIORITY (debug 7, info 6, warning 4, error 3, critical 2)."""
    for limit, prio in _PRIORITIES:
        if levelno <= limit:
            return prio
    return 2


def journal_fields(record: logging.LogRecord, identifier: str) -> dict[str, Any]:
    """The fields sent for one record: MESSAGE plus the standard ones, plus ROLLCAP_*.

    systemd-python's own JournalHandler.emit sends *every* attribute of the
    record (msg, args, levelname, ...) and leaves it to journald to drop the
    lowercase ones; we send only valid UPPERCASE names, and a traceback as part
    of MESSAGE, where `journalctl` shows it.
    """
    out: dict[str, Any] = {
        "PRIORITY": str(priority(record.levelno)),
        "SYSLOG_IDENTIFIER": identifier,
        "LOGGER": record.name,
        "THREAD_NAME": record.threadName,
        "CODE_FILE": record.pathname,
        "CODE_LINE": record.lineno,
        "CODE_FUNC": record.funcName,
    }
    for k, v in record.__dict__.items():
        if k.startswith(FIELD_PREFIX) or k == "MESSAGE_ID":
            out[k] = v
    return out


class JournalHandler(logging.Handler):
    """Send records to journald through systemd-python's ``journal.send``."""

    def __init__(self, identifier: str, sender: Any = None) -> None:
        super().__init__()
        if sender is None:
            from systemd import journal

            sender = journal.send
        self._send = sender
        self.identifier = identifier

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if record.exc_info:
                msg += "\n" + logging.Formatter().formatException(record.exc_info)
            self._send(msg, **journal_fields(record, self.identifier))
        except Exception:
            self.handleError(record)


def setup_logging(level: str = "info", component: str = "rollcap") -> logging.Logger:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.setLevel(level.upper())
    handler: logging.Handler
    if under_systemd():
        handler = JournalHandler(component)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(PlainFormatter(fields=root.level <= logging.DEBUG))
    root.addHandler(handler)
    # boto's own chatter is not an operator's business at info level
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3", "watchdog"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return logging.getLogger(component)
