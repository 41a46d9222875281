"""The offload's poller for fleet keep requests (keep/fleet.py has the format).

Every ``offload.keep_poll_seconds`` it makes one LIST of ``{prefix}/_requests/``
(one page per 1,000 live requests), and for each key it has not settled yet:
one GET (at most MAX_OBJECT_BYTES read), the checks of fleet.parse_request,
then Submit and one PUT of its acknowledgement. What it settled (answered,
not for this host, refused) is remembered in the spool's state, by id, until
the key leaves the listing (the lifecycle rule deleted it): a restart answers
nothing twice, and the file holds at most what the listing holds.

A request that is malformed or hostile gets one log line and is settled as
refused: it never stops the poller or the offload. At most MAX_ANSWERS_PER_HOUR
requests are filed per hour; more wait, unread, for the next hour (while they
live), so a flood of requests cannot make a host pin more than that; Submit's
pinned cap bounds the bytes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from rollcap.journal import fields
from rollcap.keep import fleet
from rollcap.keep.request import KeepRefused, Submit
from rollcap.spool.state import read_state, write_state
from rollcap.storage.base import Storage, StorageError

log = logging.getLogger("rollcap.offload")

MAX_ANSWERS_PER_HOUR = 12
#: settled ids remembered at most (a listing beyond this is a flood: the oldest go)
MAX_REMEMBERED = 10_000
STATE_FILE = "keep-fleet.json"


class FleetPoller:
    """Answers this host's fleet keep requests; run() in its own thread."""

    def __init__(self, storage: Storage, prefix: str, host: str, submit: Submit,
                 state_dir: Path, interval: float, stop: threading.Event,
                 clock: Callable[[], int] = time.time_ns) -> None:  # fmt: skip
        self.storage = storage
        self.prefix = prefix
        self.host = host
        self.submit = submit
        self.path = state_dir / STATE_FILE
        self.interval = interval
        self.stop = stop
        self.clock = clock
        self.settled: dict[str, str] = {}  # id -> answered | other-hosts | expired | refused
        self.answers: deque[float] = deque()  # monotonic times of filed keeps
        self.deferred: set[str] = set()  # over the hourly limit, said once
        self.retrying: dict[str, str] = {}  # id -> the error said for it (once per error)
        self.polls = 0
        self.answered = 0
        self.last_error = ""
        self._load()

    def _load(self) -> None:
        data = read_state(self.path) or {}
        settled = data.get("settled", {})
        if isinstance(settled, dict):
            self.settled = {k: v for k, v in settled.items()
                            if isinstance(k, str) and isinstance(v, str)}  # fmt: skip

    def _save(self) -> None:
        try:
            write_state(self.path, {"version": 1, "settled": self.settled})
        except OSError as e:  # answered ones are answered again, idempotently
            log.warning("cannot write %s: %s", self.path, e.strerror)

    def snapshot(self) -> dict[str, object]:
        """For the offload's state file: polls made, requests answered since start."""
        return {"polls": self.polls, "answered": self.answered, "last_error": self.last_error}

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.poll()
            except (StorageError, OSError, ValueError):  # what a poll meets; a bug surfaces
                if self.stop.is_set():  # the storage closed under a poll at the stop
                    return
                log.exception("fleet keep poll failed")
            self.stop.wait(self.interval)

    def poll(self) -> None:
        """One round: list, settle every new request, forget the deleted ones."""
        self.polls += 1
        try:
            listed = {o.key: o.size for o in self.storage.list(fleet.requests_prefix(self.prefix))}
        except StorageError as e:
            if str(e) != self.last_error:
                log.warning("cannot list fleet keep requests: %s", e)
            self.last_error = str(e)
            return
        self.last_error = ""
        ids: dict[str, tuple[str, int]] = {}
        changed = False
        for key, size in sorted(listed.items()):
            try:
                rid = fleet.request_id_of(key, self.prefix)
            except fleet.BadObject as e:
                if key not in self.settled:
                    self._settle(key, "refused", str(e))
                    changed = True
                ids[key] = (key, size)
                continue
            ids[rid] = (key, size)
        for rid, (key, size) in ids.items():
            if rid in self.settled:
                continue
            changed |= self._answer(rid, key, size)
        # forget what the listing no longer holds: the state stays as small as it
        gone = [k for k in self.settled if k not in ids]
        for k in gone:
            del self.settled[k]
        for k in [k for k in self.retrying if k not in ids]:
            del self.retrying[k]
        while len(self.settled) > MAX_REMEMBERED:
            del self.settled[next(iter(self.settled))]
        if changed or gone:
            self._save()

    def _settle(self, rid: str, how: str, why: str = "") -> None:
        self.settled[rid] = how
        self.deferred.discard(rid)
        self.retrying.pop(rid, None)
        if how == "refused":
            log.warning("fleet keep request ignored: %s", why, extra=fields(request=rid))

    def _retry(self, rid: str, msg: str) -> None:
        """A failure the next poll retries: said once per request and error."""
        if self.retrying.get(rid) != msg:
            self.retrying[rid] = msg
            log.warning("%s (retried at the next poll)", msg, extra=fields(request=rid))

    def _room(self) -> bool:
        now = time.monotonic()
        while self.answers and self.answers[0] <= now - 3600:
            self.answers.popleft()
        return len(self.answers) < MAX_ANSWERS_PER_HOUR

    def _answer(self, rid: str, key: str, size: int) -> bool:
        """Settle one listed request; True when settled (False: try next poll)."""
        if not self._room():
            if rid not in self.deferred:
                self.deferred.add(rid)
                log.warning("fleet keep %s waits: %d requests answered in the last hour "
                            "(at most %d)", rid, len(self.answers), MAX_ANSWERS_PER_HOUR,
                            extra=fields(request=rid))  # fmt: skip
            return False
        try:
            req = fleet.parse_request(key, fleet.read_object(self.storage, key, size), self.prefix)
        except fleet.BadObject as e:
            self._settle(rid, "refused", str(e))
            return True
        except (StorageError, OSError) as e:
            self._retry(rid, f"cannot read fleet keep request {key}: {e}")
            return False
        if not req.names(self.host):
            self._settle(rid, "other-hosts")
            return True
        now = self.clock()
        if now >= req.expires_ns:  # normal for a new host: not worth a warning
            log.debug("fleet keep %s expired before this host saw it", rid)
            self._settle(rid, "expired")
            return True
        try:
            why = fleet.check_age(req, now)
        except ValueError as e:  # a time no calendar shows
            why = f"a time out of range ({e})"
        if why:
            self._settle(rid, "refused", f"{key}: {why}")
            return True
        self.answers.append(time.monotonic())
        try:
            out = self.submit(req.keep_request())
            ack = fleet.make_ack(req, self.host, out)
        except KeepRefused as e:
            ack = fleet.make_ack(req, self.host, None, refused=str(e))
        except (ValueError, OverflowError) as e:  # a window no manifest slot can name
            ack = fleet.make_ack(req, self.host, None, refused=f"keep refused: {e}")
        except (StorageError, OSError) as e:
            self.answers.pop()
            self._retry(rid, f"fleet keep {rid}: cannot file it: {e}")
            return False
        try:
            fleet.write_ack(self.storage, self.prefix, ack)
        except StorageError as e:  # the keep is filed; the next poll writes the answer
            self.answers.pop()
            self._retry(rid, f"fleet keep {rid}: cannot write the acknowledgement: {e}")
            return False
        self._settle(rid, "answered")
        self.answered += 1
        log.info(
            "fleet keep %s (%s): %s, %d files, %d bytes%s", rid, req.reason, ack.state,
            ack.files, ack.bytes, f"; {ack.message}" if ack.message else "",
            extra=fields(request=rid, reason=req.reason, files=ack.files, bytes=ack.bytes),
        )  # fmt: skip
        return True
