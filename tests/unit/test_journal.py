"""Journal fields, priorities, the choice of handler, and the stderr format."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from systemd import journal as sd_journal

from rollcap.journal import (
    JournalHandler,
    PlainFormatter,
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


def test_plain_format_at_debug_is_one_line_with_fields() -> None:
    rec = logging.LogRecord("rollcap.offload", logging.WARNING, "f.py", 1, "retrying", None, None)
    rec.__dict__.update(fields(file="a.pcap", attempt=2))
    line = PlainFormatter(fields=True).format(rec)
    assert "\n" not in line
    assert line.endswith("warning rollcap.offload: retrying  [file=a.pcap attempt=2]")
    rec.__dict__.update(fields(error="Connection refused: port 8333", file="a b.pcap"))
    line = PlainFormatter(fields=True).format(rec)
    assert line.endswith('[file="a b.pcap" attempt=2 error="Connection refused: port 8333"]')


def test_plain_format_at_info_is_the_message_alone_and_the_journal_keeps_fields() -> None:
    """A terminal at info gets one short line per record; the journal, every field."""
    msg = "uploaded 20261126T130501Z-000042_web1_eth0.pcap as web1/x.pcap.zst: 3339 -> 514 bytes"
    rec = logging.LogRecord("rollcap.offload", logging.INFO, "f.py", 1, msg, None, None)
    many = {f"k{i}": "v" * 20 for i in range(12)}
    rec.__dict__.update(fields(file="a.pcap", **many))
    line = PlainFormatter().format(rec)
    assert line.endswith(f"info    rollcap.offload: {msg}")
    assert "[" not in line and len(line) < 160
    kw = journal_fields(rec, "rollcap-offload")
    assert kw["ROLLCAP_FILE"] == "a.pcap" and kw["ROLLCAP_K11"] == "v" * 20


@pytest.mark.parametrize(("level", "with_fields"), [("info", False), ("debug", True)])
def test_setup_logging_shows_fields_only_at_debug(level: str, with_fields: bool) -> None:
    r = subprocess.run(
        [sys.executable, "-c",
         "import logging; from rollcap.journal import setup_logging, fields;"
         f"setup_logging({level!r}).info('handed off x.pcap', extra=fields(file='x.pcap'))"],
        env={k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"},
        stderr=subprocess.PIPE, text=True, timeout=60, check=True, cwd=REPO,
    )  # fmt: skip
    assert r.stderr.rstrip().endswith(
        "handed off x.pcap" + ("  [file=x.pcap]" if with_fields else "")
    ), r.stderr


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


_JOURNALD_PROBE = r"""
import json, logging, os, socket
os.makedirs("/run/systemd/journal")
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/run/systemd/journal/socket")
from rollcap.journal import JournalHandler, fields
log = logging.getLogger("rollcap.offload")
log.addHandler(JournalHandler("rollcap-offload"))
log.setLevel(logging.DEBUG)
log.warning("upload of %s failed", "a.pcap", extra=fields(file="a.pcap", bytes=1234))
print(json.dumps(s.recv(1 << 20).decode()))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a private mount namespace")
def test_fields_arrive_at_journald_socket(tmp_path: Path) -> None:
    """Through the real libsystemd sd_journal_sendv, into a socket standing in for journald
    (a private mount namespace with a tmpfs on /run: the host's /run is untouched)."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is missing")
    r = subprocess.run(
        [
            "unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs rollcap-test /run && exec "$0" -c "$1"',
            sys.executable, _JOURNALD_PROBE,
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    datagram = json.loads(r.stdout)
    entry = dict(line.split("=", 1) for line in datagram.splitlines())
    assert entry["MESSAGE"] == "upload of a.pcap failed"
    assert entry["PRIORITY"] == "4"
    assert entry["SYSLOG_IDENTIFIER"] == "rollcap-offload"
    assert entry["ROLLCAP_FILE"] == "a.pcap"
    assert entry["ROLLCAP_BYTES"] == "1234"
    assert entry["LOGGER"] == "rollcap.offload"
    assert all(k == k.upper() for k in entry)
