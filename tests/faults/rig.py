"""One test's world: spool, veth pair, bucket prefix, config, both daemons, a ready/ watcher."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.faults.bucket import BucketView, list_keys, read_bucket
from tests.faults.cfg import make_config, new_spool_dir, unique_host, write_config
from tests.faults.proc import Daemon, tcpdumps_for, wait_for
from tests.faults.watch import ReadyWatcher
from tests.support.net import Veth
from tests.support.seaweedfs import SeaweedFS

PACKETS_PER_LOOP = 5374
_LISTENING = re.compile(r"tcpdump: listening on .*\[tcpdump_pid=(\d+)[ \]]")


@dataclass
class Rig:
    s3: SeaweedFS
    veth: Veth | None
    pcap: Path
    workdir: Path  # logs and configs (pytest tmp_path)
    spool: Path = field(default_factory=new_spool_dir)
    host: str = field(default_factory=unique_host)
    prefix: str = field(default_factory=lambda: "faults-" + secrets.token_hex(4))
    watcher: ReadyWatcher | None = None
    replayed: int = 0
    _client: Any = None
    _daemons: list[Daemon] = field(default_factory=list)
    _mounted: list[Path] = field(default_factory=list)

    # -- config ---------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.workdir / "rollcap.toml"

    def configure(self, **sections: dict[str, Any]) -> Path:
        data = make_config(
            spool=self.spool,
            interface=self.veth.b if self.veth else "lo",
            hostname=self.host,
            destination=f"s3://{self.s3.bucket}/{self.prefix}",
            endpoint_url=self.s3.endpoint,
            capture=sections.get("capture"),
            spool_opts=sections.get("spool"),
            offload=sections.get("offload"),
        )
        return write_config(self.config_path, data)

    # -- daemons --------------------------------------------------------------
    def daemon(self, kind: str, wrapper: list[str] | None = None,
               env: dict[str, str] | None = None) -> Daemon:  # fmt: skip
        d = Daemon(
            kind, self.config_path, self.workdir / f"{kind}.log",
            env={**self.s3.env(), **(env or {})}, spool=self.spool, wrapper=wrapper or [],
        )  # fmt: skip
        self._daemons.append(d)
        return d

    def tcpdumps(self) -> list[int]:
        return tcpdumps_for(self.spool)

    def wait_capturing(self, cap: Daemon, timeout: float = 30) -> int:
        """Until a tcpdump of ours runs and has had time to open its socket."""

        def up() -> int | None:
            if not cap.running():
                raise AssertionError(f"capture exited ({cap.proc and cap.proc.returncode}):\n"
                                     + cap.tail())  # fmt: skip
            pids = self.tcpdumps()
            return pids[0] if pids else None

        pid: int = wait_for(up, timeout, what="tcpdump to run\n" + cap.tail())
        return self.wait_listening(cap, pid, timeout)

    def wait_listening(self, cap: Daemon, pid: int | None = None, timeout: float = 30) -> int:
        """Until a tcpdump of ours (pid, or any) has said "listening on" in capture's
        log: its socket is bound, a packet sent from now on is captured. Not a
        fixed sleep: on a loaded machine that takes longer than any guess."""

        def listening() -> int | None:
            if not cap.running():
                raise AssertionError(f"capture exited ({cap.proc and cap.proc.returncode}):\n"
                                     + cap.tail())  # fmt: skip
            said = {int(m) for m in _LISTENING.findall(cap.text())}
            now = [p for p in self.tcpdumps() if p in said and pid in (None, p)]
            return now[0] if now else None

        found: int = wait_for(listening, timeout, 0.05,
                              what=lambda: "tcpdump to listen\n" + cap.tail())  # fmt: skip
        return found

    # -- traffic --------------------------------------------------------------
    def replay(self, loops: int = 1, pps: int | None = None) -> int:
        assert self.veth is not None
        self.veth.replay(self.pcap, loop=loops, pps=pps)
        self.replayed += loops * PACKETS_PER_LOOP
        return loops * PACKETS_PER_LOOP

    def replay_async(self, loops: int, pps: int) -> subprocess.Popen[bytes]:
        assert self.veth is not None
        p = subprocess.Popen(
            ["tcpreplay", "-q", f"--intf1={self.veth.a}", f"--pps={pps}", f"--loop={loops}",
             str(self.pcap)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.replayed += loops * PACKETS_PER_LOOP
        return p

    # -- spool ----------------------------------------------------------------
    @property
    def ready(self) -> Path:
        return self.spool / "ready"

    @property
    def quarantine(self) -> Path:
        return self.spool / "quarantine"

    def watch(self, keep_fds: bool = True) -> ReadyWatcher:
        self.watcher = ReadyWatcher(self.ready, self.quarantine, on_gone=self.listing,
                                    keep_fds=keep_fds).start()  # fmt: skip
        return self.watcher

    def ready_files(self) -> list[str]:
        try:
            return sorted(p.name for p in self.ready.iterdir() if not p.name.startswith("."))
        except FileNotFoundError:
            return []

    def spool_areas(self) -> dict[str, int]:
        """Bytes in work/ ready/ quarantine/ (what the budget covers:
        rollcap.capture.budget.spool_bytes) and in the offload's tmp/; not the
        daemons' few KB of state in capture/ and state/."""
        return {d: self._tree_bytes(self.spool / d) for d in ("work", "ready", "quarantine", "tmp")}

    @staticmethod
    def _tree_bytes(root: Path) -> int:
        total = 0
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, f)).st_size
        return total

    def wait_drained(self, timeout: float = 60) -> None:
        """ready/ empty (everything uploaded or quarantined); fails at once if an offload died."""

        def drained() -> bool:
            for d in self._daemons:
                if d.kind == "offload" and d.proc is not None and not d.running():
                    raise AssertionError(f"offload exited ({d.proc.returncode}):\n{d.tail()}")
            return not self.ready_files()

        wait_for(drained, timeout, 0.2, what="ready/ to drain")

    def mount_tmpfs(self, megabytes: int) -> None:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0755",
                        "rollcap-faults", str(self.spool)], check=True)  # fmt: skip
        self._mounted.append(self.spool)

    # -- bucket ---------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.s3.client()
        return self._client

    def listing(self) -> frozenset[str]:
        try:
            return frozenset(list_keys(self.client, self.s3.bucket, self.prefix + "/"))
        except Exception:
            return frozenset({"<listing failed>"})

    def bucket(self) -> BucketView:
        return read_bucket(self.client, self.s3.bucket, self.prefix + "/")

    # -- teardown -------------------------------------------------------------
    def close(self) -> None:
        for d in self._daemons:
            with contextlib.suppress(Exception):
                d.stop(timeout=15)
        if self.watcher is not None:
            self.watcher.close()
        for m in self._mounted:
            subprocess.run(["umount", "-l", str(m)], capture_output=True)
        shutil.rmtree(self.spool, ignore_errors=True)
