"""A booted Debian (12 or 13) in systemd-nspawn, for proving the package and its units.

The rootfs is a tarball made by packaging/rootfs (debootstrapped on first use
from the machine's own apt mirror, so no mirror is named here; cached in
$ROLLCAP_CACHE), unpacked per run and booted with systemd as PID 1. The
container shares the host's network namespace: the test's veth pair and the
SeaweedFS on 127.0.0.1 are visible inside without routing or forwarding, and
nothing is reachable that the host could not reach anyway.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASE = (
    "systemd,systemd-sysv,dbus,python3,tcpdump,libsystemd0,iproute2,tcpreplay,"
    "wireshark-common,ca-certificates"
)
# What `apt install ./rollcap_*.deb` needs beyond the base, preinstalled from the
# release's own archive so that the install needs no network: Debian 13's
# package depends on the distribution's Python modules; Debian 12's bundles them.
# (Installed with apt after debootstrap: see packaging/rootfs.)
LATER = {
    "bookworm": "",
    "trixie": "python3-pydantic,python3-boto3,python3-systemd,python3-watchdog,"
    "python3-zstandard,python3-prometheus-client",
}
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def ensure_rootfs(release: str) -> Path:
    """The cached minimal RELEASE with the test's packages: a tarball."""
    r = subprocess.run(
        [str(REPO / "packaging/rootfs"), "ensure", release, BASE, LATER[release]],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if r.returncode != 0:
        raise RuntimeError(f"packaging/rootfs {release} failed: {r.stderr}")
    return Path(r.stdout.strip())


def unpack_rootfs(tarball: Path, dest: Path) -> None:
    subprocess.run([str(REPO / "packaging/rootfs"), "unpack", str(tarball), str(dest)], check=True)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Container:
    """One booted copy of the rootfs. Use `Container.boot(dir)`, then `poweroff()`."""

    root: Path
    name: str
    proc: subprocess.Popen[bytes] | None = None
    leader: int = 0
    log: Path = field(default_factory=Path)

    @classmethod
    @contextlib.contextmanager
    def booted(cls, workdir: Path, rootfs: Path) -> Iterator[Container]:
        """A container of its own from a rootfs tarball (ensure_rootfs)."""
        c = cls(root=workdir / "root", name="rcsys" + secrets.token_hex(3))
        try:
            unpack_rootfs(rootfs, c.root)
            c.log = workdir / "console.log"
            c._start()
            yield c
        finally:
            c.poweroff()
            shutil.rmtree(c.root, ignore_errors=True)

    def _start(self, timeout: float = 120) -> None:
        # its own hostname, and the /etc/hosts every installed Debian has
        (self.root / "etc/hostname").write_text(self.name + "\n")
        (self.root / "etc/hosts").write_text(
            f"127.0.0.1\tlocalhost\n127.0.1.1\t{self.name}\n::1\tlocalhost ip6-localhost\n"
        )
        log = open(self.log, "wb")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "--register=no", "--keep-unit", "--quiet",
             f"--machine={self.name}", f"--directory={self.root}", "--boot",
             "--console=passive", "--link-journal=no", "--resolv-conf=off",
             "--timezone=off"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self.leader:
            if self.proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited {self.proc.returncode}: {self.log}")
            if time.monotonic() > deadline:
                raise RuntimeError("container did not start")
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            with contextlib.suppress(OSError):
                pids = children.read_text().split()
                if pids and Path(f"/proc/{pids[0]}/comm").read_text().strip() == "systemd":
                    self.leader = int(pids[0])
            time.sleep(0.1)
        # is-system-running --wait needs the bus; retry until it answers at all
        while True:
            r = self.run(["systemctl", "is-system-running", "--wait"], check=False)
            state = r.stdout.strip()
            if state in ("running", "degraded"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"container not running: {state!r} {r.stderr}")
            time.sleep(0.5)
        if state == "degraded":
            failed = self.run(["systemctl", "--failed", "--no-legend"]).stdout
            raise RuntimeError(f"container booted degraded: {failed}")

    def run(
        self,
        cmd: Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120,
        env: dict[str, str] | None = None,
    ) -> Result:
        """Run cmd inside the container (all its namespaces), as root."""
        assert self.leader
        # -r -w: the container's root and working directory, not the host's
        full = ["nsenter", "-t", str(self.leader), "-a", "-r", "-w", "--",
                "env", "-i", f"PATH={PATH}", "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0",
                *(f"{k}={v}" for k, v in (env or {}).items()), *cmd]  # fmt: skip
        p = subprocess.run(
            full, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        r = Result(p.returncode, p.stdout, p.stderr)
        if check and r.returncode != 0:
            raise AssertionError(
                f"in container: {' '.join(cmd)} exited {r.returncode}\n"
                f"stdout: {r.stdout[-3000:]}\nstderr: {r.stderr[-3000:]}"
            )
        return r

    def sh(self, script: str, **kw: object) -> Result:
        return self.run(["sh", "-ec", script], **kw)  # type: ignore[arg-type]

    def path(self, inside: str) -> Path:
        """Host path of a file in the container's root (for files we put there)."""
        return self.root / inside.lstrip("/")

    def write(self, inside: str, text: str, mode: int = 0o644) -> None:
        p = self.path(inside)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        p.chmod(mode)

    def poweroff(self, timeout: float = 30) -> None:
        """Halt systemd inside (nspawn turns SIGTERM into a clean shutdown), then kill."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # killing the container's PID 1 ends its whole PID namespace
                for pid, kill in ((self.leader, os.kill), (self.proc.pid, os.killpg)):
                    if pid:
                        with contextlib.suppress(ProcessLookupError):
                            kill(pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None
        self.leader = 0
