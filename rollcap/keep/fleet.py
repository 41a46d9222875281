"""Fleet-wide keeps through the bucket: request objects, acknowledgements, status.

No server beyond the bucket. A requester writes one request object; every
host's offload polls for them (keep/poller.py), files what matches through the
same Submit as a local keep, and writes its own acknowledgement:

    {prefix}/_requests/<id>.json                      the request (requesters only)
    {prefix}/_index/acks/v1/<id>/<host>~ack.json      one host's answer (that host only)

Acknowledgements live below ``_index/`` and their name starts with ``HOST~``,
so the host policy's one index statement, ``_index/*/${aws:username}~*``,
scopes them as it scopes manifest entries (storage/s3/policy.py): a host
writes its own acknowledgement and no other. Both kinds are written once
(If-None-Match): a request cannot be replaced under the hosts' feet, and a
host that answers twice (its state lost) leaves its first answer standing.

A request is untrusted input for every host: its key and body are checked
against one shape (parse_request), with bounds on size, window, lifetime and
host patterns. It names no key, prefix or file: the host decides what its
window covers in its own ring and uploads with its own key template, so no
request can make a host write outside its own prefix.

Expiry (docs/capture.md, "Fleet keeps"): a request names its ``expires_ns``
(at most MAX_TTL after ``created_ns``). A host answers a request once, while
its own clock is before the expiry; it remembers what it answered in its
spool's state, so a restart does not answer again (and if that state is lost,
Submit and the acknowledgement are idempotent by id). A new host answers every
request still alive that names it. A request created more than MAX_SKEW in a
host's future is refused with one log line: one of the two clocks is wrong.
Nobody running rollcap deletes requests or acknowledgements (neither role
may delete): the bucket's lifecycle rules expire them (docs/retention.md).
"""

from __future__ import annotations

import fnmatch
import json
import re
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rollcap.keep.request import (
    ID_PATTERN,
    REASON_MAX,
    VERSION,
    KeepId,
    KeepOutcome,
    KeepRequest,
    Ns,
    Reason,
)
from rollcap.storage import manifest
from rollcap.storage.base import Storage
from rollcap.storage.manifest import INDEX_DIR

NS = 1_000_000_000
REQUESTS_DIR = "_requests"
ACKS_DIR = f"{INDEX_DIR}/acks/v1"
ACK_SUFFIX = "~ack.json"
#: a request or acknowledgement is a few hundred bytes; anything larger is not ours
MAX_OBJECT_BYTES = 4096
MAX_HOST_PATTERNS = 32
#: the longest window one request may ask for (the pinned cap bounds the bytes)
MAX_WINDOW_NS = 24 * 3600 * NS
#: a request lives at most this long; the lifecycle rule (30 days) is longer
MAX_TTL_NS = 7 * 24 * 3600 * NS
DEFAULT_TTL_NS = 24 * 3600 * NS
#: created further than this in a host's future: a wrong clock, not answered
MAX_SKEW_NS = 10 * 60 * NS
# host names (spool.readyname.sanitize_host) with fnmatch's '*' and '?', no '[' classes
HOST_PATTERN = r"^[A-Za-z0-9.*?-]{1,63}$"
_HOST_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}")
_ID_RE = re.compile(ID_PATTERN)
AckState = Literal["shipped", "nothing-held", "refused"]


