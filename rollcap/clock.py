"""Is the system clock synchronised (NTP, chrony, systemd-timesyncd)?

The kernel knows: adjtimex(2) with no modes reads its state, and STA_UNSYNC is
set until a time daemon has disciplined the clock (and again when it stops
doing so). `timedatectl show -p NTPSynchronized` reads the same bit. A read
needs no privilege.
"""

from __future__ import annotations

import ctypes
import ctypes.util

STA_UNSYNC = 0x0040


class _Timex(ctypes.Structure):
    """struct timex (linux/timex.h), as far as status; the rest is room."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 256),  # constant .. tai and the padding, unread
    ]


def synchronised() -> bool | None:
    """True/False from the kernel's STA_UNSYNC; None when it cannot be read."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        tx = _Timex()  # modes 0: read only
        if libc.adjtimex(ctypes.byref(tx)) == -1:
            return None
    except (OSError, AttributeError):
        return None
    return not tx.status & STA_UNSYNC


def warning(synced: bool | None) -> str | None:
    """check-config's line for an unsynchronised clock (None: synchronised or unknown)."""
    if synced is not False:
        return None
    return (
        "clock: the system clock is not synchronised (no NTP, chrony or systemd-timesyncd "
        "in control: timedatectl show -p NTPSynchronized); windows across hosts (--around, "
        "several hosts in one fetch) need every host's clock right: docs/fleet.md"
    )
