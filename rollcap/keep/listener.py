"""The keep listener: keeps filed over HTTP, with no shell involved.

Two endpoints, both POST with ``Authorization: Bearer TOKEN``:

- ``/v1/alertmanager``: Prometheus Alertmanager's webhook (alerts.py makes
  one keep per alert);
- ``/v1/keep``: a JSON object with the CLI's fields, ``since``/``until`` or
  ``around``/``before``/``after`` (rollcap.retrieve.timeexpr's grammar),
  ``reason`` and an optional ``id`` (give one to make a script's retries no-ops).

Every answer is one line: 200 with a JSON summary of the keeps, else a status
and what was wrong (400 bad payload, 401 token, 404/405, 409 refused by the
ring, 411/413 body, 429 rate limit, 503 busy or the keep could not be stored).
Answers come within a second: the submit is a durable local write, bodies are
bounded (MAX_BODY), slow clients are cut off (READ_TIMEOUT, REQUEST_DEADLINE) and at most
MAX_CONNECTIONS are served at once. Submits run one at a time, so the rate
limits (RateLimits) see every keep in order.

Nothing here may stop the offload: a listener that cannot start (no token, the
address taken) is logged and stays off.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import re
import socket
import stat
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import BaseServer, ThreadingMixIn, UnixStreamServer
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import ValidationError

from rollcap.config.schema import ListenerConfig
from rollcap.journal import fields
from rollcap.keep.alerts import AlertWindows, PayloadError, keep_requests, printable
from rollcap.keep.request import (
    ID_PATTERN,
    REASON_MAX,
    KeepOutcome,
    KeepRefused,
    KeepRequest,
    Source,
    Submit,
    derived_id,
    window_problem,
)
from rollcap.keep.stored import PinnedUnlisted
from rollcap.retrieve.timeexpr import TimeExprError, window_ns
from rollcap.storage.base import StorageError
from rollcap.timestamps import NS

log = logging.getLogger("rollcap.keep.listener")

MAX_BODY = 1 << 20  # a notification of 1000 alerts with annotations fits
READ_TIMEOUT = 2.0  # seconds a client may fall silent while sending its request
REQUEST_DEADLINE = 5.0  # ... and take for all of it (a trickle resets READ_TIMEOUT)
MAX_CONNECTIONS = 16
SUBMIT_WAIT = 1.0  # seconds a request waits for the keep being filed before it
MAX_TOKEN = 4096
REMEMBERED = 4096  # ids answered from memory (Alertmanager's retries and repeats)
HOUR_NS = 3600 * NS
DAY_NS = 86400 * NS
REFUSALS = ("unauthorized", "bad-request", "windows-per-hour", "bytes-per-day", "ring", "busy")
KEEP_FIELDS = {"id", "since", "until", "around", "before", "after", "reason"}


class RateLimits:
    """New keeps per hour and their bytes per day, over sliding windows. A keep is
    refused once a limit is reached; the one that crosses the bytes limit is filed
    (its size is known only once it is pinned)."""

    def __init__(self, windows_per_hour: int, bytes_per_day: int) -> None:
        self.windows_per_hour = windows_per_hour
        self.bytes_per_day = bytes_per_day
        self._windows: deque[int] = deque()
        self._bytes: deque[tuple[int, int]] = deque()

    def refusal(self, now_ns: int) -> str | None:
        """Why a new keep must wait (the metric's reason), or None."""
        while self._windows and self._windows[0] <= now_ns - HOUR_NS:
            self._windows.popleft()
        while self._bytes and self._bytes[0][0] <= now_ns - DAY_NS:
            self._bytes.popleft()
        if len(self._windows) >= self.windows_per_hour:
            return "windows-per-hour"
        if sum(b for _, b in self._bytes) >= self.bytes_per_day:
            return "bytes-per-day"
        return None

    def record(self, now_ns: int, nbytes: int) -> None:
        self._windows.append(now_ns)
        self._bytes.append((now_ns, nbytes))

    def describe(self, reason: str) -> str:
        if reason == "windows-per-hour":
            return f"{self.windows_per_hour} keeps in the last hour (listener.windows_per_hour)"
        used = sum(b for _, b in self._bytes)
        return (
            f"keeps of the last 24 h hold {used} bytes, the limit is {self.bytes_per_day} "
            "(listener.megabytes_per_day)"
        )


class ListenerStats(Collector):
    """rollcap_listener_keeps_total{source,result} and rollcap_listener_refused_total{reason}."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.keeps: dict[tuple[str, str], int] = {}
        self.refused = dict.fromkeys(REFUSALS, 0)

    def kept(self, source: str, repeated: bool) -> None:
        key = (source, "repeated" if repeated else "filed")
        with self._lock:
            self.keeps[key] = self.keeps.get(key, 0) + 1

    def refuse(self, reason: str) -> None:
        with self._lock:
            self.refused[reason] += 1

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            keeps, refused = dict(self.keeps), dict(self.refused)
        fam = CounterMetricFamily(
            "rollcap_listener_keeps", "Keeps the listener took, by source (alertmanager, "
            "http) and result: filed (new), repeated (the same id again: a retry).",
            labels=["source", "result"],
        )  # fmt: skip
        for (source, result), n in sorted(keeps.items()):
            fam.add_metric([source, result], n)
        yield fam
        ref = CounterMetricFamily(
            "rollcap_listener_refused", "Requests the listener refused, by reason: "
            "unauthorized, bad-request, windows-per-hour, bytes-per-day (rate limits), "
            "ring (the ring refused the keep: pinned cap), busy (too many connections, or "
            "the keep could not be stored).", labels=["reason"],
        )  # fmt: skip
        for reason, n in refused.items():
            ref.add_metric([reason], n)
        yield ref


class Answer(Exception):
    """Ends a request with this status and one line."""

    def __init__(self, status: int, line: str, refusal: str | None = None) -> None:
        super().__init__(line)
        self.status = status
        self.line = line
        self.refusal = refusal


class KeepDesk:
    """Turns request bodies into submitted keeps: parsing, ids remembered, rate limits,
    one submit at a time. No HTTP here (the handler below is the HTTP part)."""

    def __init__(
        self,
        cfg: ListenerConfig,
        submit: Submit,
        stats: ListenerStats,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.cfg = cfg
        self.submit = submit
        self.stats = stats
        self.clock = clock
        self.rules = AlertWindows(
            cfg.lookback_seconds * NS, cfg.max_window_seconds * NS, tuple(cfg.reason_labels)
        )
        self.limits = RateLimits(cfg.windows_per_hour, cfg.megabytes_per_day * 1_000_000)
        self._lock = threading.Lock()
        self._known: OrderedDict[str, KeepOutcome] = OrderedDict()

    def alertmanager(self, body: bytes) -> list[KeepOutcome]:
        try:
            requests = keep_requests(body, self.rules, now_ns=self.clock())
        except PayloadError as e:
            raise Answer(400, f"not an Alertmanager notification: {e}", "bad-request") from None
        return self.file(requests)

    def keep(self, body: bytes) -> list[KeepOutcome]:
        return self.file([self.parse_keep(body)])

    def parse_keep(self, body: bytes) -> KeepRequest:
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            raise Answer(400, "the body is not JSON", "bad-request") from None
        if not isinstance(doc, dict):
            raise Answer(400, "the body must be a JSON object", "bad-request")
        unknown = sorted(set(doc) - KEEP_FIELDS)
        if unknown:
            raise Answer(400, f"unknown field {printable(unknown[0], 64)!r}; allowed: "
                         f"{', '.join(sorted(KEEP_FIELDS))}", "bad-request")  # fmt: skip
        if not all(isinstance(v, str) and len(v) <= REASON_MAX for v in doc.values()):
            raise Answer(400, f"every field must be a string of at most {REASON_MAX}",
                         "bad-request")  # fmt: skip
        reason = doc.get("reason", "")
        if not reason or printable(reason) != reason:
            raise Answer(400, f"reason: required, printable ASCII, at most {REASON_MAX}",
                         "bad-request")  # fmt: skip
        now_ns = self.clock()
        try:
            since, until = window_ns(
                doc.get("since"), doc.get("until"), around=doc.get("around"),
                before=doc.get("before"), after=doc.get("after"),
                now=datetime.fromtimestamp(now_ns / NS, UTC), command="POST /v1/keep",
            )  # fmt: skip
        except TimeExprError as e:
            raise Answer(400, str(e).replace("--", ""), "bad-request") from None
        longest = (self.cfg.lookback_seconds + self.cfg.max_window_seconds) * NS
        if until - since > longest:
            raise Answer(400, f"the window is {(until - since) / NS:.0f} s long, at most "
                         f"{longest // NS} s (listener.lookback_seconds + max_window_seconds)",
                         "bad-request")  # fmt: skip
        kid = doc.get("id") or derived_id("http", str(since), str(until), reason)
        try:
            return KeepRequest(
                id=kid, reason=reason, since_ns=since, until_ns=until, created_ns=now_ns,
                source="http",
            )  # fmt: skip
        except ValidationError as e:
            first = e.errors()[0] if e.errors() else {"loc": ("request",), "msg": str(e)}
            where = ".".join(str(p) for p in first["loc"]) or "request"
            if where == "id":
                raise Answer(400, f"id: must match {ID_PATTERN}", "bad-request") from None
            raise Answer(400, f"{where}: {first['msg']}", "bad-request") from None

    def file(self, requests: list[KeepRequest]) -> list[KeepOutcome]:
        """Submit each (one at a time); an Answer for the first refused."""
        out: list[KeepOutcome] = []
        # a submit stuck on the disk must not queue every answer behind it
        if not self._lock.acquire(timeout=SUBMIT_WAIT):
            raise Answer(503, "busy: another keep is still being filed; retry", "busy")
        try:
            for req in requests:
                out.append(self._file_one(req, len(out)))
        finally:
            self._lock.release()
        return out

    def _file_one(self, req: KeepRequest, filed: int) -> KeepOutcome:
        source: Source = req.source
        known = self._known.get(req.id)
        if known is not None:
            self._known.move_to_end(req.id)
            self.stats.kept(source, True)
            return KeepOutcome(req.id, known.files, known.bytes, known.unheld, repeated=True)
        now_ns = self.clock()
        bad_window = window_problem(req, now_ns)
        if bad_window:  # before the limits: a bad window costs the sender no quota
            raise Answer(400, bad_window, "bad-request")
        why = self.limits.refusal(now_ns)
        if why is not None:
            log.warning(
                "keep %s (%s) refused: %s", req.id, req.reason, self.limits.describe(why),
                extra=fields(keep_id=req.id, reason=req.reason, refused=why),
            )  # fmt: skip
            raise Answer(429, f"rate limit: {self.limits.describe(why)}; "
                         f"{filed} keep(s) of this request filed before it", why)  # fmt: skip
        try:
            outcome = self.submit(req)
        except PinnedUnlisted as e:  # continuous mode: filed, but the bucket did not answer
            log.warning("keep %s (%s): filed; what of it is stored already is not known yet "
                        "(the bucket: %s)", req.id, req.reason, e,
                        extra=fields(keep_id=req.id, reason=req.reason))  # fmt: skip
            outcome = e.pinned
        except StorageError as e:
            log.error("keep %s (%s) could not be filed: %s", req.id, req.reason, e,
                      extra=fields(keep_id=req.id, reason=req.reason))  # fmt: skip
            raise Answer(503, f"the keep could not be filed: {e}", "busy") from None
        except KeepRefused as e:
            log.warning(
                "keep %s (%s) refused: %s", req.id, req.reason, e,
                extra=fields(keep_id=req.id, reason=req.reason, refused="ring"),
            )  # fmt: skip
            raise Answer(409, str(e).splitlines()[0] if str(e) else "refused", "ring") from None
        except OSError as e:
            log.error("keep %s (%s) could not be stored: %s", req.id, req.reason, e,
                      extra=fields(keep_id=req.id, reason=req.reason))  # fmt: skip
            raise Answer(503, f"the keep could not be stored: {e.strerror or e}", "busy") from None
        self._known[req.id] = outcome
        while len(self._known) > REMEMBERED:
            self._known.popitem(last=False)
        self.stats.kept(source, outcome.repeated)
        if not outcome.repeated:
            self.limits.record(now_ns, outcome.bytes)
            log.info(
                "keep %s filed from %s: %s; %d files, %d bytes",
                req.id, source, req.reason, outcome.files, outcome.bytes,
                extra=fields(keep_id=req.id, reason=req.reason, keep_source=source,
                             origin=req.origin or None, files=outcome.files,
                             bytes=outcome.bytes, since_ns=req.since_ns, until_ns=req.until_ns),
            )  # fmt: skip
        return outcome


def read_token(name: str) -> str | None:
    """The bearer token from $CREDENTIALS_DIRECTORY/NAME, or None (logged)."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY", "")
    if not creds:
        log.error("keep listener not started: no $CREDENTIALS_DIRECTORY for the token "
                  "credential %r (the unit's LoadCredential=)", name)  # fmt: skip
        return None
    path = Path(creds) / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            raw = f.read(MAX_TOKEN + 1)
    except OSError as e:
        log.error(
            "keep listener not started: cannot read its token %s: %s "
            "(/etc/credstore/rollcap-%s, docs/capture.md)", path, e.strerror, name,
        )  # fmt: skip
        return None
    token = raw.decode("ascii", "replace").strip()
    if not token or len(raw) > MAX_TOKEN or printable(token) != token or " " in token:
        log.error("keep listener not started: its token %s must be 1 to %d printable "
                  "characters without spaces", path, MAX_TOKEN)  # fmt: skip
        return None
    return token


