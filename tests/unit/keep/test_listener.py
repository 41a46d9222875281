"""The keep listener over real sockets, with an in-memory Submit: auth, bodies,
ids remembered, rate limits and what each refusal counts."""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from socketserver import UnixStreamServer
from typing import Any

import pytest
from prometheus_client import generate_latest

from rollcap.config.schema import ListenerConfig, RollcapConfig
from rollcap.keep.listener import Answer, KeepDesk, KeepListener, ListenerStats, RateLimits
from rollcap.keep.request import KeepOutcome, KeepRefused, KeepRequest
from rollcap.metrics.exporter import offload_exporter
from rollcap.metrics.publish import own_series
from rollcap.timestamps import NS
from tests.unit.keep.test_alerts import NOW, alert, payload

TOKEN = "s3cret-token"


class FakeRing:
    """Files each id once, like the contract says (the ring's own tests prove the real one)."""

    def __init__(self, bytes_each: int = 1000) -> None:
        self.filed: dict[str, KeepRequest] = {}
        self.calls = 0
        self.bytes_each = bytes_each
        self.refuse: str | None = None
        self.lock = threading.Lock()

    def __call__(self, req: KeepRequest) -> KeepOutcome:
        with self.lock:
            self.calls += 1
            if self.refuse:
                raise KeepRefused(self.refuse)
            repeated = req.id in self.filed
            self.filed.setdefault(req.id, req)
            return KeepOutcome(req.id, 2, self.bytes_each, repeated=repeated)


def _cfg(**kw: Any) -> ListenerConfig:
    cfg = ListenerConfig(enabled=True, **kw)
    # port 0 (any free one) is no operator's setting: the config refuses it
    return cfg if "listen" in kw else cfg.model_copy(update={"listen": "127.0.0.1:0"})


@pytest.fixture
def creds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "creds"
    d.mkdir()
    (d / "listener-token").write_text(TOKEN + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(d))
    return d


class Client:
    def __init__(self, listener: KeepListener, ring: FakeRing, stats: ListenerStats) -> None:
        self.listener, self.ring, self.stats = listener, ring, stats

    def post(self, path: str, body: bytes, token: str | None = TOKEN,
             headers: dict[str, str] | None = None) -> tuple[int, str]:  # fmt: skip
        host, port = self.listener.address.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        conn.request("POST", path, body=body, headers=h)
        resp = conn.getresponse()
        text = resp.read().decode()
        conn.close()
        return resp.status, text

    def refused(self) -> dict[str, int]:
        return {k: v for k, v in self.stats.refused.items() if v}


def _start(cfg: ListenerConfig, ring: FakeRing) -> Iterator[Client]:
    stats = ListenerStats()
    listener = KeepListener(cfg, ring, stats, clock=lambda: NOW)  # the payloads' time
    assert listener.start()
    try:
        yield Client(listener, ring, stats)
    finally:
        listener.close()


@pytest.fixture
def client(creds: Path) -> Iterator[Client]:
    yield from _start(_cfg(), FakeRing())


def test_a_notification_files_one_keep_per_alert_and_answers_with_their_ids(
    client: Client,
) -> None:
    status, text = client.post("/v1/alertmanager", payload(alert(), alert(fingerprint="b")))
    assert status == 200
    keeps = json.loads(text)["keeps"]
    assert [k["repeated"] for k in keeps] == [False, False]
    assert sorted(k["id"] for k in keeps) == sorted(client.ring.filed)


def test_a_retried_notification_files_nothing_new(client: Client) -> None:
    assert client.post("/v1/alertmanager", payload())[0] == 200
    status, text = client.post("/v1/alertmanager", payload())
    assert status == 200
    assert json.loads(text)["keeps"][0]["repeated"] is True
    assert len(client.ring.filed) == 1
    assert client.stats.keeps == {("alertmanager", "filed"): 1, ("alertmanager", "repeated"): 1}


