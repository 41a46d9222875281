"""The most a fetch held in its temp directories, polled while it runs."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType


def tree_bytes(top: Path) -> int:
    """Bytes of the files below top's subdirectories (fetch's .rollcap-fetch-*),
    tolerant of files and directories removed while it looks."""
    total = 0
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                for e in it:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(Path(e.path))
                        elif d != top:
                            total += e.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        continue
        except FileNotFoundError:
            continue
    return total


class PeakWatcher(threading.Thread):
    """``with PeakWatcher(dir) as w: ...``; then w.peak (bytes) and w.samples."""

    def __init__(self, top: Path) -> None:
        super().__init__(daemon=True)
        self.top, self.peak, self.samples = top, 0, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, tree_bytes(self.top))
            self.samples += 1

    def __enter__(self) -> PeakWatcher:
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop_event.set()
        self.join()
