"""tcpdump command lines built from the config, and the filter check.

Everything is an argv list: no shell ever sees the filter, which is data.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rollcap.config.schema import CaptureConfig, OffloadConfig
from rollcap.errors import ConfigError
from rollcap.spool.workname import work_name, work_template

# Run tcpdump with this environment: TZ=UTC0 makes -G's strftime names UTC.
TCPDUMP_ENV = {"TZ": "UTC0", "LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


def offload_endpoints(offload: OffloadConfig) -> list[Endpoint]:
    """Host names and ports the offload service connects to (S3 only)."""
    if not offload.is_s3:
        return []
    if offload.endpoint_url:
        u = urlsplit(offload.endpoint_url)
        port = u.port or (443 if u.scheme == "https" else 80)
        return [Endpoint(u.hostname or "", port)]
    region = offload.region or "us-east-1"
    regional = f"s3.{region}.amazonaws.com"
    # Virtual-hosted style first (boto3's default), path style as a fallback.
    return [Endpoint(f"{offload.bucket}.{regional}", 443), Endpoint(regional, 443)]


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
DNS_TIMEOUT = 5.0  # a resolver that does not answer must not hold the start up


def resolve(host: str, timeout: float = DNS_TIMEOUT) -> list[IPAddress]:
    """Addresses of host (a literal is returned as is); [] if unresolvable in time.

    Parsed into ipaddress objects: only those go into a filter. Scoped IPv6
    addresses (fe80::1%eth0) are left out: a filter cannot say "host ...%eth0"."""
    try:
        return _usable([ipaddress.ip_address(host)])
    except ValueError:
        pass
    box: list[list[Any]] = []

    def lookup() -> None:
        with contextlib.suppress(OSError, UnicodeError):
            box.append(socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP))

    t = threading.Thread(target=lookup, name="resolve", daemon=True)
    t.start()
    t.join(timeout)
    if not box:
        return []
    found: list[IPAddress] = []
    for info in box[0]:
        sockaddr = info[4]
        if not isinstance(sockaddr, tuple) or not sockaddr:
            continue
        with contextlib.suppress(ValueError):
            found.append(ipaddress.ip_address(str(sockaddr[0])))
    return sorted(set(_usable(found)), key=lambda a: (a.version, int(a)))


def _usable(addrs: list[IPAddress]) -> list[IPAddress]:
    return [a for a in addrs if not (isinstance(a, ipaddress.IPv6Address) and a.scope_id)]


def exclusion_clauses(addresses: list[tuple[IPAddress, int]]) -> list[str]:
    """``not (host IP and tcp port P)`` for each (address, port), deduplicated, in order."""
    seen: list[tuple[IPAddress, int]] = []
    for ip, port in addresses:
        if not 0 < port < 65536:
            raise ValueError(f"port out of range: {port}")
        if (ip, port) not in seen:
            seen.append((ip, port))
    return [f"not (host {ip.compressed} and tcp port {port})" for ip, port in seen]


def combine_filter(user_filter: str, clauses: list[str]) -> str:
    """The user's filter, parenthesised, and-ed with the exclusion clauses."""
    parts = []
    if user_filter.strip():
        parts.append(f"({' '.join(user_filter.split())})")
    parts.extend(clauses)
    return " and ".join(parts)


def tcpdump_argv(
    cap: CaptureConfig,
    effective_filter: str,
    work_dir: Path,
    generation: int,
    switch_user: str | None = None,
    opened: float | None = None,
) -> list[str]:
    """cap: one interface's (CaptureConfig.for_interface). switch_user: tcpdump -Z,
    only when the daemon runs as root. Packaged, tcpdump runs as the daemon's own
    user with the ambient CAP_NET_RAW and switches nothing.

    With rotate_align the supervisor cuts every file (rollcap.capture.rotation):
    no -G, and the file is named for `opened` (a boundary; None: now)."""
    assert isinstance(cap.interface, str), "one interface per tcpdump"
    if cap.rotate_align:
        when = datetime.fromtimestamp(math.floor(time.time() if opened is None else opened), UTC)
        rotation = []
        out = work_name(work_dir, generation, cap.interface, when)
    else:
        rotation = ["-G", str(cap.rotate_seconds)]
        out = work_template(work_dir, generation, cap.interface)
    argv = [
        cap.tcpdump_path,
        "-n",
        "-i",
        cap.interface,
        "-s",
        str(cap.snaplen),
        *rotation,
        "-C",
        str(cap.rotate_megabytes),
        *(["-Z", switch_user] if switch_user else []),
        "-w",
        out,
    ]
    if cap.buffer_kib > 0:
        argv += ["-B", str(cap.buffer_kib)]
    if cap.timestamp_precision == "nano":
        # micro is tcpdump's default: its argv stays as it always was
        argv.append("--time-stamp-precision=nano")
    # "--" ends the options; tcpdump joins the remaining words with spaces.
    return [*argv, "--", *effective_filter.split()]