@pytest.mark.parametrize("token", [None, "", "wrong", TOKEN + "x", TOKEN[:-1]])
def test_without_the_token_nothing_is_filed(client: Client, token: str | None) -> None:
    status, text = client.post("/v1/alertmanager", payload(), token=token)
    assert status == 401
    assert text.count("\n") == 1
    assert client.ring.calls == 0
    assert client.refused() == {"unauthorized": 1}


def test_basic_auth_with_the_token_as_password_is_refused(client: Client) -> None:
    status, _ = client.post("/v1/keep", b"{}", token=None,
                            headers={"Authorization": f"Basic {TOKEN}"})  # fmt: skip
    assert status == 401


def test_a_hostile_payload_is_400_with_one_line_and_the_listener_goes_on(client: Client) -> None:
    for body in (b"\x00" * 100, b"{" * 50000, payload(version="3"), b'{"version":"4"}'):
        status, text = client.post("/v1/alertmanager", body)
        assert status == 400
        assert text.startswith("not an Alertmanager notification: ")
        assert text.count("\n") == 1
    assert client.post("/v1/alertmanager", payload())[0] == 200
    assert client.refused() == {"bad-request": 4}


def test_bodies_are_bounded_and_need_a_length(client: Client) -> None:
    host, port = client.listener.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(f"POST /v1/keep HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                  "Content-Length: 2000000\r\n\r\n".encode())  # fmt: skip
        assert s.recv(100).startswith(b"HTTP/1.0 413")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(f"POST /v1/keep HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                  "\r\n".encode())  # fmt: skip
        assert s.recv(100).startswith(b"HTTP/1.0 411")
    for bad in (b"\xb2", b"\xd9\xa3", b"1" * 9, b"+5", b" "):  # "²".isdigit() is True
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(f"POST /v1/keep HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                      .encode() + b"Content-Length: " + bad + b"\r\n\r\n")  # fmt: skip
            assert s.recv(100).startswith(b"HTTP/1.0 411"), bad
    assert client.post("/v1/alertmanager", payload())[0] == 200  # and it goes on


def test_a_client_that_stops_sending_is_cut_off(client: Client) -> None:
    host, port = client.listener.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"POST /v1/keep HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                  "Content-Length: 100\r\n\r\n{".encode())  # fmt: skip
        answer = s.recv(100)  # READ_TIMEOUT, then one line (or a close)
    assert answer == b"" or answer.startswith(b"HTTP/1.0 400")
    assert client.ring.calls == 0


def test_other_paths_and_methods(client: Client) -> None:
    assert client.post("/v1/other", b"{}")[0] == 404
    host, port = client.listener.address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", "/v1/keep")
    assert conn.getresponse().status == 405


def test_post_keep_takes_the_cli_window_grammar(client: Client) -> None:
    body = {"around": "2026-12-07T22:00:00Z", "before": "10m", "after": "5m",
            "reason": "IDS sid 2019401"}  # fmt: skip
    status, text = client.post("/v1/keep", json.dumps(body).encode())
    assert status == 200, text
    (req,) = client.ring.filed.values()
    assert (req.until_ns - req.since_ns) == 15 * 60 * NS
    assert req.source == "http" and req.reason == "IDS sid 2019401"
    # the same fields again: the same keep
    assert json.loads(client.post("/v1/keep", json.dumps(body).encode())[1])["keeps"][0][
        "repeated"
    ]
    since = {"since": "20m", "until": "10m", "reason": "x", "id": "INC-42"}
    assert client.post("/v1/keep", json.dumps(since).encode())[0] == 200
    assert "INC-42" in client.ring.filed


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"since": "10m"}, "reason: required"),
        ({"since": "10m", "reason": "a\nb"}, "reason: required, printable"),
        ({"since": "later", "reason": "x"}, "since: cannot read 'later'"),
        ({"reason": "x"}, "needs a time window"),
        ({"since": "5m", "until": "10m", "reason": "x"}, "must be before"),
        ({"since": "2h", "reason": "x"}, "at most 2400 s"),
        ({"since": "10m", "reason": "x", "id": "../etc"}, "id: must match"),
        ({"since": "10m", "reason": "x", "host": "y"}, "unknown field 'host'"),
        ({"since": 600, "reason": "x"}, "must be a string"),
        ({"around": "0001-01-01", "reason": "x"}, "out of range (1970-01-01 to 2262-04-11"),
        ({"since": "@99999999999999999999", "reason": "x"}, "out of range (1970-01-01"),
        ({"around": "@0", "before": "1m", "reason": "x"}, "reaches beyond 1970-01-01"),
    ],
)
def test_post_keep_refuses_what_the_cli_refuses(
    client: Client, body: dict[str, Any], says: str
) -> None:
    status, text = client.post("/v1/keep", json.dumps(body).encode())
    assert status == 400
    assert says in text and text.count("\n") == 1
    assert client.ring.calls == 0


