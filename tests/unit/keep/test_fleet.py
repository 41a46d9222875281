"""Fleet keep requests as every host reads them: untrusted objects in a shared
bucket. A malformed or hostile one is refused with one line naming what is
wrong, and nothing it says can point a host outside its own prefix."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from rollcap.keep import fleet
from rollcap.keep.fleet import NS, BadObject
from rollcap.keep.poller import MAX_ANSWERS_PER_HOUR, FleetPoller
from rollcap.keep.request import KeepOutcome, KeepRefused, KeepRequest
from rollcap.storage.base import StorageError
from tests.support.archive import MemoryStorage

PREFIX = "caps"
NOW = 1_795_694_400 * NS  # 2026-11-26T12:00:00Z
MIN = 60 * NS


class Bucket(MemoryStorage):
    """MemoryStorage with put_bytes as the S3 backend does it: written once
    (If-None-Match), a second write of a key keeps the first."""

    def put_bytes(self, key: str, body: bytes, content_type: str) -> None:
        self.objects.setdefault(key, (body, {}))


def _body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": 1, "id": "INC-42", "reason": "INC-42 outage", "since_ns": NOW - 30 * MIN,
        "until_ns": NOW, "hosts": ["web*"], "created_ns": NOW, "expires_ns": NOW + 60 * MIN,
    }  # fmt: skip
    body.update(over)
    return body


def _raw(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def test_a_request_round_trips_through_its_key() -> None:
    req = fleet.new_request("INC-42", NOW - 30 * MIN, NOW, ("web*",), now_ns=NOW)
    b = Bucket()
    key = fleet.write_request(b, PREFIX, req)
    assert key == f"caps/_requests/{req.id}.json"
    assert fleet.parse_request(key, b.objects[key][0], PREFIX) == req
    assert req.names("web1") and not req.names("db1")
    assert fleet.new_request("x", 0, 1).names("anything")  # no patterns: every host


@pytest.mark.parametrize(
    ("key", "body", "words"),
    [
        # wrong prefix or shape: the key itself is refused before the body is read
        ("other/_requests/INC-42.json", _body(), "not a request key"),
        ("caps/_requests/sub/INC-42.json", _body(), "not a request key"),
        ("caps/_requests/../web2/INC-42.json", _body(), "not a request key"),
        ("caps/_requests/INC-42.txt", _body(), "not a request key"),
        ("caps/_requests/INC-43.json", _body(), "is not the key's"),
        # fields that would point a host elsewhere do not exist
        ("caps/_requests/INC-42.json", _body(prefix="web2/"), "prefix: Extra inputs"),
        ("caps/_requests/INC-42.json", _body(key="caps/web2/x"), "key: Extra inputs"),
        ("caps/_requests/INC-42.json", _body(version=2), "version"),
        ("caps/_requests/INC-42.json", _body(until_ns=NOW - 31 * MIN), "end must be after"),
        ("caps/_requests/INC-42.json", _body(since_ns=NOW - 25 * 3600 * NS), "longer than 24 h"),
        ("caps/_requests/INC-42.json", _body(expires_ns=NOW + 8 * 86400 * NS), "at most 7 days"),
        ("caps/_requests/INC-42.json", _body(hosts=["web[12]"]), "host pattern"),
        ("caps/_requests/INC-42.json", _body(hosts=["w"] * 33), "hosts"),
        ("caps/_requests/INC-42.json", _body(reason="a\nb"), "reason"),
        ("caps/_requests/INC-42.json", _body(since_ns="0"), "since_ns"),
    ],
)
def test_hostile_requests_are_refused_naming_why(key: str, body: dict[str, Any],
                                                 words: str) -> None:  # fmt: skip
    with pytest.raises(BadObject, match=None) as e:
        fleet.parse_request(key, _raw(body), PREFIX)
    assert words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "object"),
        (b"[" * 3000, "nested too deep"),  # under the size limit, past the parser's stack
        (b" " * (fleet.MAX_OBJECT_BYTES + 1), "more than 4096"),
    ],
)
def test_bad_json_and_huge_objects_are_refused(body: bytes, words: str) -> None:
    with pytest.raises(BadObject) as e:
        fleet.parse_request("caps/_requests/INC-42.json", body, PREFIX)
    assert words in str(e.value)


def test_a_huge_object_is_never_downloaded() -> None:
    b = Bucket()
    b.objects["caps/_requests/INC-42.json"] = (b"x" * 10_000_000, {})
    with pytest.raises(BadObject, match="more than 4096"):
        fleet.read_object(b, "caps/_requests/INC-42.json", 10_000_000)


def test_expiry_and_clock_skew() -> None:
    req = fleet.FleetRequest.model_validate_json(_raw(_body()))
    assert fleet.check_age(req, NOW) == ""
    assert fleet.check_age(req, NOW - 9 * MIN) == ""  # this host's clock a little behind
    assert "expired" in fleet.check_age(req, NOW + 60 * MIN)
    assert "future" in fleet.check_age(req, NOW - 11 * MIN)


@pytest.mark.parametrize("field", ["answered_ns", "unheld"])
def test_an_ack_with_a_time_past_64_bits_is_not_believed(field: str) -> None:
    """`keep --status` prints an ack's times: one past year 9999 made it raise."""
    ack = fleet.Ack(id="INC-42", host="web2", state="shipped", files=1, bytes=10,
                    answered_ns=NOW).model_dump(mode="json")  # fmt: skip
    ack[field] = 10**21 if field == "answered_ns" else [[NOW, 10**21]]
    with pytest.raises(BadObject):
        fleet.parse_ack(fleet.ack_key(PREFIX, "INC-42", "web2"), _raw(ack), PREFIX)


