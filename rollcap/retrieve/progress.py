"""A one-line progress bar on stderr, drawn only when stderr is a terminal."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Progress:
    def __init__(self, total_objects: int, total_bytes: int, stream: TextIO | None = None,
                 force: bool = False) -> None:  # fmt: skip
        self.stream = stream or sys.stderr
        self.enabled = force or self.stream.isatty()
        self.total_objects = total_objects
        self.total_bytes = total_bytes
        self.objects = 0
        self.bytes = 0
        self._lock = threading.Lock()
        self._last = 0.0

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self.objects += 1
            self.bytes += nbytes
            now = time.monotonic()
            if self.enabled and (now - self._last > 0.2 or self.objects == self.total_objects):
                self._last = now
                self._draw()

    def _draw(self) -> None:
        width = 30
        frac = self.objects / self.total_objects if self.total_objects else 1.0
        bar = "#" * int(frac * width)
        self.stream.write(
            f"\rfetch [{bar:<{width}}] {self.objects}/{self.total_objects} objects "
            f"{self.bytes / 1e6:.1f}/{self.total_bytes / 1e6:.1f} MB"
        )
        self.stream.flush()

    def message(self, text: str) -> None:
        if self.enabled:
            self.stream.write(f"\r\x1b[K{text}")
            self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