class _KeepRequest(BaseHTTPRequestHandler):
    server: _Bound
    timeout = READ_TIMEOUT
    server_version = "rollcap-keep"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self._deadline = threading.Timer(REQUEST_DEADLINE, self._cut)
        self._deadline.daemon = True
        self._deadline.start()

    def finish(self) -> None:
        self._deadline.cancel()
        super().finish()

    def _cut(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def do_POST(self) -> None:
        desk = self.server.desk
        try:
            route = {"/v1/alertmanager": desk.alertmanager, "/v1/keep": desk.keep}.get(
                self.path.split("?", 1)[0]
            )
            if route is None:
                raise Answer(404, "POST /v1/alertmanager or /v1/keep")
            self._authorize()
            outcomes = route(self._body())
        except Answer as a:
            if a.refusal:
                desk.stats.refuse(a.refusal)
            self._answer(a.status, a.line)
            return
        self._answer(200, json.dumps({"keeps": [
            {"id": o.request_id, "files": o.files, "bytes": o.bytes, "repeated": o.repeated}
            for o in outcomes
        ]}), "application/json")  # fmt: skip

    def do_GET(self) -> None:
        self._answer(405, "POST /v1/alertmanager or /v1/keep")

    def _authorize(self) -> None:
        given = self.headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.server.token.encode()
        )
        if not ok:
            raise Answer(401, "a bearer token is required (listener.token_credential)",
                         "unauthorized")  # fmt: skip

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length")
        # ASCII digits only: str.isdigit() takes "²", which int() then refuses
        if length is None or not re.fullmatch(r"[0-9]{1,8}", length):
            raise Answer(411, "Content-Length is required: 1 to 8 digits 0-9", "bad-request")
        n = int(length)
        if n > MAX_BODY:
            raise Answer(413, f"the body is {n} bytes, at most {MAX_BODY}", "bad-request")
        try:
            body = self.rfile.read(n)
        except OSError:
            raise Answer(400, "the body did not arrive in time", "bad-request") from None
        if len(body) != n:
            raise Answer(400, "the body is shorter than its Content-Length", "bad-request")
        return body

    def _answer(self, status: int, line: str, ctype: str = "text/plain; charset=utf-8") -> None:
        body = (line + "\n").encode()
        try:
            self.send_response(status)
            if status == 401:
                self.send_header("WWW-Authenticate", 'Bearer realm="rollcap"')
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client went away; the keep (if any) is filed all the same

    def address_string(self) -> str:
        addr = self.client_address
        return str(addr[0]) if isinstance(addr, tuple) else "unix"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _Bound(BaseServer):
    """What the handler needs from either server."""

    desk: KeepDesk
    token: str
    slots: threading.BoundedSemaphore


