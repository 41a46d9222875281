"""Prometheus Alertmanager's webhook payload (version "4") as keep requests.

One request per alert in the notification. Its window:

- starts ``lookback`` before the alert's ``startsAt``. Prometheus sets
  ``startsAt`` when the alert fires, which is after the rule's ``for:`` and up to
  one evaluation interval after the condition began: the lookback should cover
  both (and whatever lead-up matters), e.g. ``for: 5m`` at a 1 m interval needs 6 m;
- ends at ``startsAt + max_window`` (the cap) while the alert fires. A keep is
  never shortened once filed (its pin is durable and its packets may already be
  on their way), so the resolved notification of an alert already kept is the
  same request again: a no-op. An alert first seen resolved (it fired and
  resolved within ``group_wait``, or the firing notification never arrived) ends
  at its ``endsAt``, capped the same way.

Its id is derived from the group key, the alert's fingerprint and ``startsAt``:
Alertmanager retries a notification that failed or timed out and repeats it
every ``repeat_interval``, and each of those is the same keep. A new firing of
the same alert has a new ``startsAt``, so a new keep.

A payload that is not a version 4 notification raises PayloadError with one
line naming what is wrong; nothing in it is trusted beyond the checks here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rollcap.keep.request import NS_MAX, REASON_MAX, KeepRequest, derived_id
from rollcap.timestamps import from_datetime

# Alertmanager writes RFC 3339 with up to 9 fraction digits (Go's time.Time)
_RFC3339_RE = re.compile(
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", re.IGNORECASE
)
_UNPRINTABLE_RE = re.compile(r"[^\x20-\x7e]")
MAX_ALERTS = 1000  # more than any sane group; the body size limit binds first
MAX_FIELD = 1024  # group key, fingerprint, a label name or value


class PayloadError(ValueError):
    """A notification that cannot be read; str() is one line for the HTTP answer."""


@dataclass(frozen=True)
class AlertWindows:
    """How an alert becomes a window (the [listener] settings), in ns."""

    lookback_ns: int
    max_window_ns: int
    reason_labels: tuple[str, ...] = ()


def printable(text: str, limit: int = REASON_MAX) -> str:
    """``text`` as printable ASCII (others become '?'), at most ``limit`` characters."""
    return _UNPRINTABLE_RE.sub("?", text)[:limit]


def parse_rfc3339_ns(value: object, what: str) -> int | None:
    """Epoch ns of an RFC 3339 time; None for Go's zero time (year 1: not set)."""
    if not isinstance(value, str) or len(value) > 64:
        raise PayloadError(f"{what}: not an RFC 3339 time")
    m = _RFC3339_RE.fullmatch(value)
    if not m:
        raise PayloadError(f"{what}: {printable(value, 64)!r} is not an RFC 3339 time")
    if m[1].startswith("0001-"):
        return None
    zone = "+00:00" if m[3].upper() == "Z" else m[3]
    try:
        dt = datetime.fromisoformat(m[1] + zone)
    except ValueError:
        raise PayloadError(f"{what}: {printable(value, 64)!r} is not a valid time") from None
    ns = from_datetime(dt) + int((m[2] or "").ljust(9, "0"))
    if ns < 0:
        raise PayloadError(f"{what}: {printable(value, 64)!r} is before 1970")
    return ns


def _text(obj: dict[str, Any], key: str, what: str) -> str:
    v = obj.get(key)
    if not isinstance(v, str) or not v or len(v) > MAX_FIELD:
        raise PayloadError(f"{what}.{key}: must be a non-empty string of at most {MAX_FIELD}")
    try:
        v.encode()  # JSON's \udc00 escapes make strings no UTF-8 can hold (nor the id's hash)
    except UnicodeEncodeError:
        raise PayloadError(f"{what}.{key}: not valid Unicode (a lone surrogate)") from None
    return v


def _labels(obj: dict[str, Any], what: str) -> dict[str, str]:
    v = obj.get("labels")
    if not isinstance(v, dict) or not all(
        isinstance(k, str) and isinstance(x, str) and len(k) <= MAX_FIELD and len(x) <= MAX_FIELD
        for k, x in v.items()
    ):
        raise PayloadError(f"{what}.labels: must be an object of strings")
    return v


def reason_of(labels: dict[str, str], wanted: tuple[str, ...]) -> str:
    """'alert HighLatency instance=db1:9100 severity=page': the alert's name and the
    labels the operator chose, printable and within REASON_MAX."""
    parts = [f"alert {labels.get('alertname') or 'unnamed'}"]
    parts += [f"{k}={labels[k]}" for k in wanted if k != "alertname" and labels.get(k)]
    return printable(" ".join(parts)).strip() or "alert"


def keep_requests(body: bytes, rules: AlertWindows, *, now_ns: int) -> list[KeepRequest]:
    """The keeps one webhook notification asks for (PayloadError if it is not one)."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise PayloadError("the body is not JSON") from None
    if not isinstance(doc, dict):
        raise PayloadError("the body must be a JSON object (Alertmanager's webhook payload)")
    if doc.get("version") != "4":
        raise PayloadError(
            f"version: {printable(str(doc.get('version')), 16)!r}, only Alertmanager's "
            'webhook version "4" is understood'
        )
    group = _text(doc, "groupKey", "payload")
    alerts = doc.get("alerts")
    if not isinstance(alerts, list) or not alerts or len(alerts) > MAX_ALERTS:
        raise PayloadError(f"alerts: must be a list of 1 to {MAX_ALERTS} alerts")
    out: dict[str, KeepRequest] = {}
    for i, alert in enumerate(alerts):
        what = f"alerts[{i}]"
        if not isinstance(alert, dict):
            raise PayloadError(f"{what}: must be an object")
        req = _request(alert, what, group, rules, now_ns)
        out.setdefault(req.id, req)  # the same alert twice in one payload: one keep
    return list(out.values())


def _request(
    alert: dict[str, Any], what: str, group: str, rules: AlertWindows, now_ns: int
) -> KeepRequest:
    fingerprint = _text(alert, "fingerprint", what)
    status = alert.get("status")
    if status not in ("firing", "resolved"):
        raise PayloadError(f"{what}.status: must be \"firing\" or \"resolved\"")
    labels = _labels(alert, what)
    started = parse_rfc3339_ns(alert.get("startsAt"), f"{what}.startsAt")
    if started is None:
        raise PayloadError(f"{what}.startsAt: must be set")
    ended = parse_rfc3339_ns(alert.get("endsAt", "0001-01-01T00:00:00Z"), f"{what}.endsAt")
    cap = started + rules.max_window_ns
    until = cap
    if status == "resolved" and ended is not None and ended > started:
        until = min(ended, cap)
    since = max(0, started - rules.lookback_ns)
    if until > NS_MAX:
        raise PayloadError(f"{what}.startsAt: its window ends after 2262 (64-bit nanoseconds)")
    return KeepRequest(
        id=derived_id(group, fingerprint, str(started)),
        reason=reason_of(labels, rules.reason_labels),
        since_ns=since,
        until_ns=until,
        created_ns=now_ns,
        source="alertmanager",
        origin=printable(fingerprint),
    )

