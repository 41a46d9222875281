"""Where `rollcap fetch -o` may write: a new regular file, or stdout.

A pipe is the natural consumer (``rollcap fetch ... -o - | tcpdump -r -``), so
``-`` and the names of stdout (/dev/stdout, /proc/self/fd/1, /dev/fd/1, or a
link that leads to the very file stdout is) mean stdout; the pcap is then
streamed there and nothing else is written to it. Any other path must be a
new file, or with --force an existing regular file: fetch never writes through
a symbolic link, into a device, a directory or a FIFO (exit 2, like a bad
command line). The file itself appears by one rename when complete
(rollcap.retrieve.fetch).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from rollcap.errors import RollcapError, UsageError

STDOUT_NAMES = frozenset({"-", "/dev/stdout", "/proc/self/fd/1", "/dev/fd/1"})
_KINDS = {
    stat.S_IFLNK: "a symbolic link (fetch never writes through one; give the real path)",
    stat.S_IFDIR: "a directory",
    stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device",
    stat.S_IFIFO: "a FIFO (use -o - and redirect stdout into it)",
    stat.S_IFSOCK: "a socket",
}


@dataclass(frozen=True)
class Output:
    """path None: stdout."""

    path: Path | None
    force: bool = False

    @property
    def is_stdout(self) -> bool:
        return self.path is None

    def describe(self) -> str:
        return "stdout" if self.path is None else str(self.path)


def _is_stdout(arg: str) -> bool:
    if arg in STDOUT_NAMES:
        return True
    try:
        if not stat.S_ISLNK(os.lstat(arg).st_mode):
            return False
        return os.path.samestat(os.stat(arg), os.fstat(1))
    except OSError:
        return False


def resolve_output(arg: str, force: bool = False) -> Output:
    """The checked output for ``-o arg``; UsageError (exit 2) when refused."""
    if _is_stdout(arg):
        try:
            tty = os.isatty(1)
        except OSError:
            tty = False
        if tty:
            raise UsageError(
                f"-o {arg}: stdout is a terminal; pipe it (| tcpdump -r -) or redirect it "
                "(> file.pcap)"
            )
        try:
            os.fstat(1)
        except OSError:
            raise UsageError(f"-o {arg}: stdout is closed") from None
        return Output(None, force)
    path = Path(arg).absolute()
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise RollcapError(f"-o {arg}: directory {path.parent} does not exist") from None
        return Output(path, force)
    except OSError as e:
        raise RollcapError(f"-o {arg}: {e.strerror}") from None
    kind = stat.S_IFMT(st.st_mode)
    if kind in _KINDS:
        raise UsageError(f"-o {arg}: is {_KINDS[kind]}; fetch writes a new regular file")
    if not force:
        raise UsageError(f"-o {arg}: exists; pass --force to replace it")
    return Output(path, force)


def place(tmp: Path, out: Output) -> None:
    """Move the finished temp file into place: atomically, and without --force
    never over a file that appeared meanwhile (link(2) refuses to replace)."""
    assert out.path is not None
    if out.force:
        os.replace(tmp, out.path)  # replaces a symlink itself, never its target
        return
    try:
        os.link(tmp, out.path)
    except FileExistsError:
        raise UsageError(f"-o {out.path}: appeared meanwhile; pass --force to replace it") from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP):
            raise
        # a filesystem without hard links (vfat): rename, checked just before
        if os.path.lexists(out.path):
            raise UsageError(f"-o {out.path}: appeared meanwhile; pass --force") from None
        os.rename(tmp, out.path)
        return
    os.unlink(tmp)
