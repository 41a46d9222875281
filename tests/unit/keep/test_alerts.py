"""Alertmanager's webhook payload as keep requests: windows, ids, reasons, and
payloads that are not what they claim to be."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from rollcap.keep.alerts import AlertWindows, PayloadError, keep_requests, parse_rfc3339_ns
from rollcap.timestamps import NS

RULES = AlertWindows(lookback_ns=600 * NS, max_window_ns=1800 * NS,
                     reason_labels=("instance", "severity"))  # fmt: skip
START = "2026-12-07T22:00:00.123456789Z"
START_NS = parse_rfc3339_ns(START, "t") or 0
NOW = START_NS + 60 * NS


def alert(**kw: Any) -> dict[str, Any]:
    a: dict[str, Any] = {
        "status": "firing",
        "labels": {"alertname": "HighLatency", "instance": "db1:9100", "severity": "page",
                   "job": "node"},
        "annotations": {"summary": "slow"},
        "startsAt": START,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": "5f2c1b0e9d8a7c6b",
    }  # fmt: skip
    a.update(kw)
    return a


def payload(*alerts: dict[str, Any], **kw: Any) -> bytes:
    doc: dict[str, Any] = {
        "version": "4", "groupKey": '{}:{alertname="HighLatency"}', "truncatedAlerts": 0,
        "status": "firing", "receiver": "rollcap", "groupLabels": {}, "commonLabels": {},
        "commonAnnotations": {}, "externalURL": "http://am", "alerts": list(alerts or [alert()]),
    }  # fmt: skip
    doc.update(kw)
    return json.dumps(doc).encode()


def test_a_firing_alert_keeps_lookback_before_startsat_to_the_cap_after() -> None:
    (req,) = keep_requests(payload(), RULES, now_ns=NOW)
    assert req.since_ns == START_NS - 600 * NS
    assert req.until_ns == START_NS + 1800 * NS
    assert req.source == "alertmanager"
    assert req.origin == "5f2c1b0e9d8a7c6b"
    assert req.created_ns == NOW
    assert req.reason == "alert HighLatency instance=db1:9100 severity=page"


def test_an_alert_first_seen_resolved_ends_at_endsat_and_never_past_the_cap() -> None:
    ended = alert(status="resolved", endsAt="2026-12-07T22:05:00Z")
    (req,) = keep_requests(payload(ended), RULES, now_ns=NOW)
    assert req.until_ns == parse_rfc3339_ns("2026-12-07T22:05:00Z", "t")
    late = alert(status="resolved", endsAt="2026-12-08T10:00:00Z")
    (capped,) = keep_requests(payload(late), RULES, now_ns=NOW)
    assert capped.until_ns == START_NS + 1800 * NS


def test_retries_repeats_and_the_resolved_notification_are_the_same_keep() -> None:
    (firing,) = keep_requests(payload(), RULES, now_ns=NOW)
    (again,) = keep_requests(payload(), RULES, now_ns=NOW + 3600 * NS)
    resolved = alert(status="resolved", endsAt="2026-12-07T22:05:00Z")
    (res,) = keep_requests(payload(resolved, status="resolved"), RULES, now_ns=NOW)
    assert firing.id == again.id == res.id


def test_a_new_firing_another_alert_or_another_group_is_another_keep() -> None:
    (first,) = keep_requests(payload(), RULES, now_ns=NOW)
    (refired,) = keep_requests(payload(alert(startsAt="2026-12-07T23:00:00Z")), RULES, now_ns=NOW)
    (other,) = keep_requests(payload(alert(fingerprint="0000000000000001")), RULES, now_ns=NOW)
    (group,) = keep_requests(payload(groupKey="{}:{}"), RULES, now_ns=NOW)
    assert len({first.id, refired.id, other.id, group.id}) == 4


def test_one_keep_per_alert_and_one_for_an_alert_listed_twice() -> None:
    two = payload(alert(), alert(fingerprint="aa"), alert())
    assert len(keep_requests(two, RULES, now_ns=NOW)) == 2


def test_the_reason_is_printable_and_bounded() -> None:
    labels = {"alertname": "Bad\x1b[31mName\u00e9", "instance": "x" * 1000}
    (req,) = keep_requests(payload(alert(labels=labels)), RULES, now_ns=NOW)
    assert req.reason.startswith("alert Bad?[31mName? instance=xxx")
    assert len(req.reason) == 256
    (unnamed,) = keep_requests(payload(alert(labels={})), RULES, now_ns=NOW)
    assert unnamed.reason == "alert unnamed"


def test_lookback_before_1970_starts_at_0() -> None:
    (req,) = keep_requests(payload(alert(startsAt="1970-01-01T00:01:00Z")), RULES, now_ns=NOW)
    assert req.since_ns == 0


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[" * 100000, "not JSON"),
        (b"[]", "JSON object"),
        (payload(version="3"), "version: '3'"),
        (payload(version=4), "version: '4'"),
        (payload(groupKey=None), "groupKey"),
        (payload(groupKey="\udc00"), "payload.groupKey: not valid Unicode"),
        (payload(alert(fingerprint="\ud800")), "alerts[0].fingerprint: not valid Unicode"),
        (payload(alerts=[]), "alerts: must be a list"),
        (payload(alerts="x"), "alerts: must be a list"),
        (payload(alerts=[alert()] * 1001), "alerts: must be a list"),
        (payload(alerts=[1]), "alerts[0]: must be an object"),
        (payload(alert(status="pending")), "alerts[0].status"),
        (payload(alert(fingerprint="")), "alerts[0].fingerprint"),
        (payload(alert(labels={"a": 1})), "alerts[0].labels"),
        (payload(alert(labels=[])), "alerts[0].labels"),
        (payload(alert(startsAt="yesterday")), "alerts[0].startsAt: 'yesterday' is not"),
        (payload(alert(startsAt="2026-13-40T00:00:00Z")), "not a valid time"),
        (payload(alert(startsAt="0001-01-01T00:00:00Z")), "startsAt: must be set"),
        (payload(alert(startsAt=None)), "startsAt: not an RFC 3339"),
        (payload(alert(startsAt="1960-01-01T00:00:00Z")), "before 1970"),
        (payload(alert(endsAt="soon")), "alerts[0].endsAt"),
    ],
)
def test_a_malformed_payload_is_one_line_naming_what_is_wrong(body: bytes, says: str) -> None:
    with pytest.raises(PayloadError) as e:
        keep_requests(body, RULES, now_ns=NOW)
    assert says in str(e.value)
    assert "\n" not in str(e.value)


def test_rfc3339_offsets_and_fractions() -> None:
    assert parse_rfc3339_ns("2026-12-07T23:00:00+01:00", "t") == parse_rfc3339_ns(
        "2026-12-07T22:00:00Z", "t"
    )
    assert START_NS % NS == 123456789


def _mutations(doc: Any, rng: random.Random) -> Any:
    """doc with one value somewhere replaced by something of another type or shape."""
    odd = [None, 0, -1, 2**70, 1.5, True, "", "x" * 5000, [], {}, [None], {"a": None},
           "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "\u0000\ud7ff",
           "\udc00"]  # fmt: skip
    if isinstance(doc, dict) and doc:
        key = rng.choice(sorted(doc))
        out = dict(doc)
        out[key] = rng.choice(odd) if rng.random() < 0.5 else _mutations(doc[key], rng)
        return out
    if isinstance(doc, list) and doc:
        i = rng.randrange(len(doc))
        return [*doc[:i], _mutations(doc[i], rng), *doc[i + 1 :]]
    return rng.choice(odd)


def test_no_payload_makes_anything_but_a_payload_error_or_valid_keeps() -> None:
    rng = random.Random(27)
    base = json.loads(payload(alert(), alert(fingerprint="b", status="resolved",
                                             endsAt="2026-12-07T22:05:00Z")))  # fmt: skip
    kept = refused = 0
    for _ in range(3000):
        body = json.dumps(_mutations(base, rng)).encode()
        try:
            reqs = keep_requests(body, RULES, now_ns=NOW)
        except PayloadError as e:
            assert "\n" not in str(e) and len(str(e)) < 300
            refused += 1
        else:
            assert all(r.until_ns > r.since_ns >= 0 for r in reqs)
            kept += 1
    assert kept and refused  # both kinds were met