def test_windows_per_hour_then_429_counted_and_repeats_still_answered(creds: Path) -> None:
    for c in _start(_cfg(windows_per_hour=2), FakeRing()):
        for fp in ("a", "b"):
            assert c.post("/v1/alertmanager", payload(alert(fingerprint=fp)))[0] == 200
        status, text = c.post("/v1/alertmanager", payload(alert(fingerprint="c")))
        assert status == 429
        assert text == ("rate limit: 2 keeps in the last hour (listener.windows_per_hour); "
                        "0 keep(s) of this request filed before it\n")  # fmt: skip
        assert c.refused() == {"windows-per-hour": 1}
        # Alertmanager repeating an alert already kept is no new window
        assert c.post("/v1/alertmanager", payload(alert(fingerprint="a")))[0] == 200
        assert len(c.ring.filed) == 2


def test_bytes_per_day_counts_what_the_ring_pinned(creds: Path) -> None:
    for c in _start(_cfg(megabytes_per_day=1), FakeRing(bytes_each=600_000)):
        assert c.post("/v1/alertmanager", payload(alert(fingerprint="a")))[0] == 200
        # 0.6 MB used: the next is filed and crosses the limit
        assert c.post("/v1/alertmanager", payload(alert(fingerprint="b")))[0] == 200
        status, text = c.post("/v1/alertmanager", payload(alert(fingerprint="c")))
        assert status == 429
        assert "hold 1200000 bytes, the limit is 1000000" in text
        assert c.refused() == {"bytes-per-day": 1}


def test_rate_limits_slide() -> None:
    limits = RateLimits(windows_per_hour=1, bytes_per_day=10)
    limits.record(0, 5)
    assert limits.refusal(3599 * NS) == "windows-per-hour"
    assert limits.refusal(3600 * NS) is None
    limits.record(3600 * NS, 5)
    assert limits.refusal(7200 * NS) == "bytes-per-day"
    assert limits.refusal(86400 * NS) is None  # the first 5 bytes are a day old


def test_a_keep_the_ring_refuses_is_409_with_its_line(creds: Path) -> None:
    ring = FakeRing()
    ring.refuse = "pinned bytes would be 3.1 GB, over the cap of 3.0 GB (30 % of the budget)"
    for c in _start(_cfg(), ring):
        status, text = c.post("/v1/alertmanager", payload())
        assert (status, text) == (409, ring.refuse + "\n")
        assert c.refused() == {"ring": 1}


def test_no_token_no_listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert not KeepListener(_cfg(), FakeRing(), ListenerStats()).start()
    assert "no $CREDENTIALS_DIRECTORY" in caplog.text
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert not KeepListener(_cfg(), FakeRing(), ListenerStats()).start()
    assert "cannot read its token" in caplog.text
    (tmp_path / "listener-token").write_text("\n")
    assert not KeepListener(_cfg(), FakeRing(), ListenerStats()).start()
    assert "must be 1 to 4096 printable" in caplog.text


