"""Journal fields, priorities, the choice of handler, and the stderr format."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from systemd import journal as sd_journal

from rollcap.journal import (
    JournalHandler,
    _PlainFormatter,
    fields,
    journal_fields,
    priority,
)

REPO = Path(__file__).resolve().parents[2]


def test_fields_are_uppercase_rollcap_names_and_skip_none() -> None:
    assert fields(file="a.pcap", bytes=3, error=None, last_upload=1.5) == {
        "ROLLCAP_FILE": "a.pcap",
        "ROLLCAP_BYTES": 3,
        "ROLLCAP_LAST_UPLOAD": 1.5,
    }


@pytest.mark.parametrize(
    ("level", "prio"),
    [
        (logging.DEBUG, 7),
        (logging.INFO, 6),
        (logging.WARNING, 4),
        (logging.ERROR, 3),
        (logging.CRITICAL, 2),
    ],
)
def test_priorities_match_syslog(level: int, prio: int) -> None:
    assert priority(level) == prio
    # the same mapping systemd-python uses
    assert sd_journal.JournalHandler.map_priority(level) == prio


class _Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, message: str, **kw: Any) -> None:
        self.calls.append((message, kw))


def _logger(handler: logging.Handler) -> logging.Logger:
    log = logging.getLogger(f"rollcap.test.{id(handler)}")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log


def test_journal_handler_sends_rollcap_fields_and_priority() -> None:
    sink = _Sink()
    log = _logger(JournalHandler("rollcap-offload", sender=sink))
    log.warning("upload of %s failed", "a.pcap", extra=fields(file="a.pcap", bytes=1234))
    [(msg, kw)] = sink.calls
    assert msg == "upload of a.pcap failed"
    assert kw["PRIORITY"] == "4"
    assert kw["SYSLOG_IDENTIFIER"] == "rollcap-offload"
    assert kw["ROLLCAP_FILE"] == "a.pcap"
    assert kw["ROLLCAP_BYTES"] == 1234
    assert kw["LOGGER"] == log.name
    # only names journald accepts: no msg/args/levelname noise
    assert all(sd_journal._valid_field_name(k) for k in kw), sorted(kw)


def test_journal_handler_puts_traceback_into_message() -> None:
    sink = _Sink()
    log = _logger(JournalHandler("rollcap", sender=sink))
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("crashed", extra=fields(state="failed"))
    [(msg, kw)] = sink.calls
    assert msg.startswith("crashed\nTraceback")
    assert "RuntimeError: boom" in msg
    assert kw["PRIORITY"] == "3"
    assert kw["ROLLCAP_STATE"] == "failed"


def test_journal_fields_are_accepted_by_systemd_send_signature() -> None:
    rec = logging.LogRecord("rollcap", logging.INFO, "f.py", 1, "m", None, None)
    rec.__dict__.update(fields(file="x"))
    kw = journal_fields(rec, "rollcap")
    # journal.send() takes CODE_FILE/CODE_LINE/CODE_FUNC by name and the rest as fields
    assert {"CODE_FILE", "CODE_LINE", "CODE_FUNC", "PRIORITY", "ROLLCAP_FILE"} <= set(kw)
    assert all(sd_journal._valid_field_name(k) for k in kw)


def test_plain_format_is_one_line_with_fields() -> None:
    rec = logging.LogRecord("rollcap.offload", logging.WARNING, "f.py", 1, "retrying", None, None)
    rec.__dict__.update(fields(file="a.pcap", attempt=2))
    line = _PlainFormatter().format(rec)
    assert "\n" not in line
    assert line.endswith("warning rollcap.offload: retrying  [file=a.pcap attempt=2]")


def _handler_chosen(tmp_path: Path, journal_stream: str | None) -> str:
    """Run setup_logging in a child whose stderr is a known file; report the handler."""
    err = tmp_path / "stderr"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("JOURNAL_STREAM", None)
    with err.open("w") as f:
        st = os.fstat(f.fileno())
        if journal_stream == "match":
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        elif journal_stream:
            env["JOURNAL_STREAM"] = journal_stream
        r = subprocess.run(
            [
                sys.executable,
                "-c",
                "import logging; from rollcap.journal import setup_logging; setup_logging();"
                "print(type(logging.getLogger().handlers[0]).__name__)",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=f,
            text=True,
            timeout=60,
            check=True,
        )
    return r.stdout.strip()


def test_journal_handler_only_when_stderr_is_the_journal_stream(tmp_path: Path) -> None:
    assert _handler_chosen(tmp_path, "match") == "JournalHandler"
    assert _handler_chosen(tmp_path, None) == "StreamHandler"
    # inherited from a parent unit but stderr redirected elsewhere: not the journal
    assert _handler_chosen(tmp_path, "1:2") == "StreamHandler"
    assert _handler_chosen(tmp_path, "garbage") == "StreamHandler"
