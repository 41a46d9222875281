"""The fleet poller's Submit for a host in continuous mode.

Everything is shipped anyway, so the answer a fleet keep needs is what of the
window this host has in the bucket (its own manifest entries) or on its way
there (ready/), and the parts it holds neither way. The keep itself is filed
as a local `rollcap keep` files it (``pin``: the ring's Submit), so the
offload marks the stored objects with a keep record as it does for any keep.
"""

from __future__ import annotations

from pathlib import Path

from rollcap.keep import pins
from rollcap.keep.fleet import NS, uncovered
from rollcap.keep.request import KeepOutcome, KeepRequest, Submit
from rollcap.spool.fs import Dir
from rollcap.storage import manifest
from rollcap.storage.base import Storage, StorageError


class PinnedUnlisted(StorageError):
    """The keep is filed (``pinned``: its outcome) but the bucket could not be
    listed for what of the window is stored: a caller that answers now answers
    from the pin."""

    def __init__(self, pinned: KeepOutcome, cause: StorageError) -> None:
        super().__init__(str(cause), code=cause.code, permanent=cause.permanent)
        self.pinned = pinned


def stored_submitter(storage: Storage, prefix: str, host: str, ready: Path,
                     pin: Submit | None = None) -> Submit:  # fmt: skip
    def submit(req: KeepRequest) -> KeepOutcome:
        pinned = pin(req) if pin is not None else None  # KeepRefused passes
        try:
            return _listed(req, False if pinned is None else pinned.repeated)
        except StorageError as e:
            if pinned is None:
                raise
            raise PinnedUnlisted(pinned, e) from e

    def _listed(req: KeepRequest, repeated: bool) -> KeepOutcome:
        spans: list[tuple[int, int]] = []
        files = size = 0
        seen: set[str] = set()
        lo, hi = req.since_ns / NS, req.until_ns / NS
        for slot in manifest.slots(lo, max(lo, hi - 1e-6)):
            for info in storage.list(manifest.host_prefix(prefix, slot, host)):
                e = manifest.parse_key(info.key, prefix)
                if e is None or e.host != host or e.ident in seen:
                    continue
                seen.add(e.ident)
                a, b = e.span
                if a * NS < req.until_ns and b * NS > req.since_ns:
                    spans.append((int(a * NS), int(b * NS)))
                    if e.has_object:
                        files += 1
                        size += e.size
        with Dir(ready) as d:  # the span of a ready/ file is the pins' (held_files)
            for f in pins.held_files(d):
                if f.host == host and f.overlaps(req.since_ns, req.until_ns):
                    spans.append((f.start_ns, f.end_ns))
                    files += 1
                    size += f.size
        return KeepOutcome(req.id, files, size, uncovered(req.since_ns, req.until_ns, spans),
                           repeated)  # fmt: skip

    return submit
