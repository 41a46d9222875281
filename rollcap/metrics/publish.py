"""Root publishes a copy of each daemon's textfile in node_exporter's directory.

node_exporter opens every *.prom there with os.Open() and reads it whole, with no
type check and no size cap: a link to a path a daemon user controls would let that
user block every scrape (a FIFO: open() waits for a writer) or cost node_exporter
memory (a huge file). So no link: root (`rollcap link-metrics`, at each start, and
rollcap-metrics-publish.service, which rollcap-metrics-publish.path starts at every
write of a daemon) opens the daemon's file through its directory's fd with
O_NOFOLLOW|O_NONBLOCK, takes it only when fstat says it is a regular file with one
link, owned by its directory's owner, of at most MAX_BYTES, and renames a copy of
a copy into place (root-owned, 0644, an O_EXCL temp file first).

The copy holds only that daemon's own series, rebuilt from the parsed text: an
exploited daemon could otherwise write series of other collectors (node_exporter
keeps the first of two equal series, by file name) or of the other daemon, and
silence their alerts. rollcap_capture_*, rollcap_spool_* and rollcap_ring_* are capture's,
rollcap_offload_* and rollcap_listener_* (its keep listener) offload's; the shared
families count only with daemon="<its name>". Anything else is dropped and said once
per publish.

The copy mirrors the daemon's file: it goes when that file is gone or textfiles are
off; a refused file keeps the last good copy (its rollcap_state_updated_timestamp
then goes stale, which is what the alerts watch) and logs a warning.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from pathlib import Path

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

from rollcap.config.schema import NODE_EXPORTER_DIRECTORY, RollcapConfig
from rollcap.errors import RollcapError
from rollcap.metrics.nodeexporter import (
    DAEMONS,
    remove_grants,
    remove_planted,
    textfile_name,
    textfile_path,
)
from rollcap.spool.fs import BadEntry, check_regular

# A textfile is a few KiB (one series per interface and metric); node_exporter
# holds each file whole in memory.
MAX_BYTES = 1 << 20
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# A daemon writes a few hundred samples (per interface and area).
MAX_SAMPLES = 10_000
OWN_PREFIXES = {
    "capture": ("rollcap_capture_", "rollcap_spool_", "rollcap_ring_"),
    "offload": ("rollcap_offload_", "rollcap_listener_"),
}
# written by both daemons, told apart by their daemon label
SHARED = ("rollcap_build_info", "rollcap_start_time_seconds",
          "rollcap_state_updated_timestamp_seconds")  # fmt: skip


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def own_series(daemon: str, data: bytes) -> tuple[bytes, int]:
    """The text of data's series that are daemon's own (see the module's doc), and
    how many samples were dropped. BadEntry when it is not Prometheus text or has
    more than MAX_SAMPLES samples."""
    prefixes = OWN_PREFIXES[daemon]
    kept: list[Metric] = []
    dropped = total = 0
    try:
        for fam in text_string_to_metric_families(data.decode("utf-8")):
            samples = []
            for smp in fam.samples:
                total += 1
                if total > MAX_SAMPLES:
                    raise BadEntry(f"more than {MAX_SAMPLES} samples")
                shared = smp.name.startswith(SHARED)
                if smp.name.startswith(prefixes) or (
                    shared and smp.labels.get("daemon") == daemon
                ):
                    samples.append(smp)
                else:
                    dropped += 1
            if samples:
                fam.samples = samples
                kept.append(fam)
    except (UnicodeDecodeError, ValueError, TypeError, IndexError) as e:
        # the parser's complaints about a malformed line
        raise BadEntry(f"not Prometheus text format ({e})") from None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(kept))
    return generate_latest(registry), dropped


def read_textfile(path: Path) -> bytes:
    """The bytes of a daemon's textfile. FileNotFoundError when it (or its directory)
    does not exist; BadEntry when it is anything but a regular file with one link,
    owned by its directory's owner, of at most MAX_BYTES. Never blocks, follows no
    link in the last two components."""
    dfd = os.open(path.parent, _DIR)
    try:
        owner = os.fstat(dfd).st_uid
        try:
            fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
                         | os.O_CLOEXEC, dir_fd=dfd)  # fmt: skip
        except FileNotFoundError:
            raise
        except OSError as e:  # ELOOP: a symlink; ENXIO: a socket
            raise BadEntry(f"{path} is not a regular file ({e.strerror})") from None
    finally:
        os.close(dfd)
    try:
        st = os.fstat(fd)
        try:
            check_regular(st, {owner})
        except BadEntry as e:
            raise BadEntry(f"{path}: {e}") from None
        if st.st_size > MAX_BYTES:
            raise BadEntry(f"{path} has {st.st_size} bytes, more than {MAX_BYTES}")
        chunks, n = [], 0
        while n <= MAX_BYTES:  # it may grow after fstat
            chunk = os.read(fd, MAX_BYTES + 1 - n)
            if not chunk:
                break
            chunks.append(chunk)
            n += len(chunk)
        if n > MAX_BYTES:
            raise BadEntry(f"{path} has more than {MAX_BYTES} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _replace(dfd: int, name: str, data: bytes) -> None:
    """name in dfd holds data: a root-owned 0644 temp file renamed over it."""
    tmp = f".{name}.{os.getpid()}.tmp"  # not *.prom: node_exporter skips it
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, 0o644, dir_fd=dfd)
    except FileExistsError:  # left by a killed run of the same pid
        os.unlink(tmp, dir_fd=dfd)
        fd = os.open(tmp, flags, 0o644, dir_fd=dfd)
    try:
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(data)
        os.fchmod(fd, 0o644)  # whatever the umask
        os.close(fd)
        fd = -1
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dfd)
        raise


def publish(cfg: RollcapConfig, daemon: str, directory: str = NODE_EXPORTER_DIRECTORY) -> str:
    """(root) Copy the daemon's textfile to directory/rollcap-DAEMON.prom, or remove
    that when there is none. What it did worth a log line ("" for a plain update;
    "warning: ..." for a refused file). OSError when directory cannot be written."""
    try:
        dfd = os.open(directory, _DIR)
    except FileNotFoundError:
        return ""  # no node_exporter (yet): restart rollcap after installing it
    try:
        name = textfile_name(daemon)
        try:
            before: os.stat_result | None = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            before = None
        target = textfile_path(cfg.metrics, daemon)
        try:
            if target is None:
                raise FileNotFoundError
            data = read_textfile(target)
        except FileNotFoundError:
            # never an empty or dangling entry: node_exporter would report a scrape error
            if before is None:
                return ""
            os.unlink(name, dir_fd=dfd)
            why = "is off" if target is None else f"has no {target} (yet)"
            return f"removed {directory}/{name}: metrics.textfile_directory {why}"
        except (BadEntry, OSError) as e:
            kept = "kept the last copy" if before is not None else "nothing published"
            return f"warning: not publishing {daemon}'s metrics ({kept}): {e}"
        try:
            text, dropped = own_series(daemon, data)
        except BadEntry as e:
            kept = "kept the last copy" if before is not None else "nothing published"
            return f"warning: not publishing {daemon}'s metrics ({kept}): {target}: {e}"
        _replace(dfd, name, text)
        if dropped:
            return (f"warning: published {directory}/{name} without {dropped} samples of "
                    f"{target} that are not {daemon}'s own series")  # fmt: skip
        if before is not None and stat.S_ISLNK(before.st_mode):
            return f"replaced the link {directory}/{name} by a copy of {target}"
        return f"published {directory}/{name}" if before is None else ""
    finally:
        os.close(dfd)


def _log(line: str) -> None:
    print(f"rollcap: {line}", file=sys.stderr)


def publish_at_start(cfg: RollcapConfig, daemon: str) -> int:
    """`rollcap link-metrics DAEMON` (root, each unit's ExecStartPre= and
    ExecStartPost=): the ACL grants and then the rollcap users' entries in
    node_exporter's directory go first, and failing that fails the start; then the
    daemon's copy, which is a warning when it fails (metrics missing, capture goes on)."""
    where = NODE_EXPORTER_DIRECTORY
    try:
        removed = remove_grants(cfg)
        planted = remove_planted(cfg)
    except (OSError, ValueError) as e:
        raise RollcapError(f"cannot remove rollcap's ACL entries or files from {where}: {e}"
                           ) from None  # fmt: skip
    for entry in removed:
        _log(f"removed ACL entry {entry} from {where}: no rollcap user may write there "
             "(docs/metrics.md)")  # fmt: skip
    for entry in planted:
        _log(f"removed {entry}: a rollcap user's entry in node_exporter's directory, "
             "where root's collectors write (docs/metrics.md)")  # fmt: skip
    # a copy that cannot be written (a full or read-only disk) is a warning:
    # the daemon's start must not depend on node_exporter's directory
    publish_and_log(cfg, (daemon,))
    return 0


def publish_and_log(cfg: RollcapConfig, daemons: tuple[str, ...] = DAEMONS) -> int:
    """publish() each daemon's copy, one line per thing worth saying; 0, or 1 when
    node_exporter's directory could not be written (`rollcap link-metrics --publish`,
    rollcap-metrics-publish.service)."""
    code = 0
    for daemon in daemons:
        try:
            line = publish(cfg, daemon)
        except OSError as e:
            line = f"warning: cannot publish {NODE_EXPORTER_DIRECTORY}/{textfile_name(daemon)}: {e}"
            code = 1
        if line:
            _log(line)
    return code