class _Limited(ThreadingMixIn):
    """At most MAX_CONNECTIONS threads; a connection beyond that is closed at once."""

    daemon_threads = True
    slots: threading.BoundedSemaphore

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.desk.stats.refuse("busy")  # type: ignore[attr-defined]
            self.shutdown_request(request)  # type: ignore[attr-defined]
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class _TCPServer(_Limited, ThreadingHTTPServer):
    pass


class _TCP6Server(_TCPServer):
    address_family = socket.AF_INET6


class _UnixServer(_Limited, UnixStreamServer):
    pass


def _bind(listen: str) -> BaseServer:
    if listen.startswith("/"):
        try:  # a socket left by an earlier run; anything else there is not ours to remove
            if stat.S_ISSOCK(os.lstat(listen).st_mode):
                os.unlink(listen)
        except FileNotFoundError:
            pass
        # made 0660 by bind itself (the offload's group, rollcap, may file keeps too):
        # a chmod after would leave a moment where others could connect
        old = os.umask(0o117)
        try:
            return _UnixServer(listen, _KeepRequest)
        finally:
            os.umask(old)
    host, _, port = listen.rpartition(":")  # checked by the config (parse_listen)
    host = host.removeprefix("[").removesuffix("]")
    cls = _TCP6Server if ":" in host else _TCPServer
    return cls((host, int(port)), _KeepRequest)