class FleetRequest(BaseModel):
    """One fleet keep request, as stored (version 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    version: Literal[1] = VERSION
    id: KeepId
    reason: Reason
    since_ns: Ns
    until_ns: Ns
    # empty: every host
    hosts: tuple[str, ...] = Field(default=(), max_length=MAX_HOST_PATTERNS)
    created_ns: Ns
    expires_ns: Ns

    @model_validator(mode="after")
    def _bounds(self) -> FleetRequest:
        if self.until_ns <= self.since_ns:
            raise ValueError("the window's end must be after its start")
        if self.until_ns - self.since_ns > MAX_WINDOW_NS:
            raise ValueError(f"the window is longer than {MAX_WINDOW_NS // NS // 3600} h")
        if not 0 < self.expires_ns - self.created_ns <= MAX_TTL_NS:
            raise ValueError(f"expires_ns must be after created_ns, by at most "
                             f"{MAX_TTL_NS // NS // 86400} days")  # fmt: skip
        for p in self.hosts:
            if not re.fullmatch(HOST_PATTERN, p):
                raise ValueError(f"host pattern {p!r}: letters, digits, '.', '-', '*', '?'")
        return self

    def names(self, host: str) -> bool:
        """The request asks this host (no patterns: every host)."""
        return not self.hosts or any(fnmatch.fnmatchcase(host, p) for p in self.hosts)

    def keep_request(self) -> KeepRequest:
        """The local keep this host files for it (the fleet id is the keep's id,
        so a second poll of the same request is the same keep)."""
        return KeepRequest(
            id=self.id, reason=self.reason, since_ns=self.since_ns, until_ns=self.until_ns,
            created_ns=self.created_ns, source="fleet", origin=f"{REQUESTS_DIR}/{self.id}.json",
        )  # fmt: skip


class Ack(BaseModel):
    """One host's answer to one request (version 1). ``unheld``: the parts of the
    window (half-open, epoch ns) this host's ring no longer held."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    version: Literal[1] = VERSION
    id: KeepId
    host: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")
    state: AckState
    files: int = Field(ge=0)
    bytes: int = Field(ge=0)
    unheld: tuple[tuple[Ns, Ns], ...] = Field(default=(), max_length=64)
    message: str = Field(default="", max_length=REASON_MAX, pattern=r"^[\x20-\x7e]*$")
    answered_ns: Ns


class BadObject(ValueError):
    """A request or acknowledgement object that is not one; str() is the one-line why."""


# -- keys ------------------------------------------------------------------


def _base(prefix: str) -> str:
    p = prefix.strip("/")
    return f"{p}/" if p else ""


def requests_prefix(prefix: str) -> str:
    return f"{_base(prefix)}{REQUESTS_DIR}/"


def request_key(prefix: str, request_id: str) -> str:
    return f"{requests_prefix(prefix)}{request_id}.json"


def acks_prefix(prefix: str, request_id: str = "") -> str:
    """Where the acknowledgements of one request (or, without an id, of all) live."""
    base = f"{_base(prefix)}{ACKS_DIR}/"
    return f"{base}{request_id}/" if request_id else base


def ack_key(prefix: str, request_id: str, host: str) -> str:
    return f"{acks_prefix(prefix, request_id)}{host}{ACK_SUFFIX}"


def request_id_of(key: str, prefix: str) -> str:
    """The id a request key names; BadObject for any key of another shape
    (below the prefix's _requests/, one level, <id>.json)."""
    base = requests_prefix(prefix)
    if not key.startswith(base) or not key.endswith(".json"):
        raise BadObject(f"{key}: not a request key ({base}ID.json)")
    rid = key[len(base) : -len(".json")]
    if not _ID_RE.fullmatch(rid):
        raise BadObject(f"{key}: not a request key ({base}ID.json, ID {ID_PATTERN})")
    return rid


def ack_of_key(key: str, prefix: str) -> tuple[str, str]:
    """(request id, host) an acknowledgement key names; BadObject otherwise."""
    base = acks_prefix(prefix)
    rest = key[len(base) :] if key.startswith(base) else ""
    rid, _, name = rest.partition("/")
    host = name[: -len(ACK_SUFFIX)] if name.endswith(ACK_SUFFIX) else ""
    if not (_ID_RE.fullmatch(rid) and _HOST_RE.fullmatch(host)):
        raise BadObject(f"{key}: not an acknowledgement key ({base}ID/HOST{ACK_SUFFIX})")
    return rid, host


# -- parsing (every host reads requests as untrusted input) -------------------


def _load(body: bytes, key: str) -> bytes:
    """The body, once it is small and JSON (validated in JSON mode: strict,
    yet a JSON array is a tuple)."""
    if len(body) > MAX_OBJECT_BYTES:
        raise BadObject(f"{key}: {len(body)} bytes, more than {MAX_OBJECT_BYTES}")
    try:
        json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BadObject(f"{key}: not JSON ({e})") from None
    except RecursionError:  # "[" * 3000 fits the size limit
        raise BadObject(f"{key}: not JSON (nested too deep)") from None
    return body


def _why(e: ValidationError) -> str:
    """The first error, a field no request has first (the likeliest sign of a
    request written for something else, or against us)."""
    errors = sorted(e.errors(), key=lambda x: x["type"] != "extra_forbidden")
    err = errors[0]
    loc = ".".join(str(x) for x in err["loc"]) or "object"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{loc}: {err['msg']}{more}"