def test_a_unix_socket(creds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "keep.sock"
    path.touch()  # not a socket: left alone, the bind fails and says so
    assert not KeepListener(_cfg(listen=str(path)), FakeRing(), ListenerStats()).start()
    path.unlink()
    ring = FakeRing()
    listener = KeepListener(_cfg(listen=str(path)), ring, ListenerStats(), clock=lambda: NOW)
    at_bind: list[int] = []
    real_bind = UnixStreamServer.server_bind

    def bind(self: UnixStreamServer) -> None:
        real_bind(self)
        at_bind.append(path.stat().st_mode & 0o777)  # no moment wider than 0660

    monkeypatch.setattr(UnixStreamServer, "server_bind", bind)
    assert listener.start()
    try:
        assert at_bind == [0o660]
        assert path.stat().st_mode & 0o777 == 0o660
        body = payload()
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(path))
            s.sendall(f"POST /v1/alertmanager HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n".encode() + body)  # fmt: skip
            assert s.recv(100).startswith(b"HTTP/1.0 200")
        assert len(ring.filed) == 1
    finally:
        listener.close()
    assert not path.exists()


def test_the_desk_remembers_ids_within_bounds() -> None:
    ring = FakeRing()
    desk = KeepDesk(_cfg(windows_per_hour=100000), ring, ListenerStats(), clock=lambda: NOW)
    (first,) = desk.alertmanager(payload())
    (again,) = desk.alertmanager(payload())
    assert not first.repeated and again.repeated
    assert ring.calls == 1  # answered from memory


def test_a_stuck_submit_makes_others_wait_a_second_at_most(creds: Path) -> None:
    release = threading.Event()

    class StuckRing(FakeRing):
        def __call__(self, req: KeepRequest) -> KeepOutcome:
            if req.origin == "stuck":
                release.wait(30)
            return super().__call__(req)

    for c in _start(_cfg(), StuckRing()):
        first = threading.Thread(
            target=c.post, args=("/v1/alertmanager", payload(alert(fingerprint="stuck")))
        )
        first.start()
        deadline = time.monotonic() + 10
        while not c.listener.desk._lock.locked():  # the stuck keep holds the desk
            assert time.monotonic() < deadline
            release.wait(0.01)
        status, text = c.post("/v1/alertmanager", payload(alert(fingerprint="other")))
        assert (status, text) == (503, "busy: another keep is still being filed; retry\n")
        assert c.refused() == {"busy": 1}
        release.set()
        first.join(10)
        assert [r.origin for r in c.ring.filed.values()] == ["stuck"]


