"""One atomic *.prom file in node_exporter's textfile collector directory.

The directory belongs to another user (root or prometheus) and other
programs write into it too, so every operation goes through a directory fd
and O_NOFOLLOW: a planted symlink is never followed. The temp name does not
end in .prom, so the collector never reads a half-written file.
"""

from __future__ import annotations

import contextlib
import os

# node_exporter runs as another user (prometheus): the file must be world-readable
# whatever the daemon's umask (the units use 0007 and 0027). Metrics hold no secrets.
MODE = 0o644


def write_textfile(directory: str, name: str, data: bytes) -> None:
    """Replace directory/name with data atomically; OSError when it cannot."""
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        tmp = f".{name}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dfd)  # left by a killed writer with our pid
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            MODE,
            dir_fd=dfd,
        )
        try:
            try:
                os.fchmod(fd, MODE)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
    finally:
        os.close(dfd)