def parse_request(key: str, body: bytes, prefix: str) -> FleetRequest:
    """The request a listed object holds, or BadObject naming what is wrong."""
    rid = request_id_of(key, prefix)
    data = _load(body, key)
    try:
        req = FleetRequest.model_validate_json(data)
    except ValidationError as e:
        raise BadObject(f"{key}: {_why(e)}") from None
    if req.id != rid:
        raise BadObject(f"{key}: its id {req.id!r} is not the key's {rid!r}")
    return req


def parse_ack(key: str, body: bytes, prefix: str) -> Ack:
    """The acknowledgement at key; BadObject when its key and body disagree on
    the request or the host (a host can write only keys naming itself, so an
    ack that names another host in its body is not believed)."""
    rid, host = ack_of_key(key, prefix)
    data = _load(body, key)
    try:
        ack = Ack.model_validate_json(data)
    except ValidationError as e:
        raise BadObject(f"{key}: {_why(e)}") from None
    if (ack.id, ack.host) != (rid, host):
        raise BadObject(f"{key}: names {ack.id}/{ack.host}, its key {rid}/{host}")
    return ack


def check_age(req: FleetRequest, now_ns: int) -> str:
    """Why this host must not answer the request now ("" if it may)."""
    if now_ns >= req.expires_ns:
        return f"expired {_utc(req.expires_ns)}"
    if req.created_ns > now_ns + MAX_SKEW_NS:
        return (f"created {_utc(req.created_ns)}, more than {MAX_SKEW_NS // NS // 60} min in "
                "this host's future: this clock or the requester's is wrong")  # fmt: skip
    return ""


# -- writing --------------------------------------------------------------


def _json(model: BaseModel) -> bytes:
    return (json.dumps(model.model_dump(mode="json"), sort_keys=True) + "\n").encode()


def new_request(
    reason: str, since_ns: int, until_ns: int, hosts: tuple[str, ...] = (),
    ttl_ns: int = DEFAULT_TTL_NS, now_ns: int | None = None, request_id: str | None = None,
) -> FleetRequest:  # fmt: skip
    """A request with a fresh id (time and randomness: unique without a counter)
    unless one is given. Raises BadObject with the one-line reason for bad input."""
    now = time.time_ns() if now_ns is None else now_ns
    stamp = datetime.fromtimestamp(now / NS, UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        return FleetRequest(
            id=request_id or f"f{stamp}-{secrets.token_hex(4)}", reason=reason, since_ns=since_ns,
            until_ns=until_ns, hosts=hosts, created_ns=now, expires_ns=now + ttl_ns,
        )  # fmt: skip
    except ValidationError as e:
        raise BadObject(f"fleet keep: {_why(e)}") from None


def write_request(storage: Storage, prefix: str, req: FleetRequest) -> str:
    key = request_key(prefix, req.id)
    storage.put_bytes(key, _json(req), content_type="application/json")
    return key


def make_ack(req: FleetRequest, host: str, out: KeepOutcome | None, refused: str = "",
             now_ns: int | None = None) -> Ack:  # fmt: skip
    """The answer for a filed keep (out), or for a refused one (refused: why)."""
    now = time.time_ns() if now_ns is None else now_ns
    if out is None:
        return Ack(id=req.id, host=host, state="refused", files=0, bytes=0,
                   unheld=((req.since_ns, req.until_ns),), message=refused[:REASON_MAX],
                   answered_ns=now)  # fmt: skip
    unheld = tuple(out.unheld)
    if len(unheld) > 64:  # a ring of many holes: say its extent, not each
        unheld = ((unheld[0][0], unheld[-1][1]),)
    return Ack(id=req.id, host=host, state="shipped" if out.files else "nothing-held",
               files=out.files, bytes=out.bytes, unheld=unheld, answered_ns=now)  # fmt: skip


def write_ack(storage: Storage, prefix: str, ack: Ack) -> str:
    key = ack_key(prefix, ack.id, ack.host)
    storage.put_bytes(key, _json(ack), content_type="application/json")
    return key


# -- status ---------------------------------------------------------------


@dataclass
class Status:
    """Who answered a request, and how. ``waiting``: hosts the fleet index knows
    that the request names and that have not answered."""

    request: FleetRequest
    acks: dict[str, Ack] = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)
    refused_objects: list[str] = field(default_factory=list)  # ack keys not believed

    def by_state(self, state: AckState) -> list[Ack]:
        return [a for h, a in sorted(self.acks.items()) if a.state == state]

    def to_json(self) -> dict[str, object]:
        return {
            "request": self.request.model_dump(mode="json"),
            "acks": [a.model_dump(mode="json") for _h, a in sorted(self.acks.items())],
            "not_answered": self.waiting,
            "refused_objects": self.refused_objects,
        }


