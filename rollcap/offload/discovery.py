"""Finding files in ready/: an inotify watch (watchdog) plus full rescans.

The observer only posts names and wakes the main loop; it never touches the
files. Events can be lost (inotify queue overflow is dropped silently,
watchdog #654) and files present at start produce none (#612), so the service
rescans after starting the observer and every offload.rescan_seconds.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from rollcap.spool.readyname import ReadyName


class _ReadyWatch(FileSystemEventHandler):
    def __init__(self, watcher: ReadyWatcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        # created / moved-in (atomic rename from work/) / closed: all just hints
        if event.event_type not in ("created", "moved", "closed"):
            return
        path = event.dest_path if event.event_type == "moved" else event.src_path
        self.watcher.hint(os.fsdecode(path))


class ReadyWatcher:
    def __init__(self, ready: Path, wake: threading.Event) -> None:
        self.ready = ready
        self.wake = wake
        self._lock = threading.Lock()
        self._hints: set[str] = set()
        self._observer = Observer()

    def start(self) -> None:
        self._observer.schedule(_ReadyWatch(self), str(self.ready), recursive=False)
        self._observer.daemon = True
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(5)

    def hint(self, path: str) -> None:
        p = Path(path)
        if p.parent != self.ready:
            return
        with self._lock:
            self._hints.add(p.name)
        self.wake.set()

    def take_hints(self) -> set[str]:
        with self._lock:
            hints, self._hints = self._hints, set()
        return hints


def scan(ready: Path) -> dict[str, int]:
    """Every entry of ready/ with its size (lstat: symlinks are not followed)."""
    found: dict[str, int] = {}
    with os.scandir(ready) as it:
        for e in it:
            try:
                found[e.name] = e.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
    return found


def oldest_first(name: str) -> tuple[int, int, str]:
    """Sort key for "oldest first": capture's hand-off sequence number, then
    the name. Not the name alone: names start with the UTC start time, which
    steps back with the wall clock, while seq only ever grows. Names that do
    not parse go first (they are refused at once and cost nothing)."""
    n = ReadyName.parse(name)
    return (1, n.seq, name) if n is not None else (0, 0, name)