def test_an_ack_naming_another_host_is_not_believed() -> None:
    ack = fleet.Ack(id="INC-42", host="web2", state="shipped", files=1, bytes=10,
                    answered_ns=NOW)  # fmt: skip
    # web1 may write keys named web1~...; one that carries web2's answer is refused
    key = fleet.ack_key(PREFIX, "INC-42", "web1")
    with pytest.raises(BadObject, match="names INC-42/web2"):
        fleet.parse_ack(key, fleet._json(ack), PREFIX)
    for odd in ("caps/_index/acks/v1/INC-42/web2~ack.json/web1~ack.json",
                "caps/_index/acks/v1/INC-42/sub/web1~ack.json",
                "caps/_index/acks/v1/INC-42/web1.json",
                "caps/_index/manifest/v1/INC-42/web1~ack.json"):  # fmt: skip
        with pytest.raises(BadObject, match="not an acknowledgement key"):
            fleet.ack_of_key(odd, PREFIX)
    good = fleet.ack_key(PREFIX, "INC-42", "web2")
    assert fleet.parse_ack(good, fleet._json(ack), PREFIX) == ack


def test_unheld_is_the_window_minus_what_is_held() -> None:
    assert fleet.uncovered(0, 100, []) == ((0, 100),)
    assert fleet.uncovered(0, 100, [(50, 60), (-5, 10), (55, 200)]) == ((10, 50),)
    assert fleet.uncovered(0, 100, [(0, 100)]) == ()


# -- the poller -------------------------------------------------------------


class Recorder:
    def __init__(self, files: int = 2, refuse: str = "") -> None:
        self.calls: list[KeepRequest] = []
        self.files = files
        self.refuse = refuse

    def __call__(self, req: KeepRequest) -> KeepOutcome:
        self.calls.append(req)
        if self.refuse:
            raise KeepRefused(self.refuse)
        return KeepOutcome(req.id, self.files, 1000 * self.files,
                           ((req.since_ns, req.since_ns + MIN),))  # fmt: skip


def _poller(b: Bucket, tmp: Path, host: str = "web1", submit: Any = None,
            now: int = NOW) -> FleetPoller:  # fmt: skip
    return FleetPoller(b, PREFIX, host, submit or Recorder(), tmp, 60.0, threading.Event(),
                       clock=lambda: now)  # fmt: skip


def _put(b: Bucket, **over: Any) -> str:
    body = _body(**over)
    key = f"caps/_requests/{body['id']}.json"
    b.objects[key] = (_raw(body), {})
    return key


def test_the_poller_answers_once_across_restarts(tmp_path: Path) -> None:
    b = Bucket()
    _put(b)
    rec = Recorder()
    p = _poller(b, tmp_path, submit=rec)
    p.poll()
    p.poll()
    assert [r.id for r in rec.calls] == ["INC-42"] and rec.calls[0].source == "fleet"
    ack = fleet.parse_ack(k := fleet.ack_key(PREFIX, "INC-42", "web1"), b.objects[k][0], PREFIX)
    assert (ack.state, ack.files, ack.bytes, ack.unheld) == (
        "shipped", 2, 2000, ((NOW - 30 * MIN, NOW - 29 * MIN),))
    _poller(b, tmp_path, submit=rec).poll()  # a restart: the state says answered
    assert len(rec.calls) == 1
    lists = [x for x in b.listed if x == "caps/_requests/"]
    assert len(lists) == 3  # one LIST per poll, and nothing else listed


