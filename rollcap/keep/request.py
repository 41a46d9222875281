"""The one shape of a keep request, whatever asked for it, and the one call that files it.

A request names a window in epoch nanoseconds (half-open: since <= t < until),
why it was asked (`reason`, shown in the journal, the object's metadata and its
index entry) and who asked (`source`). `id` is the request's identity: the same
id submitted twice is one keep (Alertmanager retries, the fleet poller re-reads).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

VERSION: Literal[1] = 1
# ids and reasons end up in file names, S3 metadata and tags: keep them to what all three allow
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
REASON_MAX = 256
NS = 1_000_000_000
#: every *_ns field fits a signed 64-bit integer (year 2262): beyond it no clock,
#: datetime or file name holds the time
NS_MAX = 2**63 - 1
#: how far ahead of this host's clock a window may start: a pin whose window never
#: comes would hold one of pins.MAX_PINS for as long as that (a skewed clock, a forged time)
FUTURE_SKEW_NS = 300 * NS
Source = Literal["cli", "alertmanager", "http", "fleet"]


# the fields every keep-shaped object shares (KeepRequest, the fleet's request)
KeepId = Annotated[str, Field(pattern=ID_PATTERN)]
Reason = Annotated[str, Field(min_length=1, max_length=REASON_MAX, pattern=r"^[\x20-\x7e]+$")]
Ns = Annotated[int, Field(ge=0, le=NS_MAX)]  # epoch ns, a signed 64-bit count


class KeepRequest(BaseModel):
    """One keep: a window of packets to ship, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    version: Literal[1] = VERSION
    id: KeepId
    reason: Reason
    since_ns: Ns
    until_ns: Ns
    created_ns: Ns
    source: Source
    # what the source calls it: the alert's fingerprint, the fleet request's key...
    origin: str = Field(default="", max_length=REASON_MAX, pattern=r"^[\x20-\x7e]*$")

    @model_validator(mode="after")
    def _window(self) -> KeepRequest:
        if self.until_ns <= self.since_ns:
            raise ValueError("the window's end must be after its start")
        return self


def window_problem(req: KeepRequest, now_ns: int) -> str:
    """Why this host must not file req's window now ("" when it may): the one
    rule every source meets (LocalStore.submit refuses by it; the listener
    answers 400 by it before counting the request against its limits)."""
    if req.since_ns > now_ns + FUTURE_SKEW_NS:
        return (f"the window starts {(req.since_ns - now_ns) // NS} s from now; "
                f"at most {FUTURE_SKEW_NS // NS} s ahead (clock skew)")  # fmt: skip
    return ""


def derived_id(*parts: str) -> str:
    """A stable id from what makes a request the same one (for example an alert's group
    key + fingerprint + startsAt): the same parts give the same id, so a retry is a no-op."""
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    return f"k-{digest[:32]}"


@dataclass(frozen=True)
class KeepOutcome:
    """What a submitted keep holds now: the files pinned (or already stored), their bytes,
    and the parts of the window the ring no longer holds (each half-open, epoch ns)."""

    request_id: str
    files: int
    bytes: int
    unheld: tuple[tuple[int, int], ...] = field(default=())
    # True when this id was already filed: nothing new was pinned
    repeated: bool = False


# The one entry point every source calls. It files the request durably before it
# returns, or raises KeepRefused (over the pinned cap, bad window) with a one-line reason.
Submit = Callable[[KeepRequest], KeepOutcome]


class KeepRefused(Exception):
    """A keep that cannot be filed; str() is the one-line reason for the operator."""
