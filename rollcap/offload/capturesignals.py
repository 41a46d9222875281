"""What offload learns of capture for its back-off (rollcap.offload.yielding).

Capture's kernel drops come from the textfile capture already writes for
node_exporter (metrics.textfile_directory/capture/rollcap-capture.prom,
0644), not from a new channel: offload cannot see capture's own state
directory (its unit makes it inaccessible), and should not. The file belongs
to capture's user, whose tcpdump parses hostile traffic, so it is read as
root's publisher reads it (rollcap.metrics.publish.read_textfile: through the
directory's fd, O_NOFOLLOW|O_NONBLOCK, a regular file of the directory's
owner, at most 1 MiB) and parsed as untrusted text. The worst a forged file
can do is pause compression, and a pause is capped (yielding.MAX_PAUSE).

A file older than STALE_AFTER textfile intervals plus SLACK seconds (capture
stopped, or textfiles off) is no signal: no pause on old news. The slack: a
busy capture loop may publish a second or two late.
"""

from __future__ import annotations

import math
import time

from prometheus_client.parser import text_string_to_metric_families

from rollcap.config.schema import RollcapConfig
from rollcap.metrics.nodeexporter import textfile_path
from rollcap.metrics.publish import read_textfile
from rollcap.spool.fs import BadEntry

DROPS = "rollcap_capture_kernel_drops_total"
UPDATED = "rollcap_state_updated_timestamp_seconds"
STALE_AFTER = 3
SLACK = 10.0


def parse_drops(text: str, now: float, max_age: float) -> int | None:
    """capture's kernel drops over all interfaces, None when the text does not
    say, or its update time is older than max_age seconds (or in the future)."""
    drops = 0
    seen = False
    updated: float | None = None
    try:
        for fam in text_string_to_metric_families(text):
            for smp in fam.samples:
                if smp.name == DROPS and math.isfinite(smp.value) and smp.value >= 0:
                    drops += int(smp.value)
                    seen = True
                elif smp.name == UPDATED and smp.labels.get("daemon") == "capture":
                    updated = smp.value
    except (ValueError, TypeError, IndexError):
        return None  # not Prometheus text: no signal
    if not seen or updated is None or not math.isfinite(updated):
        return None
    if not -5.0 <= now - updated <= max_age:
        return None
    return drops


def capture_drops(cfg: RollcapConfig) -> int | None:
    """capture's kernel drops now, None when there is no fresh word of them."""
    path = textfile_path(cfg.metrics, "capture")
    if path is None:
        return None
    try:
        raw = read_textfile(path)
    except (OSError, BadEntry):
        return None  # capture not running, textfiles elsewhere, or a planted entry
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return parse_drops(text, time.time(), STALE_AFTER * cfg.metrics.interval_seconds + SLACK)