def test_the_poller_settles_hostile_requests_with_one_line_each(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    b = Bucket()
    _put(b, id="BAD-1", reason="x" * 1000)
    b.objects["caps/_requests/BAD-2.json"] = (b"{", {})
    b.objects["caps/_requests/huge.json"] = (b" " * 100_000, {})
    b.objects["caps/_requests/nested/x.json"] = (_raw(_body()), {})
    _put(b, id="OLD", created_ns=NOW - 120 * MIN, expires_ns=NOW - 60 * MIN)
    _put(b, id="FUTURE", created_ns=NOW + 120 * MIN, expires_ns=NOW + 180 * MIN,
         since_ns=NOW, until_ns=NOW + MIN)  # fmt: skip
    _put(b, id="DB", hosts=["db*"])
    rec = Recorder()
    with caplog.at_level(logging.INFO, "rollcap.offload"):
        p = _poller(b, tmp_path, submit=rec)
        p.poll()
        p.poll()
    assert rec.calls == []
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 5, warned  # BAD-1, BAD-2, huge, nested, FUTURE: once each
    assert all("fleet keep request ignored" in w and "\n" not in w for w in warned)
    assert not [k for k in b.objects if "/_index/" in k]  # no ack for any of them
    assert p.settled["DB"] == "other-hosts" and p.settled["OLD"] == "expired"


def test_requests_that_break_parsing_or_calendars_are_settled_and_later_ones_answered(
        tmp_path: Path) -> None:  # fmt: skip
    """Each once broke poll() on the same key at every round: no later request was answered."""
    b = Bucket()
    b.objects["caps/_requests/A-deep.json"] = (b"[" * 3000, {})
    year_300000 = 300_000 * 365 * 86400 * NS
    _put(b, id="B-year", created_ns=year_300000, expires_ns=year_300000 + MIN)
    _put(b, id="C-late", until_ns=2**63, since_ns=2**63 - MIN)

    def far(req: KeepRequest) -> KeepOutcome:
        raise ValueError("year 10000 is out of range")  # manifest.slots on a far window

    _put(b, id="D-slots")
    p = _poller(b, tmp_path, submit=far)
    p.poll()
    assert p.settled == {"A-deep": "refused", "B-year": "refused", "C-late": "refused",
                         "D-slots": "answered"}  # fmt: skip
    k = fleet.ack_key(PREFIX, "D-slots", "web1")
    assert fleet.parse_ack(k, b.objects[k][0], PREFIX).state == "refused"


def test_a_refused_keep_is_acknowledged_as_refused(tmp_path: Path) -> None:
    b = Bucket()
    _put(b)
    _poller(b, tmp_path, submit=Recorder(refuse="pinned cap 30 % (3 GB) reached")).poll()
    k = fleet.ack_key(PREFIX, "INC-42", "web1")
    ack = fleet.parse_ack(k, b.objects[k][0], PREFIX)
    assert ack.state == "refused" and "pinned cap" in ack.message


def test_a_flood_of_requests_is_answered_at_the_hourly_limit(tmp_path: Path) -> None:
    b = Bucket()
    for i in range(MAX_ANSWERS_PER_HOUR + 5):
        _put(b, id=f"R{i:03d}")
    rec = Recorder()
    p = _poller(b, tmp_path, submit=rec)
    p.poll()
    p.poll()
    assert len(rec.calls) == MAX_ANSWERS_PER_HOUR
    assert len(p.settled) == MAX_ANSWERS_PER_HOUR  # the rest wait, unread


def test_the_state_forgets_requests_the_lifecycle_deleted(tmp_path: Path) -> None:
    b = Bucket()
    key = _put(b)
    p = _poller(b, tmp_path)
    p.poll()
    assert "INC-42" in json.loads((tmp_path / "keep-fleet.json").read_text())["settled"]
    del b.objects[key]
    p.poll()
    assert json.loads((tmp_path / "keep-fleet.json").read_text())["settled"] == {}


def test_status_names_who_shipped_held_nothing_and_did_not_answer(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from rollcap.storage import manifest

    b = Bucket()
    req = fleet.new_request("INC-42", NOW - 30 * MIN, NOW, ("web*",), now_ns=NOW)
    fleet.write_request(b, PREFIX, req)
    for host in ("web1", "web2", "web3", "db1"):  # the fleet index knows four hosts
        e = manifest.Entry(key="", host=host, iface="eth0",
                           opened=datetime.fromtimestamp((NOW - 20 * MIN) / NS, UTC),
                           closed_ts=(NOW - 10 * MIN) // NS, first_ns=None, last_ns=None,
                           packets=0, pcap_bytes=24, size=0, linktype=1)  # fmt: skip
        manifest.write_entries(b, e, PREFIX)
    fleet.write_ack(b, PREFIX, fleet.make_ack(req, "web1", KeepOutcome(req.id, 3, 300)))
    fleet.write_ack(b, PREFIX, fleet.make_ack(
        req, "web2", KeepOutcome(req.id, 0, 0, ((req.since_ns, req.until_ns),))))
    forged = fleet.make_ack(req, "web3", KeepOutcome(req.id, 9, 9))  # written by web4
    b.objects[fleet.ack_key(PREFIX, req.id, "web4")] = (fleet._json(forged), {})
    st = fleet.status(b, PREFIX, req.id)
    assert [a.host for a in st.by_state("shipped")] == ["web1"]
    assert [a.host for a in st.by_state("nothing-held")] == ["web2"]
    # db1 is not asked; web4's forgery is not web3's answer, nor web4's own
    assert st.waiting == ["web3", "web4"]
    assert st.refused_objects == [fleet.ack_key(PREFIX, req.id, "web4")]
    text = "\n".join(fleet.status_lines(st))
    assert "web2: 0 files, 0 bytes; not held: 2026-11-26T11:30:00Z..2026-11-26T12:00:00Z" in text
    assert "not answered: 2 (web3 web4)" in text
    with pytest.raises(BadObject, match="no fleet keep request"):
        fleet.status(b, PREFIX, "nope")


class Flaky(Bucket):
    """A bucket whose acknowledgement writes fail until told otherwise."""

    down = True

    def put_bytes(self, key: str, body: bytes, content_type: str) -> None:
        if self.down and "/_index/acks/" in key:
            raise StorageError("PUT memory://x: 503 SlowDown")
        super().put_bytes(key, body, content_type)


def test_a_failed_acknowledgement_is_retried_and_said_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    b = Flaky()
    _put(b)
    rec = Recorder()
    p = _poller(b, tmp_path, submit=rec)
    with caplog.at_level(logging.WARNING, "rollcap.offload"):
        p.poll()
        p.poll()
    assert [r.getMessage() for r in caplog.records] == [
        "fleet keep INC-42: cannot write the acknowledgement: PUT memory://x: 503 SlowDown "
        "(retried at the next poll)"]
    assert "INC-42" not in p.settled and not p.answers  # no hourly budget spent on it
    b.down = False
    p.poll()
    assert p.settled["INC-42"] == "answered"
    assert fleet.ack_key(PREFIX, "INC-42", "web1") in b.objects
    assert len(rec.calls) == 3  # filed again each time: Submit is idempotent by id


def test_continuous_mode_spans_a_ready_file_as_the_pins_do(tmp_path: Path) -> None:
    """stored_submitter takes a ready/ file's span from pins.held_files: a file
    last written before its name's second (a clock stepped back) spans that
    second, not an inverted interval that made the unheld parts overlap."""
    import os
    from datetime import UTC, datetime

    from rollcap.keep.stored import stored_submitter
    from rollcap.spool.readyname import ReadyName

    t0 = NOW // NS
    mine = ReadyName(datetime.fromtimestamp(t0 + 10, UTC), 1, "web1", "eth0").format()
    other = ReadyName(datetime.fromtimestamp(t0 + 20, UTC), 2, "web2", "eth0").format()
    for name in (mine, other):
        (tmp_path / name).write_bytes(b"x" * 100)
        os.utime(tmp_path / name, ns=((t0 + 5) * NS, (t0 + 5) * NS))
    req = KeepRequest(id="k", reason="r", since_ns=NOW, until_ns=NOW + MIN, created_ns=NOW,
                      source="fleet")  # fmt: skip
    out = stored_submitter(Bucket(), PREFIX, "web1", tmp_path)(req)
    assert (out.files, out.bytes) == (1, 100)
    assert out.unheld == ((NOW, NOW + 10 * NS), (NOW + 11 * NS, NOW + MIN))