class KeepListener:
    """The listener thread of rollcap-offload (start() once, close() at exit)."""

    def __init__(
        self, cfg: ListenerConfig, submit: Submit, stats: ListenerStats,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:  # fmt: skip
        self.cfg = cfg
        self.desk = KeepDesk(cfg, submit, stats, clock)
        self._server: BaseServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """Where it listens ("host:port" with the bound port, or the socket path)."""
        if self._server is None:
            return ""
        addr = self._server.server_address
        if isinstance(addr, tuple):
            return f"{addr[0]}:{addr[1]}"
        return str(addr)

    def start(self) -> bool:
        """Listen; False (logged) when it cannot: the offload goes on without it."""
        token = read_token(self.cfg.token_credential)
        if token is None:
            return False
        try:
            server = _bind(self.cfg.listen)
        except OSError as e:
            log.error("keep listener not started: cannot listen on %s: %s",
                      self.cfg.listen, e.strerror or e)  # fmt: skip
            return False
        bound: Any = server
        bound.desk, bound.token = self.desk, token
        bound.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.1,), name="keep-listener", daemon=True
        )
        self._thread.start()
        log.info("keep listener on %s: POST /v1/alertmanager, /v1/keep", self.address,
                 extra=fields(listen=self.address))  # fmt: skip
        return True

    def close(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self.cfg.listen.startswith("/"):
            with contextlib.suppress(OSError):
                os.unlink(self.cfg.listen)
        self._server = None
