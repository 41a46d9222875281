"""`make run`: rollcap's main job on the embedded default, in the foreground.

Writes ./run-demo/rollcap.toml (capture on the loopback interface, 10 s files,
spool ./run-demo/spool, local archive ./run-demo/archive), starts
`rollcap capture` and `rollcap offload` as children, sends a few UDP datagrams
per second to 127.0.0.1 so files have packets in them (nothing leaves the
machine), and prints files as they reach the spool and the archive.

Ctrl-C stops capture first (it hands off its last file), waits for offload to
archive everything in ready/, then stops offload.

    python3 -m rollcap.demo [--dir run-demo] [--interface lo] [--rotate-seconds 10]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import grp
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

from rollcap.commands._format import human_bytes

PR_SET_PDEATHSIG = 1
STOP_TIMEOUT = 60.0  # each daemon gets this long to stop cleanly
DRAIN_TIMEOUT = 60.0  # offload gets this long to archive what capture handed off


def _die_with_parent() -> None:
    """Children get SIGTERM if the demo itself is killed (no orphaned tcpdump)."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def reachable_by(user: str, path: Path) -> bool:
    """Can `user` (tcpdump drops to it) traverse every directory down to path?"""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return False
    for d in [path, *path.parents]:
        try:
            st = d.stat()
        except FileNotFoundError:
            continue  # will be created by root with mode 0751 or 2770
        if st.st_uid == pw.pw_uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid == pw.pw_gid:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return False
    return True


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def write_config(
    base: Path,
    interface: str,
    rotate_seconds: int,
    user: str,
    bpf: str = "",
    group: str = "root",
) -> Path:
    cfg = base / "rollcap.toml"
    cfg.write_text(
        "# Written by `make run` (python3 -m rollcap.demo); see config/rollcap.toml for all keys.\n"
        "[capture]\n"
        f'interface = "{interface}"\n'
        f'filter = "{bpf}"\n'
        f"rotate_seconds = {rotate_seconds}\n"
        "rotate_megabytes = 20\n"
        f'user = "{user}"\n'
        "[spool]\n"
        f'directory = "{base / "spool"}"\n'
        f'group = "{group}"\n'
        "max_megabytes = 500\n"
        "min_free_percent = 2\n"
        "[offload]\n"
        f'destination = "file://{base / "archive"}"\n'
        "archive_max_megabytes = 500\n"
        "rescan_seconds = 5\n"
        "[log]\n"
        'level = "info"\n'
        "[metrics]\n"
        'textfile_directory = ""\n'  # a demo stays out of the machine's node_exporter
    )
    return cfg


class LoopbackTraffic:
    """A few UDP datagrams per second to 127.0.0.1: visible on lo, never leaves the host."""

    def __init__(self, per_second: float = 5.0) -> None:
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.bind(("127.0.0.1", 0))
        self.port = self.rx.getsockname()[1]
        self.interval = 1.0 / per_second
        self.stop = threading.Event()
        self.received = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.setblocking(False)
        n = 0
        while not self.stop.wait(self.interval):
            n += 1
            tx.sendto(f"rollcap demo datagram {n}\n".encode(), ("127.0.0.1", self.port))
            with contextlib.suppress(BlockingIOError):
                while self.rx.recv(2048):
                    self.received += 1
        tx.close()
        self.rx.close()


def _files(root: Path) -> dict[Path, int]:
    out = {}
    if root.is_dir():
        for p in root.rglob("*"):
            with contextlib.suppress(OSError):
                if p.is_file() and not p.name.startswith(".") and not p.name.endswith(".json"):
                    out[p] = p.stat().st_size
    return out


class Watcher:
    def __init__(self, base: Path) -> None:
        self.areas = {"spool": base / "spool" / "ready", "archive": base / "archive"}
        self.seen: dict[str, set[Path]] = {k: set() for k in self.areas}
        self.base = base

    def report(self) -> None:
        for area, root in self.areas.items():
            for p, size in sorted(_files(root).items()):
                if p not in self.seen[area]:
                    self.seen[area].add(p)
                    rel = p.relative_to(self.base.parent)
                    print(f"  {area:<7} + {rel}  ({human_bytes(size)})", flush=True)


def _rollcap(cmd: str, cfg: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "rollcap", cmd, "--config", str(cfg)],
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C reaches only us; we stop them in order
        preexec_fn=_die_with_parent,
    )


