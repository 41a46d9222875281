"""BPF filtering with tcpdump itself, so the filter language is exactly tcpdump's.

tcpdump reads the pcap on stdin (a pipe fed with a piece's window) and writes
to stdout (``-r - -w -``): both are descriptors we opened, so it does not
matter that tcpdump drops root to its own user before opening files, and the
filter is one argv element after
``--`` (no shell, no option injection).
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, cast

from rollcap.errors import RollcapError, UsageError


class FilterError(UsageError):
    """tcpdump rejected the --filter expression (exit 2, like argparse)."""


def tcpdump_binary(configured: str) -> str:
    for cand in (configured, "tcpdump"):
        found = shutil.which(cand)
        if found:
            return found
    raise RollcapError(f"--filter needs tcpdump, not found at {configured} nor on PATH")


def _argv(tcpdump: str, expr: str, nanos: bool = True) -> list[str]:
    # tcpdump writes at the precision it reads with: the source's own, so the
    # filtered records stay in its format and are copied without repacking
    precision = "nano" if nanos else "micro"
    return [tcpdump, "-q", f"--time-stamp-precision={precision}", "-r", "-", "-w", "-", "--", expr]


def _last_line(stderr: bytes) -> str:
    lines = [ln for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    # tcpdump prints "reading from file -, link-type ..." first; the error comes last
    return lines[-1].strip() if lines else "no message"


def check_filter(tcpdump: str, expr: str, linktype: int) -> None:
    """Compile expr for linktype by filtering an empty capture; FilterError if it fails."""
    with tempfile.TemporaryFile() as src:
        src.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, linktype))
        src.seek(0)
        p = subprocess.run(
            _argv(tcpdump, expr), stdin=src, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    if p.returncode != 0:
        raise FilterError(f"--filter {expr!r}: {_last_line(p.stderr)}")


@contextmanager
def filtering(tcpdump: str, expr: str, dest: Path, *, nanos: bool, name: str
              ) -> Iterator[BinaryIO]:  # fmt: skip
    """A pipe into tcpdump: the pcap written to it is filtered into dest (at
    the precision given: the source's), with no copy of it on disk. FilterError
    naming ``name`` when tcpdump fails; on an error in the block it is killed."""
    with open(dest, "wb") as fout, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(_argv(tcpdump, expr, nanos), stdin=subprocess.PIPE, stdout=fout,
                             stderr=err)  # fmt: skip
        assert p.stdin is not None
        with contextlib.suppress(OSError):  # fewer switches to tcpdump; any size works
            fcntl.fcntl(p.stdin.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
        broken = False
        try:
            try:
                yield cast(BinaryIO, p.stdin)
            except BrokenPipeError:
                broken = True  # tcpdump went away: its exit status and message say why
            finally:
                try:
                    p.stdin.close()
                except BrokenPipeError:
                    broken = True
        except BaseException:
            p.kill()
            p.wait()
            raise
        if p.wait() != 0 or broken:
            err.seek(0)
            raise FilterError(f"--filter {expr!r} on {name}: {_last_line(err.read())}")
