"""`make run`: rollcap's main job on the embedded default, in the foreground.

Writes ./run-demo/rollcap.toml (all of the loopback interface, 10 s files,
spool ./run-demo/spool, local archive ./run-demo/archive), starts
`rollcap capture` and `rollcap offload` as children, sends a few UDP datagrams
per second to 127.0.0.1 so files have packets in them (nothing leaves the
machine), prints this run's files as they reach the spool and the archive, and
the `rollcap fetch` command that gets your own traffic (`curl localhost`) back.

Ctrl-C stops capture first (it hands off its last file), waits for offload to
archive everything in ready/, then stops offload.

    make run ARGS="--demo-only --rotate-seconds 30"
    python3 -m rollcap.demo [--dir run-demo] [--interface lo] [--rotate-seconds 10] [--demo-only]
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

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

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
    """Capture files under root (not the index's entries, not temp files)."""
    out = {}
    if root.is_dir():
        for p in root.rglob("*"):
            if p.name.startswith(".") or "_index" in p.relative_to(root).parts:
                continue
            with contextlib.suppress(OSError):
                if p.is_file() and ".pcap" in p.name and not p.name.endswith(".json"):
                    out[p] = p.stat().st_size
    return out


class _ReadyEvents(FileSystemEventHandler):
    """Files capture moves into ready/: offload takes one within milliseconds,
    so a poll would miss most of them."""

    def __init__(self, ready: Path) -> None:
        self.ready = ready
        self.lock = threading.Lock()
        self.arrived: list[tuple[Path, int | None]] = []

    def _arrive(self, path: str) -> None:
        p = Path(path)
        if p.parent != self.ready or p.name.startswith(".") or ".pcap" not in p.name:
            return
        try:
            size: int | None = p.stat().st_size
        except OSError:  # already uploaded and deleted
            size = None
        with self.lock:
            self.arrived.append((p, size))

    def on_moved(self, event: FileSystemEvent) -> None:
        self._arrive(os.fsdecode(event.dest_path))

    def on_created(self, event: FileSystemEvent) -> None:
        self._arrive(os.fsdecode(event.src_path))

    def take(self) -> list[tuple[Path, int | None]]:
        with self.lock:
            out, self.arrived = self.arrived, []
        return out


class Watcher:
    """Prints `spool   + FILE` and `archive + FILE` for this run's files only: what
    the archive held before the run (earlier runs) is not news."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.ready = base / "spool" / "ready"
        self.archive = base / "archive"
        self.before = frozenset(_files(self.archive))  # earlier runs'
        self.seen: set[Path] = set(self.before)
        self.events = _ReadyEvents(self.ready)
        self.observer: BaseObserver | None = None

    def start(self) -> None:
        """Call once capture has made ready/ (wait_ready)."""
        self.observer = Observer()
        self.observer.schedule(self.events, str(self.ready), recursive=False)
        self.observer.start()

    def stop(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(10)

    def _show(self, area: str, p: Path, size: int | None) -> None:
        rel = p.relative_to(self.base.parent)
        shown = f"  ({human_bytes(size)})" if size is not None else ""
        print(f"  {area:<7} + {rel}{shown}", flush=True)

    def report(self) -> None:
        for p, size in self.events.take():
            self._show("spool", p, size)
        for p, size in sorted(_files(self.archive).items()):
            if p not in self.seen:
                self.seen.add(p)
                self._show("archive", p, size)


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


def _rollcap_command() -> str:
    script = Path(sys.prefix) / "bin" / "rollcap"  # .venv/bin/rollcap under make run
    if not script.exists():
        return f"{sys.executable} -m rollcap"
    with contextlib.suppress(ValueError):  # ./.venv/bin/rollcap reads better from the clone
        return str(script.relative_to(Path.cwd()))
    return str(script)


def fetch_command(rollcap_cmd: str, cfg: Path, interface: str, since: str) -> str:
    """The command that fetches the newcomer's own `curl localhost` (port 80)."""
    return (
        f"{rollcap_cmd} fetch --config {cfg} --since {since} -i {interface} "
        "-w mine.pcap --force tcp port 80"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dir", default="run-demo", help="demo directory (default ./run-demo)")
    ap.add_argument("--interface", default="lo", help="interface to capture on (default lo)")
    ap.add_argument("--rotate-seconds", type=int, default=10)
    ap.add_argument(
        "--demo-only",
        action="store_true",
        help="capture only the demo's own datagrams (default: all of the interface,\n"
        "so your own `curl localhost` is in the files too)",
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
    # Everything by default: a newcomer's own traffic is what they look for first.
    # --demo-only: a busy loopback (databases, test servers) stays out of the files.
    bpf = f"udp port {traffic.port}" if a.demo_only else ""
    # the .deb creates group rollcap; on a fresh clone only root can own the files
    group = "rollcap" if _group_exists("rollcap") else "root"
    cfg = write_config(base, a.interface, a.rotate_seconds, user, bpf, group)
    check = subprocess.run([sys.executable, "-m", "rollcap", "check-config", str(cfg)])
    if check.returncode:
        return check.returncode

    print(f"rollcap demo: config   {cfg}")
    shown = f"filter '{bpf}'" if bpf else "all traffic (--demo-only: the demo's own only)"
    print(f"rollcap demo: capture  on {a.interface}, {shown}, a new file every {a.rotate_seconds}s")
    print(f"rollcap demo: spool    {base / 'spool'} (finished files wait in ready/)")
    print(f"rollcap demo: archive  {base / 'archive'} (offload's file:// destination)")
    if user == "root":
        print(f"rollcap demo: note     tcpdump keeps root: user 'tcpdump' cannot reach {base}")
    traffic.thread.start()
    print(f"rollcap demo: traffic  5 UDP datagrams/s to 127.0.0.1:{traffic.port}")
    rollcap_cmd = _rollcap_command()
    print(f"rollcap demo: status   in another shell: {rollcap_cmd} status --config {cfg}")
    if not bpf:
        print("rollcap demo: try it   in another shell: curl -s http://localhost/ ; then, once its")
        print("                       file is archived (within about 15 s):")
        print(f"                       {fetch_command(rollcap_cmd, cfg, a.interface, '5m')}")
    print("rollcap demo: Ctrl-C stops capture, waits for the last file to be archived, stops.\n")
    started = time.time()

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
        while not (base / "spool" / "ready").is_dir() and capture.poll() is None:
            if stop.wait(0.1):
                break
        if (base / "spool" / "ready").is_dir():
            watcher.start()
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
        watcher.stop()
        for proc in (capture, offload):
            if proc.poll() is None:
                proc.kill()
    archived = _files(base / "archive")
    new = {p: n for p, n in archived.items() if p not in watcher.before}
    print(
        f"\nrollcap demo: this run archived {len(new)} capture(s), "
        f"{human_bytes(sum(new.values()))}; {base / 'archive'} holds {len(archived)}"
    )
    since = "@" + str(int(started) - 1)
    print("rollcap demo: this run's packets on port 80 (your curl), merged into one pcap:")
    print(f"  {fetch_command(rollcap_cmd, cfg, a.interface, since)}")
    print("rollcap demo: read it with: tcpdump -nr mine.pcap  or  tshark -r mine.pcap")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