def interface_exists(iface: str) -> bool:
    return iface == "any" or Path("/sys/class/net", iface).exists()


def compile_argv(cap: CaptureConfig, effective_filter: str, on_device: bool = True) -> list[str]:
    """tcpdump -d for the filter, on the interface or (missing, down) for Ethernet.
    cap: one interface's (CaptureConfig.for_interface)."""
    assert isinstance(cap.interface, str), "one interface per filter check"
    # a missing interface has no link type yet: Ethernet still reports filter errors
    use_dev = on_device and interface_exists(cap.interface)
    dev = ["-i", cap.interface] if use_dev else ["-y", "EN10MB"]
    return [cap.tcpdump_path, "-d", *dev, "-s", str(cap.snaplen), "--", *effective_filter.split()]


class DeviceUnavailable(Exception):
    """The interface cannot be opened now (missing, not up); the filter itself is fine."""


def _compile(argv: list[str], cap: CaptureConfig, timeout: float) -> str | None:
    """None when tcpdump compiles the filter, else its message."""
    try:
        r = subprocess.run(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=TCPDUMP_ENV,
            timeout=timeout,
        )
    except FileNotFoundError:
        raise ConfigError(f"capture.tcpdump_path: {cap.tcpdump_path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"capture.tcpdump_path: {cap.tcpdump_path} is not executable") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(
            f"capture.filter: tcpdump -d did not finish within {timeout:.0f} s compiling "
            f"{cap.filter!r} (a host name in it that does not resolve?)"
        ) from None
    if r.returncode == 0:
        return None
    lines = [ln.strip() for ln in r.stderr.splitlines() if ln.strip()]
    # "tcpdump: data link type ..." is informational, not the error
    return "; ".join(ln for ln in lines if "data link type" not in ln) or f"exit {r.returncode}"


def check_filter(cap: CaptureConfig, effective_filter: str, timeout: float = 30) -> None:
    """Compile the filter; ConfigError (exit 78) with tcpdump's message if it is rejected.

    Filter errors come with several wordings ("can't parse filter expression",
    "unknown host", "illegal port number"...), device errors too ("No such
    device", "That device is not up"): when compiling on the device fails but
    compiling for Ethernet works, the device is the problem (DeviceUnavailable).
    """
    assert isinstance(cap.interface, str)
    msg = _compile(compile_argv(cap, effective_filter), cap, timeout)
    if msg is None:
        return
    if interface_exists(cap.interface):
        eth = _compile(compile_argv(cap, effective_filter, on_device=False), cap, timeout)
        if eth is None:
            raise DeviceUnavailable(msg)
        msg = eth
    shown = cap.filter if cap.filter else effective_filter
    raise ConfigError(f"capture.filter: tcpdump rejects {shown!r}: {msg}")


def check_config_filter(cap: CaptureConfig, timeout: float = 30) -> str | None:
    """For `rollcap check-config`: compile capture.filter as the capture daemon does.

    ConfigError (exit 78, tcpdump's message) when tcpdump rejects the filter.
    Without the interface (or the right to open it) the filter is compiled for
    Ethernet; the returned note says so, or that tcpdump is missing. None: fully
    checked (or no filter). cap: one interface's (CaptureConfig.for_interface).
    """
    assert isinstance(cap.interface, str)
    if not cap.filter.strip():
        return None
    if shutil.which(cap.tcpdump_path) is None:
        return f"capture.filter not compiled: {cap.tcpdump_path} not found"
    user_filter = combine_filter(cap.filter, [])
    if not interface_exists(cap.interface):
        msg = _compile(compile_argv(cap, user_filter, on_device=False), cap, timeout)
        if msg is not None:
            raise ConfigError(f"capture.filter: tcpdump rejects {cap.filter!r}: {msg}")
        return "capture.filter compiled for Ethernet (EN10MB): the interface is missing"
    try:
        check_filter(cap, user_filter, timeout)
    except DeviceUnavailable as e:
        return f"capture.filter compiled for Ethernet (EN10MB): cannot open {cap.interface} ({e})"
    return None