def read_object(storage: Storage, key: str, size: int) -> bytes:
    """The bytes of a small listed object: refused above MAX_OBJECT_BYTES before
    any GET, and a ranged GET of the listed size (an object that grew since is
    refused, its bytes stay on the server)."""
    if size > MAX_OBJECT_BYTES:
        raise BadObject(f"{key}: {size} bytes, more than {MAX_OBJECT_BYTES}")
    with tempfile.TemporaryDirectory(prefix="rollcap-keep-") as d:
        dest = Path(d) / "object"
        storage.download(key, dest, size=size)
        return dest.read_bytes()


def known_hosts(storage: Storage, prefix: str, req: FleetRequest) -> set[str]:
    """The hosts the fleet index knows around the request: those with entries in
    the window's slots or since the request was made, and those that answered
    any request (an on-demand host stores nothing until asked)."""
    hosts: set[str] = set()
    now = time.time_ns()
    lo = min(req.since_ns, req.created_ns) / NS
    hi = max(req.until_ns, min(now, req.expires_ns)) / NS
    for slot in manifest.slots(lo, hi):
        for info in storage.list(manifest.slot_prefix(prefix, slot)):
            h = manifest.host_of(info.key)
            if h and _HOST_RE.fullmatch(h):
                hosts.add(h)
    for info in storage.list(acks_prefix(prefix)):
        try:
            hosts.add(ack_of_key(info.key, prefix)[1])
        except BadObject:
            continue
    return hosts


def status(storage: Storage, prefix: str, request_id: str) -> Status:
    """What the bucket says about one request. BadObject: no such request."""
    if not _ID_RE.fullmatch(request_id):
        raise BadObject(f"request id {request_id!r}: {ID_PATTERN}")
    key = request_key(prefix, request_id)
    info = storage.head(key)
    if info is None:
        raise BadObject(f"no fleet keep request {request_id} ({key})")
    req = parse_request(key, read_object(storage, key, info.size), prefix)
    st = Status(req)
    for obj in storage.list(acks_prefix(prefix, request_id)):
        try:
            ack = parse_ack(obj.key, read_object(storage, obj.key, obj.size), prefix)
        except BadObject:
            st.refused_objects.append(obj.key)
            continue
        st.acks[ack.host] = ack
    expected = {h for h in known_hosts(storage, prefix, req) if req.names(h)}
    st.waiting = sorted(expected - set(st.acks))
    return st


def _utc(ns: int) -> str:
    return datetime.fromtimestamp(ns / NS, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _span(a: int, b: int) -> str:
    return f"{_utc(a)}..{_utc(b)}"


def status_lines(st: Status) -> list[str]:
    """`rollcap keep --status ID` as text."""
    r = st.request
    lines = [
        f"fleet keep {r.id}: {r.reason}, window {_span(r.since_ns, r.until_ns)}, "
        f"hosts {' '.join(r.hosts) or 'all'}, expires {_utc(r.expires_ns)}",
    ]
    titles: tuple[tuple[AckState, str], ...] = (
        ("shipped", "shipped"), ("nothing-held", "held nothing"), ("refused", "refused"))
    for state, title in titles:
        acks = st.by_state(state)
        lines.append(f"{title}: {len(acks)}")
        for a in acks:
            gone = ", ".join(_span(x, y) for x, y in a.unheld)
            detail = f"{a.files} files, {a.bytes} bytes" if state != "refused" else a.message
            lines.append(f"  {a.host}: {detail}" + (f"; not held: {gone}" if gone else ""))
    lines.append(f"not answered: {len(st.waiting)}" + (f" ({' '.join(st.waiting)})"
                                                         if st.waiting else ""))  # fmt: skip
    for k in st.refused_objects:
        lines.append(f"  not believed: {k}")
    return lines


def uncovered(
    since_ns: int, until_ns: int, spans: list[tuple[int, int]]
) -> tuple[tuple[int, int], ...]:
    """The parts of [since, until) that no span covers (spans half-open, any order)."""
    out: list[tuple[int, int]] = []
    at = since_ns
    for lo, hi in sorted(spans):
        if hi <= at:
            continue
        if lo >= until_ns:
            break
        if lo > at:
            out.append((at, lo))
        at = max(at, hi)
    if at < until_ns:
        out.append((at, until_ns))
    return tuple(out)
