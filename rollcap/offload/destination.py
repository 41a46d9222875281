"""The destination's health: up or down, its backoff, and the check that decides.

A destination-level failure (connection, 5xx, credentials, bucket) marks it
down until its own backoff expires: jittered exponential for transient
errors, the cap at once for permanent ones (they need an operator). Then one
check (HEAD the bucket, abort our stale multipart uploads) in the check
thread decides; the main thread never waits on the network. The same check
runs at start. An error is logged once per distinct (code, permanent).
"""

from __future__ import annotations

import logging
import re
import string
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from rollcap.journal import fields
from rollcap.offload.backoff import Backoff
from rollcap.storage import Storage, StorageError

log = logging.getLogger("rollcap.offload")


def host_key_matcher(template: str, prefix: str, hosts: set[str]) -> Callable[[str], bool]:
    """True for keys this template renders for one of hosts (any time, iface, seq)."""
    parts = []
    for literal, name, _spec, _conv in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if name == "prefix":
            parts.append(re.escape(prefix))
        elif name == "host":
            parts.append("(?:" + "|".join(re.escape(h) for h in sorted(hosts)) + ")")
        elif name is not None:
            parts.append(".+?")
    rx = re.compile("".join(parts) + r"\Z")

    def ours(key: str) -> bool:
        return bool(rx.match(key if prefix else "/" + key))

    return ours


@dataclass(frozen=True)
class Checked:
    error: StorageError | None  # None: the destination works


class DestinationHealth:
    def __init__(
        self, storage: Storage, key_template: str, retry_max_seconds: int, wake: threading.Event
    ) -> None:
        self.storage = storage
        self.key_template = key_template
        self.retry_max_seconds = retry_max_seconds
        self.wake = wake  # set when a check finishes
        self.backoff = Backoff(retry_max_seconds)
        self.error: StorageError | None = None  # what made it down; None: up
        self.down_until = 0.0  # monotonic time of the next check while down
        self._prober = ThreadPoolExecutor(1, thread_name_prefix="check")
        self.probe: Future[StorageError | None] | None = None  # a check under way

    @property
    def down(self) -> bool:
        return self.error is not None

    @property
    def probing(self) -> bool:
        """A check is under way and has not finished."""
        return self.probe is not None and not self.probe.done()

    def start_check(self, hosts: set[str]) -> None:
        """Check the destination in the check thread: HEAD the bucket and abort
        stale multipart uploads of these hosts' keys. At start and to probe a
        failed one."""
        self.probe = self._prober.submit(self._check, hosts)
        self.probe.add_done_callback(lambda _f: self.wake.set())

    def _check(self, hosts: set[str]) -> StorageError | None:
        try:
            self.storage.check()
            ours = host_key_matcher(self.key_template, self.storage.key_prefix, hosts)
            for key in self.storage.cleanup_incomplete(ours):
                log.info(
                    "removed an incomplete upload of %s left by an earlier run",
                    key,
                    extra=fields(key=key, destination=self.storage.describe()),
                )
        except StorageError as e:
            return e
        return None

    def check_result(self) -> Checked | None:
        """The result of a finished check, consumed; None while there is none."""
        if self.probe is None or not self.probe.done():
            return None
        probe, self.probe = self.probe, None
        # Anything but a StorageError (the storage cannot even be opened: a broken
        # credentials file) ends the service with its message, as it did when the
        # check ran in the main thread: no retry fixes it, a restart after the fix does.
        return Checked(probe.result())

    def recovered(self) -> bool:
        """A check passed: True if the destination was down until now."""
        if self.error is None:
            return False
        log.info(
            "destination %s works again", self.storage.describe(),
            extra=fields(destination=self.storage.describe()),
        )  # fmt: skip
        self.error = None
        self.backoff.reset()
        return True

    def failed(self, e: StorageError, files_kept: int, from_check: bool = False) -> bool:
        """Mark the destination down behind its backoff; False when the error
        was already known (a file under way when it failed: keep the check's
        clearer message), True when recorded (reschedule behind down_until)."""
        if self.error is not None and not from_check:
            return False
        first = self.error is None or (self.error.code, self.error.permanent) != (
            e.code,
            e.permanent,
        )
        delay = self.backoff.cap if e.permanent else self.backoff.next_delay()
        self.down_until = time.monotonic() + delay
        self.error = e
        if first:
            retry = (
                f"needs an operator; retrying every {self.retry_max_seconds} s"
                if e.permanent
                else f"retrying with backoff up to {self.retry_max_seconds} s"
            )
            log.error(
                "destination %s failed: %s; %d files kept in the spool, %s",
                self.storage.describe(), e, files_kept, retry,
                extra=fields(destination=self.storage.describe(), error_code=e.code),
            )  # fmt: skip
        return True

    def probe_due(self, now: float) -> bool:
        """Down, no check under way, and its backoff has expired."""
        return self.error is not None and self.probe is None and now >= self.down_until

    def shutdown(self) -> None:
        self._prober.shutdown(wait=True, cancel_futures=True)
