"""The operator's path, proven in a booted Debian 12 and 13 with systemd as PID 1.

apt install ./rollcap_*.deb -> units installed, not enabled -> edit
/etc/rollcap.toml -> systemctl enable --now -> captures arrive in the bucket ->
reload, stop, remove, purge -> install the previous release (0.1.0) and
upgrade from it. The tests run in file order and share one container per
release (conftest.py runs the module once per release); each asserts one thing
an operator relies on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.net import Veth, count_packets
from tests.support.prometheus import free_port
from tests.support.seaweedfs import SeaweedFS
from tests.system.conftest import REPO, Debs
from tests.system.nspawn import Container, Result

pytestmark = pytest.mark.system

SPOOL = "/var/spool/rollcap"
METRICS = "/var/lib/rollcap-metrics"
NODE_EXPORTER_DIR = "/var/lib/prometheus/node-exporter"
DAEMONS = (REPO / "rollcap/capture/service.py").is_file() and (
    REPO / "rollcap/offload/service.py"
).is_file()
needs_daemons = pytest.mark.skipif(
    not DAEMONS, reason="rollcap.capture.service / rollcap.offload.service not merged yet"
)
# tcpdump loses the packets of its last, partly filled kernel block on SIGTERM
# unless the block timeout (1 s) has passed since the last packet.
SETTLE = 1.5
# A paced replay: at top speed a loaded 2-core machine drops packets in the
# kernel before tcpdump reads them, and the count would measure the machine.
REPLAY_PPS = 4000


def wait_for(what: str, fn: Callable[[], object], timeout: float = 60,
             debug: Callable[[], str] | None = None) -> object:  # fmt: skip
    """Poll fn until it returns something truthy; fail naming `what` otherwise
    (with what debug() says)."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            more = f"\n{debug()}" if debug else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{more}")
        time.sleep(0.5)


