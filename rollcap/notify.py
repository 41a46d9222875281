"""sd_notify, a no-op outside systemd.

WATCHDOG=1 must only be sent from a loop that is making progress, never from
a timer thread: systemd should kill a daemon whose work loop is stuck.
"""

from __future__ import annotations

import os


class Notifier:
    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._last_status = ""

    def _send(self, msg: str) -> None:
        if self.enabled:
            from systemd import daemon

            # systemd-python does not retry sendmsg() on EINTR: a signal arriving
            # during the call (SIGHUP = reload) raised InterruptedError and killed
            # the daemon. A lost notification must never stop the service.
            for _ in range(3):
                try:
                    daemon.notify(msg)
                    return
                except InterruptedError:
                    continue
                except OSError:
                    return

    def ready(self, status: str = "") -> None:
        self._send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, text: str) -> None:
        if text != self._last_status:
            self._last_status = text
            self._send(f"STATUS={text}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def reloading(self) -> None:
        # systemd >= 253 also wants MONOTONIC_USEC; 252 (bookworm) accepts it without
        self._send("RELOADING=1")

    def stopping(self) -> None:
        self._send("STOPPING=1")