def test_a_client_trickling_its_request_is_cut_off_at_the_deadline(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rollcap.keep import listener as module

    monkeypatch.setattr(module, "REQUEST_DEADLINE", 0.5)
    host, port = client.listener.address.rsplit(":", 1)
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /v1/keep HTTP/1.1\r\n")
        cut = False
        for _ in range(100):  # a header byte every 0.1 s: READ_TIMEOUT never fires
            try:
                s.sendall(b"X")
            except OSError:
                cut = True
                break
            s.settimeout(0.1)
            try:
                if s.recv(100) == b"":
                    cut = True
                    break
            except TimeoutError:
                pass
    assert cut and time.monotonic() - started < 5
    assert client.ring.calls == 0


def test_no_combination_of_time_fields_escapes_as_anything_but_an_answer() -> None:
    desk = KeepDesk(_cfg(windows_per_hour=100000), FakeRing(), ListenerStats())
    rng = random.Random(27)
    values = ["now", "10m", "-5m", "+5m", "@0", "@99999999999999999999", "99999999999w",
              "99999999999w ago", "9999-12-31T23:59:59Z", "0001-01-01", "12:00", "tomorrow",
              "", "x", "1h30m", "5", "0m", "+99999999999w"]  # fmt: skip
    answered = filed = 0
    for _ in range(3000):
        keys = rng.sample(["since", "until", "around", "before", "after"], rng.randint(0, 3))
        doc = {k: rng.choice(values) for k in keys} | {"reason": "r"}
        try:
            desk.keep(json.dumps(doc).encode())
            filed += 1
        except Answer as a:
            assert a.status == 400 and "\n" not in a.line
            answered += 1
    assert filed and answered


def test_connections_beyond_the_limit_are_closed_unanswered(
    creds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rollcap.keep import listener as module

    monkeypatch.setattr(module, "MAX_CONNECTIONS", 1)
    for c in _start(_cfg(), FakeRing()):
        host, port = c.listener.address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as held:
            held.sendall(b"POST /v1/keep HTTP/1.1\r\n")  # holds the one slot
            with socket.create_connection((host, int(port)), timeout=10) as extra:
                assert extra.recv(100) == b""
            assert c.refused() == {"busy": 1}
        # the slot comes back once the first is cut off
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError):  # closed unanswered while the slot is held
                if c.post("/v1/alertmanager", payload())[0] == 200:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_a_window_starting_in_the_future_is_refused() -> None:
    ring = FakeRing()
    now = 1_800_000_000 * NS
    desk = KeepDesk(_cfg(), ring, ListenerStats(), clock=lambda: now)
    future = alert(startsAt="2030-01-01T00:00:00Z")  # lookback 600 s: far after now
    with pytest.raises(Answer) as e:
        desk.alertmanager(payload(future))
    assert e.value.status == 400 and "at most 300 s ahead (clock skew)" in e.value.line
    soon = {"around": f"@{now // NS + 600}", "before": "10m", "after": "1m", "reason": "x"}
    assert desk.keep(json.dumps(soon).encode())  # starts now: filed
    assert ring.calls == 1


def test_the_listeners_series_survive_roots_copy_of_the_offload_textfile() -> None:
    """node_exporter reads root's copy, which keeps each daemon's own series only."""
    cfg = RollcapConfig()
    exporter = offload_exporter(cfg)
    stats = ListenerStats()
    exporter.add(stats)
    stats.refuse("windows-per-hour")
    stats.kept("alertmanager", False)
    text, dropped = own_series("offload", generate_latest(exporter.registry))
    assert dropped == 0
    assert b'rollcap_listener_refused_total{reason="windows-per-hour"} 1.0' in text
    assert b'rollcap_listener_keeps_total{result="filed",source="alertmanager"} 1.0' in text


def test_continuous_mode_answers_from_the_pin_when_the_bucket_cannot_be_listed(
    tmp_path: Path,
) -> None:
    """stored_submitter files the pin, then lists the bucket: a bucket down then is
    no crash of the handler, the keep is answered and counted against the limits."""
    from rollcap.keep.stored import stored_submitter
    from rollcap.storage.base import StorageError
    from tests.support.archive import MemoryStorage

    class Down(MemoryStorage):
        def list(self, prefix: str):  # type: ignore[no-untyped-def,override]
            raise StorageError("LIST memory://x: 503 SlowDown")

    ring = FakeRing(bytes_each=700)
    now = 1_800_000_000 * NS
    submit = stored_submitter(Down(), "caps", "h", tmp_path, ring)
    desk = KeepDesk(_cfg(windows_per_hour=1), submit, ListenerStats(), clock=lambda: now)
    body = {"around": f"@{now // NS - 600}", "before": "1m", "after": "1m", "reason": "x"}
    (out,) = desk.keep(json.dumps(body).encode())
    assert (out.files, out.bytes) == (2, 700) and ring.calls == 1
    assert desk.limits.refusal(now) == "windows-per-hour"  # it counted
    with pytest.raises(Answer) as e:  # no pin at all: a 503 naming the bucket
        KeepDesk(_cfg(), stored_submitter(Down(), "caps", "h", tmp_path), ListenerStats(),
                 clock=lambda: now).keep(json.dumps(body).encode())  # fmt: skip
    assert e.value.status == 503 and "503 SlowDown" in e.value.line