def unit_props(c: Container, unit: str, *props: str) -> dict[str, str]:
    out = c.run(["systemctl", "show", unit, *(f"--property={p}" for p in props)]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def tcpdump_child(c: Container, unit: str, user: str = "rollcap-capture"
                  ) -> tuple[int, str] | None:  # fmt: skip
    """(pid, command line) of the unit's tcpdump, running as user (0.1.0: tcpdump)."""
    cg = unit_props(c, unit, "ControlGroup")["ControlGroup"]
    if not cg:
        return None
    script = f"""
uid=$(id -u {user})
for f in /sys/fs/cgroup{cg}/cgroup.procs /sys/fs/cgroup/systemd{cg}/cgroup.procs; do
    [ -r "$f" ] || continue
    for pid in $(cat "$f"); do
        [ "$(cat /proc/$pid/comm 2>/dev/null)" = tcpdump ] || continue
        grep -Eq "^Uid:[[:space:]]+$uid[[:space:]]" /proc/$pid/status || continue
        printf '%s ' "$pid"; tr '\\0' ' ' < /proc/$pid/cmdline; echo
    done
    break
done
"""
    out = c.sh(script, check=False).stdout.strip()
    if not out:
        return None
    pid, cmd = out.splitlines()[0].split(" ", 1)
    return int(pid), cmd


# ---------------------------------------------------------------- install ------


def upstream(version: str) -> str:
    """0.2.0~deb12u1 -> 0.2.0: what `rollcap --version` says."""
    return version.split("~", 1)[0]


def apt_install(c: Container, deb: Path, *dpkg_options: str) -> None:
    shutil.copy2(deb, c.path("/root") / deb.name)
    opts = [a for o in dpkg_options for a in ("-o", f"Dpkg::Options::={o}")]
    c.run(["apt-get", "install", "-y", *opts, f"/root/{deb.name}"],
          env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=300)  # fmt: skip


def test_apt_install_leaves_units_disabled(container: Container, debs: Debs, release: str) -> None:
    c = container
    apt_install(c, debs.new)
    assert c.run(["rollcap", "--version"]).stdout.strip() == f"rollcap {upstream(debs.new_version)}"
    for unit in ("rollcap-capture.service", "rollcap-offload.service"):
        p = unit_props(c, unit, "LoadState", "UnitFileState", "ActiveState")
        assert p == {"LoadState": "loaded", "UnitFileState": "disabled", "ActiveState": "inactive"}
    if release == "bookworm":
        # the distribution's python runs the bundled pydantic 2, not python3-pydantic 1.10
        script = ("import sys; sys.path.insert(0, '/usr/lib/rollcap/site');"
                  " import pydantic; print(pydantic.VERSION, sys.executable)")  # fmt: skip
        out = c.run(["python3", "-I", "-c", script]).stdout
        assert out.split()[0].startswith("2.") and out.split()[1] == "/usr/bin/python3"
    else:
        # nothing bundled: every module rollcap imports belongs to a Debian package
        script = ("import pydantic, boto3, systemd.journal, watchdog, zstandard, prometheus_client;"
                  " print(pydantic.__file__, boto3.__file__, zstandard.__file__)")  # fmt: skip
        files = c.run(["python3", "-I", "-c", script]).stdout.split()
        owners = c.run(["dpkg", "-S", *files]).stdout
        assert {ln.split(":")[0] for ln in owners.splitlines()} == {
            "python3-pydantic", "python3-boto3", "python3-zstandard"}  # fmt: skip
        assert not c.path("/usr/lib/rollcap").exists()


def test_users_and_directories(container: Container) -> None:
    c = container
    for user in ("rollcap", "rollcap-capture"):
        pw = c.run(["getent", "passwd", user]).stdout.strip().split(":")
        assert pw[6] == "/usr/sbin/nologin" and int(pw[2]) < 1000
    # the capture user is in no group of offload's
    assert c.run(["id", "-Gn", "rollcap-capture"]).stdout.split() == ["rollcap-capture"]
    modes = c.run(["stat", "-c", "%n %a %U %G", SPOOL, *(f"{SPOOL}/{d}" for d in
                   ("work", "capture", "ready", "quarantine", "tmp", "state")),
                   "/var/lib/rollcap", "/var/lib/rollcap/archive"]).stdout.splitlines()  # fmt: skip
    assert modes == [
        f"{SPOOL} 751 root rollcap",
        f"{SPOOL}/work 2700 rollcap-capture rollcap",
        f"{SPOOL}/capture 2750 rollcap-capture rollcap",
        f"{SPOOL}/ready 2770 rollcap-capture rollcap",
        f"{SPOOL}/quarantine 2770 rollcap-capture rollcap",
        f"{SPOOL}/tmp 2750 rollcap rollcap",
        f"{SPOOL}/state 2750 rollcap rollcap",
        "/var/lib/rollcap 750 rollcap rollcap",
        "/var/lib/rollcap/archive 750 rollcap rollcap",
    ]
    # metrics: one directory per daemon user in one of root's, so neither can
    # rename or fill the other's
    modes = c.run(["stat", "-c", "%n %a %U %G", METRICS, f"{METRICS}/capture",
                   f"{METRICS}/offload"]).stdout.splitlines()  # fmt: skip
    assert modes == [f"{METRICS} 755 root root",
                     f"{METRICS}/capture 755 rollcap-capture rollcap-capture",
                     f"{METRICS}/offload 755 rollcap rollcap"]  # fmt: skip


def test_man_pages_and_conffile(container: Container) -> None:
    c = container
    for page in ("/usr/share/man/man8/rollcap.8.gz", "/usr/share/man/man5/rollcap.toml.5.gz"):
        text = c.run(["sh", "-c", f"zcat {page}"]).stdout
        assert text.startswith(".TH ROLLCAP")
    assert "/etc/rollcap.toml" in c.run(["dpkg-query", "-W", "-f=${Conffiles}", "rollcap"]).stdout
    assert c.path("/etc/rollcap.toml").read_text() == (REPO / "config/rollcap.toml").read_text()
    c.run(["rollcap", "check-config"])  # the shipped default config is valid
    # bash completion, generated at build from the parser the package runs
    completion = c.path("/usr/share/bash-completion/completions/rollcap").read_text()
    assert completion == c.run(["rollcap", "completion"]).stdout


def test_readme_links_and_suggests_resolve_in_the_package(container: Container) -> None:
    """README.md links to docs/*.md: the package ships them at the same relative path;
    --pcapng needs mergecap: the package suggests wireshark-common."""
    c = container
    doc = "/usr/share/doc/rollcap"
    def shipped(name: str) -> bool:  # dh_compress gzips the larger ones
        return c.path(f"{doc}/{name}").is_file() or c.path(f"{doc}/{name}.gz").is_file()

    assert shipped("README.md")
    for name in set(re.findall(r"\bdocs/[\w.-]+\.md\b", (REPO / "README.md").read_text())):
        assert shipped(name), name
    suggests = c.run(["dpkg-query", "-W", "-f=${Suggests}", "rollcap"]).stdout
    assert "wireshark-common" in suggests


def test_units_verify_clean_when_installed(container: Container) -> None:
    units = ["rollcap-capture.service", "rollcap-offload.service"]
    r = container.run(["systemd-analyze", "verify", "--man=no", *units], check=False)
    assert (r.returncode, r.stdout + r.stderr) == (0, "")


# ------------------------------------------------ the sandbox, without the daemons ----


def _probe_unit(
    c: Container, base: str, name: str, service: str, keep_reload: bool = False
) -> None:
    """A copy of an installed unit's sandbox with another [Service] command."""
    text = c.path(f"/lib/systemd/system/{base}").read_text()
    replaced = {ln.split("=", 1)[0] for ln in service.strip().splitlines()}
    drop = {"NotifyAccess", "WatchdogSec", "Restart", "RestartSec",
            "RestartPreventExitStatus", *replaced}  # fmt: skip
    if not keep_reload:
        drop.add("ExecReload")
    keep = []
    for line in text.splitlines():
        if line.split("=", 1)[0] in drop:
            continue
        keep.append(line)
        if line == "[Service]":
            keep.extend(service.strip().splitlines())
    c.write(f"/etc/systemd/system/{name}", "\n".join(keep) + "\n")
    c.run(["systemctl", "daemon-reload"])


def test_tcpdump_captures_in_the_capture_sandbox(
    container: Container, sys_veth: Veth, all_pcap: Path
) -> None:
    """tcpdump as rollcap-capture under the unit's exact hardening (its ambient
    CAP_NET_RAW only, no -Z, @system-service, PrivateDevices, ...) captures every
    packet, with a -B kernel buffer (libpcap sizes its ring; no SO_RCVBUFFORCE needed)."""
    c = container
    work = f"{SPOOL}/work/g000001-probe.pcap"
    _probe_unit(c, "rollcap-capture.service", "rollcap-probe-capture.service", f"""
Type=simple
ExecStart=/usr/bin/tcpdump -i {sys_veth.b} -n -s 262144 -B 8192 -C 1000 -w {work}
""")  # fmt: skip
    c.run(["systemctl", "start", "rollcap-probe-capture.service"])
    try:
        wait_for("tcpdump to run",
                 lambda: tcpdump_child(c, "rollcap-probe-capture.service"))  # fmt: skip
        sys_veth.replay(all_pcap, pps=REPLAY_PPS)
        time.sleep(SETTLE)
    finally:
        c.run(["systemctl", "stop", "rollcap-probe-capture.service"])
    result = unit_props(c, "rollcap-probe-capture.service", "Result")["Result"]
    assert result == "success"
    assert count_packets(c.path(work)) == count_packets(all_pcap)
    # UMask=0077 here (the daemon gives tcpdump 0027); setgid work/: group rollcap
    st = c.run(["stat", "-c", "%a %U %G", work]).stdout.split()
    assert st == ["600", "rollcap-capture", "rollcap"]


def test_reload_signals_the_main_process(container: Container) -> None:
    """ExecReload= (`rollcap reload`, in the capture sandbox) sends SIGHUP to the main
    process and waits for its verdict in capture/capture-reload.json."""
    c = container
    c.write("/usr/local/bin/rollcap-probe-reload", f"""#!/bin/sh
answer() {{
    echo hup > {SPOOL}/capture/probe-hup
    printf '{{"seq": 1, "ok": true, "message": "probe reloaded", "pid": %d}}' $$ \\
        > {SPOOL}/capture/capture-reload.json
}}
trap answer HUP
touch {SPOOL}/capture/probe-trap
while :; do sleep 0.2; done
""", 0o755)
    _probe_unit(c, "rollcap-capture.service", "rollcap-probe-reload.service", """
Type=simple
ExecStart=/usr/local/bin/rollcap-probe-reload
""", keep_reload=True)  # fmt: skip
    c.run(["systemctl", "start", "rollcap-probe-reload.service"])
    try:
        # Type=simple returns at fork: reload only once the trap is in place
        wait_for("the trap", lambda: c.path(f"{SPOOL}/capture/probe-trap").exists(), 20)
        c.run(["systemctl", "reload", "rollcap-probe-reload.service"])
        wait_for("SIGHUP to arrive", lambda: c.path(f"{SPOOL}/capture/probe-hup").exists(), 20)
    finally:
        c.run(["systemctl", "stop", "rollcap-probe-reload.service"])
        c.run(["rm", "-f", f"{SPOOL}/capture/probe-hup", f"{SPOOL}/capture/probe-trap",
               f"{SPOOL}/capture/capture-reload.json", "/usr/local/bin/rollcap-probe-reload",
               "/etc/systemd/system/rollcap-probe-reload.service"])  # fmt: skip
    log = c.run(["journalctl", "-u", "rollcap-probe-reload", "-o", "cat"]).stdout
    assert "probe reloaded" in log  # `rollcap reload` printed the verdict


def test_capture_sandbox_can_hand_files_off(container: Container) -> None:
    """What the capture daemon does to tcpdump's files works as rollcap-capture with
    no capability but CAP_NET_RAW: append (repair), chmod, rename to ready/, its
    state in capture/; and it cannot write offload's state/ and tmp/."""
    c = container
    _probe_unit(c, "rollcap-capture.service", "rollcap-probe-handoff.service", f"""
Type=oneshot
ExecStart=/bin/sh -ec 'cd {SPOOL}; f=work/g000001-probe.pcap; : >> $f; \\
  chmod 0640 $f; mv $f ready/probe.pcap; \\
  echo "{{}}" > capture/probe.json; rm capture/probe.json; \\
  ! touch state/probe 2>/dev/null; ! touch tmp/probe 2>/dev/null; \\
  ! ls /var/lib/rollcap 2>/dev/null'
""")  # fmt: skip
    r = c.run(["systemctl", "start", "rollcap-probe-handoff.service"], check=False)
    log = c.run(["journalctl", "-u", "rollcap-probe-handoff", "-o", "cat"]).stdout
    assert r.returncode == 0, log
    st = c.run(["stat", "-c", "%a %U %G", f"{SPOOL}/ready/probe.pcap"]).stdout.split()
    assert st == ["640", "rollcap-capture", "rollcap"]


def test_offload_sandbox_reads_and_deletes(container: Container) -> None:
    """As user rollcap with no capabilities: read a finished file, write tmp/ and the
    archive, delete from ready/; the S3 credential is visible only through LoadCredential."""
    c = container
    c.run(["install", "-d", "-m", "0700", "/etc/credstore"])
    cred = "/etc/credstore/rollcap-s3-credentials"
    c.write(cred, "[default]\naws_access_key_id = probe\n", 0o600)
    _probe_unit(c, "rollcap-offload.service", "rollcap-probe-offload.service", f"""
Type=oneshot
ExecStart=/bin/sh -ec 'cd {SPOOL}; cp ready/probe.pcap tmp/probe.pcap; \\
  mv tmp/probe.pcap /var/lib/rollcap/archive/probe.pcap; rm ready/probe.pcap; \\
  grep -q probe "$CREDENTIALS_DIRECTORY/s3-credentials"; \\
  ! cat /etc/credstore/rollcap-s3-credentials 2>/dev/null; \\
  ! ls work 2>/dev/null; ! ls capture 2>/dev/null; ! touch work/x 2>/dev/null'
""")  # fmt: skip
    r = c.run(["systemctl", "start", "rollcap-probe-offload.service"], check=False)
    log = c.run(["journalctl", "-u", "rollcap-probe-offload", "-o", "cat"]).stdout
    assert r.returncode == 0, log
    st = c.run(["stat", "-c", "%a %U", "/var/lib/rollcap/archive/probe.pcap"]).stdout.split()
    assert st == ["640", "rollcap"]
    assert not c.path(f"{SPOOL}/ready/probe.pcap").exists()
    c.run(["rm", "-f", "/var/lib/rollcap/archive/probe.pcap", cred,
           "/etc/systemd/system/rollcap-probe-capture.service",
           "/etc/systemd/system/rollcap-probe-handoff.service",
           "/etc/systemd/system/rollcap-probe-offload.service"])  # fmt: skip
    c.run(["systemctl", "daemon-reload"])


def test_offload_starts_without_credentials_file(container: Container) -> None:
    """LoadCredential= of a missing file must not keep offload from starting (the
    operator may use another credential source, or the file:// default)."""
    c = container
    _probe_unit(c, "rollcap-offload.service", "rollcap-probe-nocred.service", """
Type=oneshot
ExecStart=/bin/true
""")  # fmt: skip
    r = c.run(["systemctl", "start", "rollcap-probe-nocred.service"], check=False)
    log = c.run(["journalctl", "-u", "rollcap-probe-nocred", "-o", "cat"]).stdout
    assert r.returncode == 0, log
    c.run(["rm", "-f", "/etc/systemd/system/rollcap-probe-nocred.service"])
    c.run(["systemctl", "daemon-reload"])


# ------------------------------------------------ end to end, with the daemons ----


def _prefix(release: str) -> str:
    """Each release's objects under a prefix of their own (one SeaweedFS for all)."""
    return f"systest-{release}"


def _config(veth: Veth, weed: SeaweedFS, prefix: str, *, filter: str = "", extra: str = "") -> str:
    return f"""\
[capture]
interface = "{veth.b}"
filter = "{filter}"
rotate_seconds = 600
rotate_megabytes = 1
hostname = "systest"
{extra}
[spool]
max_megabytes = 200

[offload]
destination = "s3://{weed.bucket}/{prefix}"
endpoint_url = "{weed.endpoint}"
region = "us-east-1"
rescan_seconds = 2
retry_max_seconds = 5
"""


def _objects(weed: SeaweedFS, prefix: str) -> dict[str, int]:
    """Capture objects under the test prefix: key -> size."""
    out: dict[str, int] = {}
    pages = (
        weed.client()
        .get_paginator("list_objects_v2")
        .paginate(Bucket=weed.bucket, Prefix=prefix + "/")
    )
    for page in pages:
        for o in page.get("Contents", []):
            if re.search(r"\.pcap(\.zst|\.gz)?$", o["Key"]):
                out[o["Key"]] = o["Size"]
    return out


def _packets(weed: SeaweedFS, keys: set[str] | list[str], dest: Path) -> int:
    """Packets in those objects, counted by capinfos after download."""
    total = 0
    client = weed.client()
    for key in keys:
        f = dest / key.replace("/", "_")
        client.download_file(weed.bucket, key, str(f))
        total += count_packets(f)
    return total


def _journal(c: Container, unit: str, since_cursor: str = "") -> list[dict[str, str]]:
    args = ["journalctl", "-u", unit, "-o", "json", "--no-pager"]
    if since_cursor:
        args.append(f"--after-cursor={since_cursor}")
    lines = c.run(args).stdout.splitlines()
    return [json.loads(ln) for ln in lines if ln.startswith("{")]


def _cursor(c: Container) -> str:
    out = c.run(["journalctl", "-n", "0", "--show-cursor", "--no-pager"]).stdout
    return out.strip().rsplit("-- cursor: ", 1)[-1]


CAP_NET_RAW = 1 << 13


def _unit_processes(c: Container, unit: str) -> dict[int, dict[str, str]]:
    """/proc/PID/status of every process in the unit's cgroup."""
    cg = unit_props(c, unit, "ControlGroup")["ControlGroup"]
    assert cg, f"{unit} has no cgroup (not running?)"
    # unified, then hybrid (systemd tracks in the unified tree; its name=systemd compat
    # copy can be missing, see COMPAT_ATTACH_NOISE), then legacy
    pids = c.sh(f"cat /sys/fs/cgroup{cg}/cgroup.procs 2>/dev/null || "
                f"cat /sys/fs/cgroup/unified{cg}/cgroup.procs 2>/dev/null || "
                f"cat /sys/fs/cgroup/systemd{cg}/cgroup.procs").stdout.split()  # fmt: skip
    out = {}
    for pid in pids:
        text = c.run(["cat", f"/proc/{pid}/status"], check=False).stdout
        fields = dict(ln.split(":", 1) for ln in text.splitlines() if ":" in ln)
        if fields:
            out[int(pid)] = {k: v.strip() for k, v in fields.items()}
    return out


def _check_no_root(c: Container) -> None:
    """No process of either unit, tcpdump included, has uid/euid 0 or any effective
    capability but CAP_NET_RAW (capture) or none at all (offload)."""
    users = {"rollcap-capture.service": "rollcap-capture", "rollcap-offload.service": "rollcap"}
    allowed = {"rollcap-capture.service": CAP_NET_RAW, "rollcap-offload.service": 0}
    seen = {}
    for unit, user in users.items():
        uid = c.run(["id", "-u", user]).stdout.strip()
        procs = _unit_processes(c, unit)
        seen[unit] = sorted(p["Name"] for p in procs.values())
        for pid, st in procs.items():
            assert st["Uid"].split() == [uid] * 4, (unit, pid, st["Name"], st["Uid"])
            assert "0" not in st["Gid"].split(), (unit, pid, st["Name"], st["Gid"])
            eff = int(st["CapEff"], 16)
            assert eff & ~allowed[unit] == 0, (unit, pid, st["Name"], st["CapEff"])
    assert "tcpdump" in seen["rollcap-capture.service"], seen


@needs_daemons
def test_enable_now_captures_and_uploads_every_packet(
    container: Container,
    sys_veth: Veth,
    seaweedfs: SeaweedFS,
    all_pcap: Path,
    tmp_path: Path,
    release: str,
) -> None:
    """The README's path: edit the config, enable --now, traffic arrives in the bucket.
    `systemctl stop` hands the last file off and it is uploaded too."""
    c, prefix = container, _prefix(release)
    c.write("/etc/rollcap.toml", _config(sys_veth, seaweedfs, prefix))
    c.run(["install", "-d", "-m", "0700", "/etc/credstore"])
    c.write("/etc/credstore/rollcap-s3-credentials",
            f"[default]\naws_access_key_id = {seaweedfs.access_key}\n"
            f"aws_secret_access_key = {seaweedfs.secret_key}\n", 0o600)  # fmt: skip
    c.run(["rollcap", "check-config"])
    c.run(["systemctl", "enable", "--now", "rollcap-capture", "rollcap-offload"], timeout=90)
    wait_for("capture's tcpdump", lambda: tcpdump_child(c, "rollcap-capture.service"))
    sys_veth.replay(all_pcap, loop=2, pps=REPLAY_PPS)  # ~2.6 MB: rotates at 1 MB
    time.sleep(SETTLE)
    # files finished by rotation are offloaded while capture runs
    wait_for("an object while capture runs", lambda: _objects(seaweedfs, prefix))
    assert unit_props(c, "rollcap-capture.service", "ActiveState")["ActiveState"] == "active"
    _check_no_root(c)
    c.run(["systemctl", "stop", "rollcap-capture"], timeout=60)
    assert unit_props(c, "rollcap-capture.service", "Result")["Result"] == "success"
    expected = 2 * count_packets(all_pcap)
    wait_for(
        f"{expected} packets in the bucket",
        lambda: _packets(seaweedfs, list(_objects(seaweedfs, prefix)), tmp_path) >= expected,
        120,
    )
    assert _packets(seaweedfs, list(_objects(seaweedfs, prefix)), tmp_path) == expected
    left = c.run(["find", f"{SPOOL}/ready", f"{SPOOL}/work", "-type", "f"]).stdout
    assert left == ""


@needs_daemons
def test_offload_journal_has_structured_upload_fields(
    container: Container, seaweedfs: SeaweedFS, release: str
) -> None:
    prefix = _prefix(release)
    entries = [e for e in _journal(container, "rollcap-offload") if "ROLLCAP_KEY" in e]
    assert {e["ROLLCAP_KEY"] for e in entries} >= set(_objects(seaweedfs, prefix))
    for e in entries:
        if "ROLLCAP_BYTES_IN" in e:
            assert int(e["ROLLCAP_BYTES_IN"]) > 0
    assert any("ROLLCAP_BYTES_IN" in e for e in entries)


@needs_daemons
def test_status_shows_the_daemons_status_line(container: Container) -> None:
    c = container
    c.run(["systemctl", "start", "rollcap-capture"], timeout=60)
    wait_for("capture's tcpdump", lambda: tcpdump_child(c, "rollcap-capture.service"))
    for unit in ("rollcap-capture", "rollcap-offload"):
        text = unit_props(c, unit, "StatusText")["StatusText"]
        assert text
        status = c.run(["systemctl", "status", "--no-pager", unit], check=False).stdout
        assert f'Status: "{text}' in status
        # no crash and no watchdog kill so far (WatchdogSec= is armed)
        assert unit_props(c, unit, "NRestarts")["NRestarts"] == "0"


CGROUP_KILL_NOISE = re.compile(
    r"rollcap-(capture|offload)\.service: Failed to kill control group \S+, ignoring: "
    r"Input/output error$"
)
# systemd 252 (bookworm) booted on a hybrid-cgroup host: PID 1 attaches each process to
# the unified tree, then to the name=systemd compat tree, whose directory for a unit can be
# missing (seen once in CI, on the offload's first start); systemd logs it and goes on,
# the unit's processes are in its unified cgroup (which _unit_processes reads)
COMPAT_ATTACH_NOISE = re.compile(
    r"Failed to attach \d+ to compat systemd cgroup "
    r"/system\.slice/rollcap-(capture|offload)\.service: No such file or directory$"
)


@needs_daemons
def test_normal_running_logs_no_warnings(container: Container) -> None:
    """`journalctl -p warning` shows only problems: so far there were none (tcpdump's
    "data link type"/"listening on" lines used to be warnings)."""
    out = container.run(["journalctl", "-q", "--no-pager", "-o", "cat", "-p", "warning",
                         "-u", "rollcap-capture", "-u", "rollcap-offload"]).stdout  # fmt: skip
    # systemd's own line when the container's cgroup refuses cgroup.kill (nested
    # nspawn on some kernels: EIO); systemd goes on and so does the unit
    noise = (CGROUP_KILL_NOISE, COMPAT_ATTACH_NOISE)
    lines = [ln for ln in out.splitlines()
             if ln.strip() and not any(n.match(ln) for n in noise)]  # fmt: skip
    assert lines == []


# 0.2's ACL on node_exporter's directory (tmpfiles.d "a+ ... user:rollcap-capture:rwx,
# group:rollcap:rwx"), set through the xattr: the rootfs has no setfacl.
SET_0_2_ACL = """
import grp, os, pwd, struct, sys
u, g = pwd.getpwnam("rollcap-capture").pw_uid, grp.getgrnam("rollcap").gr_gid
entries = [(1, 7, 0xFFFFFFFF), (2, 7, u), (4, 5, 0xFFFFFFFF), (8, 7, g), (0x10, 7, 0xFFFFFFFF),
           (0x20, 5, 0xFFFFFFFF)]
acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
os.setxattr(sys.argv[1], "system.posix_acl_access", acl)
"""
VICTIM = "/etc/rollcap-victim"


def _as(c: Container, user: str, script: str) -> Result:
    """script as user, with that user's groups (as its unit runs it, sandbox aside)."""
    return c.run(["runuser", "-u", user, "--", "sh", "-c", script], check=False)


def _writes_as(c: Container, user: str, d: str) -> bool:
    return _as(c, user, f"touch {d}/.probe && rm -f {d}/.probe").returncode == 0


def _metrics_state(c: Container) -> str:
    """For a failed wait: the files, the units and the publisher's journal."""
    return c.sh(f"ls -la {NODE_EXPORTER_DIR} {METRICS}/*; head -c 600 {NODE_EXPORTER_DIR}/*.prom;"
                "systemctl status --no-pager rollcap-metrics-publish.path "
                "rollcap-metrics-publish.service rollcap-capture rollcap-offload;"
                "journalctl --no-pager -n 60 -u rollcap-metrics-publish.path "
                "-u rollcap-metrics-publish.service", check=False).stdout  # fmt: skip


def _published(c: Container) -> dict[str, str]:
    """Both daemons' metrics, as root's copies in node_exporter's directory hold them."""
    out = {}
    for daemon, line in (("capture", "rollcap_capture_up{"), ("offload", "rollcap_offload_")):
        p = f"{NODE_EXPORTER_DIR}/rollcap-{daemon}.prom"
        text = c.run(["cat", p], check=False).stdout
        if line in text and 'rollcap_state_updated_timestamp_seconds{daemon="' in text:
            out[daemon] = text
    return out if len(out) == 2 else {}


def test_metrics_reach_node_exporters_directory_as_roots_copies(container: Container) -> None:
    """With node_exporter's directory as Debian makes it (root:root 0755), and 0.2's
    ACL on it, a start removes the ACL and whatever the daemon users planted there,
    and root publishes a copy of each daemon's file there, again at each write."""
    c = container
    c.run(["install", "-d", "-m", "0755", "-o", "root", "-g", "root", NODE_EXPORTER_DIR])
    c.run(["python3", "-c", SET_0_2_ACL, NODE_EXPORTER_DIR])
    assert _writes_as(c, "rollcap-capture", NODE_EXPORTER_DIR)  # the hole 0.2 left
    # what an exploited daemon could plant meanwhile, for root's collectors to write
    # through or node_exporter to block on
    c.write(VICTIM, "root's file\n", 0o600)
    planted = ["smartmon.prom", "fifo.prom", "forged.prom", "d.prom"]
    _as(c, "rollcap-capture", f"ln -s {VICTIM} {NODE_EXPORTER_DIR}/smartmon.prom && "
                              f"mkfifo {NODE_EXPORTER_DIR}/fifo.prom")  # fmt: skip
    _as(c, "rollcap", f"echo 'node_load1 99' > {NODE_EXPORTER_DIR}/forged.prom && "
                      f"mkdir {NODE_EXPORTER_DIR}/d.prom && "
                      f"ln -s {VICTIM} {NODE_EXPORTER_DIR}/d.prom/x")  # fmt: skip
    c.sh(f"echo 'apt_upgrades_pending 0' > {NODE_EXPORTER_DIR}/apt.prom")  # root's collector
    assert set(planted) <= set(c.run(["ls", "-A", NODE_EXPORTER_DIR]).stdout.split())
    cursor = _cursor(c)
    c.run(["systemctl", "restart", "rollcap-capture", "rollcap-offload"], timeout=90)
    left = set(c.run(["ls", "-A", NODE_EXPORTER_DIR]).stdout.split())
    assert not left & set(planted), left
    assert "apt.prom" in left  # root's own stay
    log = [str(e.get("MESSAGE", "")) for u in ("rollcap-capture", "rollcap-offload")
           for e in _journal(c, u, cursor)]  # fmt: skip
    for name in planted:
        assert any(f"rollcap: removed {NODE_EXPORTER_DIR}/{name} (" in m for m in log), (name, log)
    assert c.path(VICTIM).read_text() == "root's file\n"
    c.run(["rm", "-f", VICTIM, f"{NODE_EXPORTER_DIR}/apt.prom"])
    files = wait_for("both textfiles in root's copies", lambda: _published(c), 60,
                     lambda: _metrics_state(c))  # fmt: skip
    assert isinstance(files, dict)
    assert re.search(r'^rollcap_capture_up\{interface="[^"]+"\} 1', files["capture"], re.M)
    assert 'rollcap_build_info{daemon="offload",version="' in files["offload"]
    for daemon, user in (("capture", "rollcap-capture"), ("offload", "rollcap")):
        copy = f"{NODE_EXPORTER_DIR}/rollcap-{daemon}.prom"
        own = f"{METRICS}/{daemon}/rollcap-{daemon}.prom"
        # root's own file, which node_exporter (user prometheus) reads
        assert c.run(["stat", "-c", "%F|%U|%a", copy]).stdout.strip() == "regular file|root|644"
        assert c.run(["stat", "-c", "%U", own]).stdout.strip() == user
    # rollcap-metrics-publish.path copies each new write: the timestamps move on
    stamp = re.compile(r"^rollcap_state_updated_timestamp_seconds\{.*$", re.M)
    first = {d: stamp.findall(t) for d, t in files.items()}

    def moved_on() -> bool:
        now = _published(c)
        return bool(now) and all(stamp.findall(now[d]) != first[d] for d in first)

    wait_for("the copies following the daemons' writes", moved_on, 90, lambda: _metrics_state(c))
    assert unit_props(c, "rollcap-metrics-publish.service", "Result")["Result"] == "success"
    # no rollcap user may write there any more: the ACL is gone, the mode is 0755 again
    assert c.run(["stat", "-c", "%a %U %G", NODE_EXPORTER_DIR]).stdout.split() == [
        "755", "root", "root"]  # fmt: skip
    for user in ("rollcap-capture", "rollcap"):
        assert not _writes_as(c, user, NODE_EXPORTER_DIR), user
    acl = c.run(["python3", "-c", "import os, sys; print(len(os.listxattr(sys.argv[1])))",
                 NODE_EXPORTER_DIR]).stdout.strip()  # fmt: skip
    assert acl == "0", "an ACL is left on node_exporter's directory"


def test_a_planted_symlink_changes_nothing_outside(container: Container) -> None:
    """An exploited tcpdump (rollcap-capture) or offload (rollcap) plants symlinks to a
    root-owned file wherever it can; root's jobs and the daemons run on, and the file
    stays as it was."""
    c = container
    c.write(VICTIM, "root's file\n", 0o600)
    before = c.run(["stat", "-c", "%s %a %U %Y %i", VICTIM]).stdout
    for daemon, user in (("capture", "rollcap-capture"), ("offload", "rollcap")):
        own = f"{METRICS}/{daemon}"
        # where root's collectors write: refused
        r = _as(c, user, f"ln -s {VICTIM} {NODE_EXPORTER_DIR}/apt.prom")
        assert r.returncode != 0 and "Permission denied" in r.stderr, (user, r)
        # its own file and the temp names: the daemon's own business
        _as(c, user, f"ln -sfn {VICTIM} {own}/rollcap-{daemon}.prom.x && "
                     f"mv -fT {own}/rollcap-{daemon}.prom.x {own}/rollcap-{daemon}.prom && "
                     f"ln -sfn {VICTIM} {own}/apt.prom")  # fmt: skip
        # nor the other daemon's directory
        other = f"{METRICS}/{'offload' if daemon == 'capture' else 'capture'}"
        assert not _writes_as(c, user, other), (user, other)
    # what root runs: a collector (as prometheus-node-exporter-collectors does),
    # the units' ExecStartPre= (tmpfiles, link-metrics), the daemons rewriting
    c.sh(f"echo 'apt_upgrades_pending 0' > {NODE_EXPORTER_DIR}/apt.prom")
    c.run(["systemctl", "restart", "rollcap-capture", "rollcap-offload"], timeout=90)
    c.run(["systemd-tmpfiles", "--create"], check=False)  # as at boot: every file
    files = wait_for("both textfiles rewritten", lambda: _published(c), 60,
                     lambda: _metrics_state(c))  # fmt: skip
    assert isinstance(files, dict)
    assert c.run(["stat", "-c", "%s %a %U %Y %i", VICTIM]).stdout == before
    assert c.path(VICTIM).read_text() == "root's file\n"
    for daemon in ("capture", "offload"):
        own = f"{METRICS}/{daemon}/rollcap-{daemon}.prom"
        assert c.run(["stat", "-c", "%F", own]).stdout.strip() == "regular file", own
    c.run(["rm", "-f", VICTIM, f"{NODE_EXPORTER_DIR}/apt.prom",
           f"{METRICS}/capture/apt.prom", f"{METRICS}/offload/apt.prom"])  # fmt: skip


def test_a_tmpfiles_grant_to_node_exporters_directory_stops_the_start(container: Container) -> None:
    """docs/packaging.md of 0.2 said: copy rollcap.conf to /etc/tmpfiles.d. Such a
    copy carries the a+ line, and ExecStartPre= would apply it at every start."""
    c = container
    old = c.path("/usr/lib/tmpfiles.d/rollcap.conf").read_text()
    line = f"a+ {NODE_EXPORTER_DIR} - - - - user:rollcap-capture:rwx,group:rollcap:rwx\n"
    c.write("/etc/tmpfiles.d/rollcap.conf", old + line)
    n = len(old.splitlines()) + 1
    try:
        r = c.run(["systemctl", "restart", "rollcap-capture"], check=False, timeout=90)
        assert r.returncode != 0
        log = c.run(["journalctl", "-q", "--no-pager", "-o", "cat", "-u", "rollcap-capture",
                     "-n", "30"]).stdout  # fmt: skip
        assert (f"rollcap: /etc/tmpfiles.d/rollcap.conf:{n} gives user rollcap-capture write "
                f"access to node_exporter's {NODE_EXPORTER_DIR}") in log, log  # fmt: skip
        state = unit_props(c, "rollcap-capture", "ActiveState", "ExecMainStatus")
        assert state == {"ActiveState": "failed", "ExecMainStatus": "78"}, state
        # ExecStartPre= applied the line and removed the entries again
        for user in ("rollcap-capture", "rollcap"):
            assert not _writes_as(c, user, NODE_EXPORTER_DIR), user
    finally:
        c.run(["rm", "-f", "/etc/tmpfiles.d/rollcap.conf"])
    c.run(["systemctl", "reset-failed", "rollcap-capture"])
    c.run(["systemctl", "restart", "rollcap-capture"], timeout=90)


PTH_MARK = "/etc/rollcap-pth-ran-as-root"


def test_roots_commands_ignore_python_files_planted_in_rollcaps_home(
    container: Container,
) -> None:
    """rollcap's home (/var/lib/rollcap) is the offload user's to write, and systemd
    sets HOME from User= for the units' "+" commands too, which run as root: a .pth
    planted in that user's site-packages must not run as root at the next start."""
    c = container
    ver = c.run(["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    site = f"/var/lib/rollcap/.local/lib/python{ver.stdout.strip()}/site-packages"
    # as an exploited offload would: its own home, its own files
    r = _as(c, "rollcap", f"mkdir -p {site} && touch {site}/zz-rollcap-test.pth")
    assert r.returncode == 0, r
    c.write(f"{site}/zz-rollcap-test.pth",
            f"import os; os.getuid() == 0 and open({PTH_MARK!r}, 'w').close()\n")  # fmt: skip
    c.run(["chown", "rollcap:rollcap", f"{site}/zz-rollcap-test.pth"])
    try:
        # the plant works: a root python3 without -I, with HOME as the units set it, runs it
        c.run(["env", "HOME=/var/lib/rollcap", "python3", "-c", "pass"])
        assert c.path(PTH_MARK).exists(), "the planted .pth is not effective"
        c.path(PTH_MARK).unlink()
        cursor = _cursor(c)
        c.run(["systemctl", "restart", "rollcap-offload", "rollcap-capture"], timeout=90)
        wait_for("both textfiles rewritten", lambda: _published(c), 60, lambda: _metrics_state(c))
        assert not c.path(PTH_MARK).exists(), "the rollcap user's .pth ran as root"
        # the root commands did run (and logged nothing about the .pth)
        log = " ".join(str(e.get("MESSAGE", "")) for u in ("rollcap-offload", "rollcap-capture")
                       for e in _journal(c, u, cursor))  # fmt: skip
        assert "zz-rollcap-test.pth" not in log, log
    finally:
        c.run(["rm", "-rf", "/var/lib/rollcap/.local", PTH_MARK])


def test_node_exporter_reads_the_series_and_a_fifo_cannot_block_it(container: Container) -> None:
    """Debian's node_exporter (this machine's 1.5, or $ROLLCAP_NODE_EXPORTER, e.g.
    Debian 13's 1.9), run inside the container as an unprivileged user on Debian's
    default directory, sees both daemons in root's copies. A FIFO the capture user
    puts at its own file's name (node_exporter would block in open() on it) is
    refused: the scrape still answers, with the last good copy."""
    c = container
    binary = Path(os.environ.get("ROLLCAP_NODE_EXPORTER", "/usr/bin/prometheus-node-exporter"))
    if not binary.is_file():
        pytest.fail(f"no {binary}: install prometheus-node-exporter (.ci/run does)")
    shutil.copy2(binary, c.path("/usr/local/bin/rc-node-exporter"))
    port = free_port()
    c.run(["systemd-run", "--unit=rc-node-exporter", "--uid=nobody", "--gid=nogroup",
           "/usr/local/bin/rc-node-exporter", f"--web.listen-address=127.0.0.1:{port}",
           "--collector.disable-defaults", "--collector.textfile",
           f"--collector.textfile.directory={NODE_EXPORTER_DIR}"])  # fmt: skip
    try:

        def scraped() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
            except OSError:
                return ""
            return text if "rollcap_offload_" in text else ""

        text = wait_for("node_exporter's scrape with rollcap's series", scraped, 60)
        assert isinstance(text, str)
        assert re.search(r'^rollcap_capture_up\{interface="[^"]+"\} 1$', text, re.M), text
        assert 'rollcap_build_info{daemon="offload",version="' in text
        assert re.search(r"^node_textfile_scrape_error 0$", text, re.M), text

        # stopped, so that no rewrite replaces the FIFO; its last file stays
        c.run(["systemctl", "stop", "rollcap-capture"], timeout=60)
        own = f"{METRICS}/capture/rollcap-capture.prom"
        c.run(["systemctl", "start", "rollcap-metrics-publish.service"], timeout=60)
        wait_for("capture's last values in node_exporter's scrape", lambda: re.search(
            r'^rollcap_capture_up\{interface="[^"]+"\} 0$', scraped(), re.M), 30,
            lambda: _metrics_state(c))  # fmt: skip
        cursor = _cursor(c)
        r = _as(c, "rollcap-capture", f"mkfifo {own}.fifo && mv -fT {own}.fifo {own}")
        assert r.returncode == 0, r
        # as rollcap-metrics-publish.path does at that rename (unless a run was
        # under way: then at the next write)
        c.run(["systemctl", "start", "rollcap-metrics-publish.service"], timeout=60)
        wait_for("the publisher refusing the FIFO", lambda: any(
            "not publishing capture's metrics" in str(e.get("MESSAGE", ""))
            for e in _journal(c, "rollcap-metrics-publish", cursor)), 60)  # fmt: skip
        # node_exporter answers (urlopen's 5 s timeout), with capture's last values
        text = scraped()
        assert re.search(r'^rollcap_capture_up\{interface="[^"]+"\} 0$', text, re.M), text
        assert re.search(r"^node_textfile_scrape_error 0$", text, re.M), text
    finally:
        c.run(["systemctl", "stop", "rc-node-exporter"], check=False)
        c.run(["rm", "-f", f"{METRICS}/capture/rollcap-capture.prom"], check=False)
        c.run(["systemctl", "restart", "rollcap-capture"], check=False, timeout=90)


@needs_daemons
def test_reload_applies_a_filter_and_rejects_an_invalid_edit(
    container: Container,
    sys_veth: Veth,
    seaweedfs: SeaweedFS,
    all_pcap: Path,
    tmp_path: Path,
    release: str,
) -> None:
    c, prefix = container, _prefix(release)
    before = set(_objects(seaweedfs, prefix))
    old = tcpdump_child(c, "rollcap-capture.service")
    assert old
    c.write("/etc/rollcap.toml", _config(sys_veth, seaweedfs, prefix, filter="udp"))
    c.run(["systemctl", "reload", "rollcap-capture"])
    new = wait_for("tcpdump with the new filter", lambda: (
        (t := tcpdump_child(c, "rollcap-capture.service")) and t[0] != old[0]
        and "(udp)" in t[1] and t))  # fmt: skip
    assert isinstance(new, tuple)

    cursor = _cursor(c)
    bad = _config(sys_veth, seaweedfs, prefix, filter="udp", extra="snaplen = 1")
    c.write("/etc/rollcap.toml", bad)
    r = c.run(["systemctl", "reload", "rollcap-capture"], check=False, timeout=120)
    assert r.returncode != 0  # was 0 ("Reloaded") while the file was rejected
    # ExecReload's own line, with the daemon's reason
    assert any(str(e.get("MESSAGE", "")).startswith("rollcap: ") and "snaplen" in e["MESSAGE"]
               for e in _journal(c, "rollcap-capture", cursor))  # fmt: skip
    wait_for("last_error", lambda: _capture_state(c)["last_error"].startswith("reload rejected"))
    assert unit_props(c, "rollcap-capture.service", "ActiveState")["ActiveState"] == "active"
    assert tcpdump_child(c, "rollcap-capture.service") == new  # capture went on untouched

    sys_veth.replay(all_pcap, pps=REPLAY_PPS)
    time.sleep(SETTLE)
    c.write("/etc/rollcap.toml", _config(sys_veth, seaweedfs, prefix, filter="udp"))
    c.run(["systemctl", "reload", "rollcap-capture"], timeout=120)  # good again: exit 0
    wait_for("last_error to clear", lambda: _capture_state(c)["last_error"] == "")
    c.run(["systemctl", "stop", "rollcap-capture"], timeout=60)
    udp = tmp_path / "udp.pcap"
    subprocess.run(["tcpdump", "-r", str(all_pcap), "-w", str(udp), "udp"],
                   check=True, capture_output=True)  # fmt: skip
    expected = count_packets(udp)
    assert 0 < expected < count_packets(all_pcap)

    def new_packets() -> int:
        return _packets(seaweedfs, set(_objects(seaweedfs, prefix)) - before, tmp_path)

    wait_for(f"{expected} udp packets in the bucket", lambda: new_packets() >= expected, 120)
    assert new_packets() == expected


def _capture_state(c: Container) -> dict[str, Any]:
    out = c.run(["rollcap", "status", "--json"], check=False).stdout
    data: dict[str, Any] = json.loads(out)["capture"]
    return data


def _status(c: Container, *user: str) -> Result:
    return c.run([*user, "rollcap", "status"], check=False)


@needs_daemons
def test_status_exit_codes_under_the_units(
    container: Container, sys_veth: Veth, seaweedfs: SeaweedFS, release: str
) -> None:
    """0 capturing and uploading; 4 for a user who may not read the state (never NOT
    RUNNING); 5 running but waiting for a mistyped interface; 3 stopped."""
    c = container
    good = _config(sys_veth, seaweedfs, _prefix(release))
    c.write("/etc/rollcap.toml", good)
    c.run(["systemctl", "start", "rollcap-capture", "rollcap-offload"], timeout=90)
    wait_for("status 0", lambda: _status(c).returncode == 0, 60)
    nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    r = _status(c, *nobody)
    assert r.returncode == 4, r.stdout + r.stderr
    assert "NOT RUNNING" not in r.stdout and "UNKNOWN" in r.stdout
    c.write("/etc/rollcap.toml", good.replace(f'interface = "{sys_veth.b}"', 'interface = "uxbb"'))
    c.run(["systemctl", "restart", "rollcap-capture"], timeout=90)
    wait_for("status 5", lambda: _status(c).returncode == 5, 60)
    assert "waiting-for-interface" in _status(c).stdout
    c.run(["systemctl", "stop", "rollcap-capture"], timeout=60)
    r = _status(c)
    assert r.returncode == 3 and "capture: NOT RUNNING" in r.stdout
    c.write("/etc/rollcap.toml", good)


# ------------------------------------------------ upgrade, remove, purge ----------


def test_remove_stops_the_services(container: Container) -> None:
    c = container
    c.run(["apt-get", "remove", "-y", "rollcap"], env={"DEBIAN_FRONTEND": "noninteractive"})
    for unit in ("rollcap-capture", "rollcap-offload"):
        assert unit_props(c, unit, "ActiveState")["ActiveState"] in ("inactive", "failed")
        assert c.run(["pgrep", "-f", "rollcap"], check=False).stdout == ""
    assert c.path("/etc/rollcap.toml").exists()  # remove keeps the config
    assert not c.path("/usr/bin/rollcap").exists()


def test_purge_keeps_archived_captures_and_leaves_nothing_else_behind(
    container: Container,
) -> None:
    c = container
    c.path(KEPT).parent.mkdir(parents=True, exist_ok=True)
    c.path(KEPT).write_bytes(b"evidence")
    partial = c.path("/var/lib/rollcap/archive/.rollcap-tmp/partial.pcap.zst")
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(b"half an upload")
    out = c.run(["apt-get", "purge", "-y", "rollcap"], env={"DEBIAN_FRONTEND": "noninteractive"})
    assert "kept the captures in /var/lib/rollcap/archive" in out.stdout + out.stderr
    assert c.path(KEPT).read_bytes() == b"evidence"
    assert not partial.parent.exists()  # the archive's temp directory is not a capture
    # rollcap's uid is gone: nobody who gets it later may read them
    st = c.run(["stat", "-c", "%U %G %a", KEPT]).stdout.split()
    assert st[:2] == ["root", "root"] and int(st[2], 8) & 0o077 == 0
    _assert_nothing_else_left(c, except_archive=True)


KEPT = "/var/lib/rollcap/archive/h/2026/11/26/h-eth0-20261126T120000Z-000001.pcap.zst"


@needs_daemons
def test_reinstall_after_purge_archives_into_the_kept_archive(
    container: Container, debs: Debs, sys_veth: Veth, all_pcap: Path
) -> None:
    """The kept captures go back to the new rollcap user: offload archives at once
    (it sat in destination-down, Permission denied, until a manual chown -R)."""
    c = container
    c.run(["apt-get", "install", "-y", f"/root/{debs.new.name}"],
          env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=300)  # fmt: skip
    assert c.run(["stat", "-c", "%U %G", KEPT]).stdout.split() == ["rollcap", "rollcap"]
    c.write("/etc/rollcap.toml", f"""\
[capture]
interface = "{sys_veth.b}"
rotate_seconds = 10
hostname = "reinstall"
[offload]
rescan_seconds = 2
""")  # the default destination: file:///var/lib/rollcap/archive
    c.run(["systemctl", "start", "rollcap-capture", "rollcap-offload"], timeout=90)
    try:
        wait_for("capture's tcpdump", lambda: tcpdump_child(c, "rollcap-capture.service"))
        sys_veth.replay(all_pcap, pps=REPLAY_PPS)

        def archived() -> list[str]:
            return c.run(["find", "/var/lib/rollcap/archive/reinstall", "-name", "*.pcap*"],
                         check=False).stdout.split()  # fmt: skip

        wait_for("an object in the kept archive", archived, 90)
        r = c.run(["rollcap", "status", "--json"], check=False)
        assert json.loads(r.stdout)["offload"]["state"] == "running", r.stdout
    finally:
        c.run(["systemctl", "stop", "rollcap-capture", "rollcap-offload"], timeout=90)
    c.run(["apt-get", "purge", "-y", "rollcap"], env={"DEBIAN_FRONTEND": "noninteractive"})
    c.run(["rm", "-rf", "/var/lib/rollcap"])  # what the purge message leaves to the operator
    _assert_nothing_else_left(c, except_archive=False)


def _assert_nothing_else_left(c: Container, except_archive: bool) -> None:
    assert c.run(["getent", "passwd", "rollcap"], check=False).returncode == 2
    assert c.run(["getent", "group", "rollcap"], check=False).returncode == 2
    assert c.run(["getent", "passwd", "rollcap-capture"], check=False).returncode == 2
    gone = ["/etc/rollcap.toml", "/etc/credstore/rollcap-s3-credentials",
            "/var/spool/rollcap", "/usr/lib/rollcap", METRICS,
            f"{NODE_EXPORTER_DIR}/rollcap-capture.prom",
            f"{NODE_EXPORTER_DIR}/rollcap-offload.prom"]  # fmt: skip
    for path in gone if except_archive else [*gone, "/var/lib/rollcap"]:
        assert not c.path(path).exists() and not c.path(path).is_symlink(), path
    left = c.run(["find", "/etc/systemd", "/lib/systemd", "/usr/lib/systemd", "/usr/lib/sysusers.d",
                  "/usr/lib/tmpfiles.d", "-name", "*rollcap*"]).stdout  # fmt: skip
    assert left == ""
    # exits 1 when nothing matches
    units = c.run(["systemctl", "list-unit-files", "--no-legend", "rollcap*"], check=False).stdout
    assert units.strip() == ""
    assert c.run(["dpkg-query", "-W", "rollcap"], check=False).returncode != 0


@needs_daemons
def test_upgrade_from_the_previous_release_keeps_config_and_spool(
    container: Container,
    debs: Debs,
    sys_veth: Veth,
    seaweedfs: SeaweedFS,
    all_pcap: Path,
    tmp_path: Path,
    release: str,
) -> None:
    """On the purged system: 0.1.0 captures into its spool with offload stopped,
    then `apt install` of this package. The edited config is kept, the running
    capture is restarted on the new code, the enabled units stay enabled, and
    the new offload uploads every packet the old capture spooled."""
    c, prefix = container, _prefix(release) + "-upgrade"
    apt_install(c, debs.old)
    assert c.run(["rollcap", "--version"]).stdout.strip() == f"rollcap {debs.old_version}"
    c.write("/etc/rollcap.toml", _config(sys_veth, seaweedfs, prefix))
    c.run(["install", "-d", "-m", "0700", "/etc/credstore"])
    c.write("/etc/credstore/rollcap-s3-credentials",
            f"[default]\naws_access_key_id = {seaweedfs.access_key}\n"
            f"aws_secret_access_key = {seaweedfs.secret_key}\n", 0o600)  # fmt: skip
    conf = c.path("/etc/rollcap.toml")
    edited = hashlib.sha256(conf.read_bytes()).hexdigest()
    c.run(["systemctl", "enable", "rollcap-capture", "rollcap-offload"])
    c.run(["systemctl", "start", "rollcap-capture"], timeout=90)
    wait_for("0.1.0's tcpdump", lambda: tcpdump_child(c, "rollcap-capture.service", "tcpdump"))
    sys_veth.replay(all_pcap, pps=REPLAY_PPS)  # ~1.3 MB: one rotation at 1 MB
    time.sleep(SETTLE)

    def spooled() -> set[str]:
        return set(c.run(["ls", f"{SPOOL}/ready"]).stdout.split())

    before = wait_for("a finished capture in the spool", spooled)
    pid = unit_props(c, "rollcap-capture", "MainPID")["MainPID"]

    # the shipped sample changed and the operator edited theirs: keep it, as an
    # operator answering dpkg's question would
    apt_install(c, debs.new, "--force-confdef", "--force-confold")
    assert c.run(["rollcap", "--version"]).stdout.strip() == f"rollcap {upstream(debs.new_version)}"
    assert hashlib.sha256(conf.read_bytes()).hexdigest() == edited
    for leftover in ("/etc/rollcap.toml.dpkg-new", "/etc/rollcap.toml.dpkg-old"):
        assert not c.path(leftover).exists()
    assert spooled() >= before  # type: ignore[operator]
    capture = unit_props(c, "rollcap-capture", "UnitFileState", "ActiveState", "MainPID")
    assert capture["UnitFileState"] == "enabled" and capture["ActiveState"] == "active"
    assert capture["MainPID"] != pid  # restarted on the new code
    # ... without root, and every spool file moved to its new owner
    wait_for("the new capture's tcpdump", lambda: tcpdump_child(c, "rollcap-capture.service"))
    _check_capture_only(c)
    owners = c.run(["find", SPOOL, "-mindepth", "2", "-type", "f", "-printf", "%P %u\n"]).stdout
    wrong = [ln for ln in owners.splitlines()
             if not ln.startswith(("state/", "tmp/")) and not ln.endswith(" rollcap-capture")]
    assert not wrong, f"spool files not moved to rollcap-capture: {wrong}"
    assert c.path(f"{SPOOL}/capture/capture-counters.json").exists()
    assert not c.path(f"{SPOOL}/state/capture-counters.json").exists()
    offload = unit_props(c, "rollcap-offload", "UnitFileState", "ActiveState")
    assert offload == {"UnitFileState": "enabled", "ActiveState": "inactive"}  # not started

    c.run(["systemctl", "start", "rollcap-offload"], timeout=90)
    c.run(["systemctl", "stop", "rollcap-capture"], timeout=60)
    expected = count_packets(all_pcap)
    wait_for(
        f"{expected} packets in the bucket",
        lambda: _packets(seaweedfs, list(_objects(seaweedfs, prefix)), tmp_path) >= expected,
        120,
    )
    assert _packets(seaweedfs, list(_objects(seaweedfs, prefix)), tmp_path) == expected


def test_lintian_reports_no_errors(debs: Debs) -> None:
    """Warnings are tolerated (and listed on failure); errors are not."""
    r = subprocess.run(
        ["lintian", "--fail-on", "error", str(debs.new)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr


def _check_capture_only(c: Container) -> None:
    """Every process of the capture unit, tcpdump included: rollcap-capture's uid
    (real, effective, saved, fs) and no effective capability but CAP_NET_RAW."""
    uid = c.run(["id", "-u", "rollcap-capture"]).stdout.strip()
    procs = _unit_processes(c, "rollcap-capture.service")
    assert "tcpdump" in {p["Name"] for p in procs.values()}, procs
    for pid, st in procs.items():
        assert st["Uid"].split() == [uid] * 4, (pid, st["Name"], st["Uid"])
        assert int(st["CapEff"], 16) & ~(1 << 13) == 0, (pid, st["Name"], st["CapEff"])