def _stop(name: str, proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        print(f"rollcap demo: stopping {name} (SIGTERM) ...", flush=True)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"rollcap demo: {name} did not stop in {STOP_TIMEOUT:.0f}s; killing it")
            proc.kill()
            proc.wait()
    print(f"rollcap demo: {name} exited with status {proc.returncode}", flush=True)
    return proc.returncode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dir", default="run-demo", help="demo directory (default ./run-demo)")
    ap.add_argument("--interface", default="lo", help="interface to capture on (default lo)")
    ap.add_argument("--rotate-seconds", type=int, default=10)
    ap.add_argument(
        "--all-traffic",
        action="store_true",
        help="capture everything on the interface, not only the demo's own datagrams",
    )
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("rollcap demo: capture opens the interface as root; run: sudo make run")
        return 1
    base = Path(a.dir).resolve()
    base.mkdir(parents=True, exist_ok=True)
    # tcpdump drops to its own user before it opens files; a clone under /root (0700)
    # is out of its reach, and then only root can write the demo's spool.
    user = "tcpdump" if reachable_by("tcpdump", base) else "root"
    traffic = LoopbackTraffic()
    # Only our datagrams by default: a busy loopback (databases, test servers) would
    # fill the demo's files with other programs' traffic.
    bpf = "" if a.all_traffic else f"udp port {traffic.port}"
    # the .deb creates group rollcap; on a fresh clone only root can own the files
    group = "rollcap" if _group_exists("rollcap") else "root"
    cfg = write_config(base, a.interface, a.rotate_seconds, user, bpf, group)
    check = subprocess.run([sys.executable, "-m", "rollcap", "check-config", str(cfg)])
    if check.returncode:
        return check.returncode

    print(f"rollcap demo: config   {cfg}")
    shown = f"filter '{bpf}' (--all-traffic: everything)" if bpf else "no filter"
    print(f"rollcap demo: capture  on {a.interface}, {shown}, a new file every {a.rotate_seconds}s")
    print(f"rollcap demo: spool    {base / 'spool'} (finished files wait in ready/)")
    print(f"rollcap demo: archive  {base / 'archive'} (offload's file:// destination)")
    if user == "root":
        print(f"rollcap demo: note     tcpdump keeps root: user 'tcpdump' cannot reach {base}")
    traffic.thread.start()
    print(f"rollcap demo: traffic  5 UDP datagrams/s to 127.0.0.1:{traffic.port}")
    script = Path(sys.prefix) / "bin" / "rollcap"  # .venv/bin/rollcap under make run
    rollcap_cmd = str(script) if script.exists() else f"{sys.executable} -m rollcap"
    print(f"rollcap demo: status   in another shell: {rollcap_cmd} status --config {cfg}")
    print("rollcap demo: Ctrl-C stops capture, waits for the last file to be archived, stops.\n")

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():  # a second Ctrl-C: stop now, without waiting for offload
            raise KeyboardInterrupt
        print("\nrollcap demo: stopping (Ctrl-C again to kill both at once)", flush=True)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    capture = _rollcap("capture", cfg)
    offload = _rollcap("offload", cfg)
    watcher = Watcher(base)
    rc = 0
    try:
        while not stop.wait(1.0):
            watcher.report()
            for name, proc in (("capture", capture), ("offload", offload)):
                if proc.poll() is not None:
                    print(f"rollcap demo: {name} exited on its own (status {proc.returncode})")
                    stop.set()
                    rc = 1
        rc = _stop("capture", capture) or rc
        traffic.stop.set()
        deadline = time.monotonic() + DRAIN_TIMEOUT
        ready = base / "spool" / "ready"
        while _files(ready) and offload.poll() is None and time.monotonic() < deadline:
            watcher.report()
            time.sleep(0.5)
        watcher.report()
        left = len(_files(ready))
        if left:
            print(f"rollcap demo: {left} file(s) still in {ready}; offload sends them next run")
        rc = _stop("offload", offload) or rc
    except KeyboardInterrupt:
        print("rollcap demo: killing capture and offload", flush=True)
        rc = 130
    finally:
        for proc in (capture, offload):
            if proc.poll() is None:
                proc.kill()
    archived = _files(base / "archive")
    total = sum(archived.values())
    print(f"\nrollcap demo: {len(archived)} file(s), {human_bytes(total)} in {base / 'archive'}")
    print("rollcap demo: read one with: capinfos FILE  or  tshark -r FILE")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
