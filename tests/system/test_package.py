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
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.net import Veth, count_packets
from tests.support.seaweedfs import SeaweedFS
from tests.system.conftest import REPO, Debs
from tests.system.nspawn import Container

pytestmark = pytest.mark.system

SPOOL = "/var/spool/rollcap"
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


def wait_for(what: str, fn: Callable[[], object], timeout: float = 60) -> object:
    """Poll fn until it returns something truthy; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def unit_props(c: Container, unit: str, *props: str) -> dict[str, str]:
    out = c.run(["systemctl", "show", unit, *(f"--property={p}" for p in props)]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def tcpdump_child(c: Container, unit: str) -> tuple[int, str] | None:
    """(pid, command line) of the unit's tcpdump once it has dropped privileges:
    then its interface is open and its filter attached."""
    cg = unit_props(c, unit, "ControlGroup")["ControlGroup"]
    if not cg:
        return None
    script = f"""
uid=$(id -u tcpdump)
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


def apt_install(c: Container, deb: Path) -> None:
    shutil.copy2(deb, c.path("/root") / deb.name)
    c.run(["apt-get", "install", "-y", f"/root/{deb.name}"],
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
    pw = c.run(["getent", "passwd", "rollcap"]).stdout.strip().split(":")
    assert pw[6] == "/usr/sbin/nologin" and int(pw[2]) < 1000
    modes = c.run(["stat", "-c", "%n %a %U %G", SPOOL, *(f"{SPOOL}/{d}" for d in
                   ("work", "ready", "quarantine", "tmp", "state")),
                   "/var/lib/rollcap", "/var/lib/rollcap/archive"]).stdout.splitlines()  # fmt: skip
    assert modes == [
        f"{SPOOL} 751 root rollcap",
        f"{SPOOL}/work 2770 tcpdump rollcap",
        f"{SPOOL}/ready 2770 root rollcap",
        f"{SPOOL}/quarantine 2770 root rollcap",
        f"{SPOOL}/tmp 2770 root rollcap",
        f"{SPOOL}/state 2770 root rollcap",
        "/var/lib/rollcap 750 rollcap rollcap",
        "/var/lib/rollcap/archive 750 rollcap rollcap",
    ]


def test_man_pages_and_conffile(container: Container) -> None:
    c = container
    for page in ("/usr/share/man/man8/rollcap.8.gz", "/usr/share/man/man5/rollcap.toml.5.gz"):
        text = c.run(["sh", "-c", f"zcat {page}"]).stdout
        assert text.startswith(".TH ROLLCAP")
    assert "/etc/rollcap.toml" in c.run(["dpkg-query", "-W", "-f=${Conffiles}", "rollcap"]).stdout
    assert c.path("/etc/rollcap.toml").read_text() == (REPO / "config/rollcap.toml").read_text()
    c.run(["rollcap", "check-config"])  # the shipped default config is valid


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
    """tcpdump -Z under rollcap-capture's exact hardening (no CAP_NET_ADMIN, no
    CAP_DAC_OVERRIDE, @system-service, PrivateDevices, ...) captures every packet,
    with a -B kernel buffer (libpcap sizes its ring; no SO_RCVBUFFORCE needed)."""
    c = container
    work = f"{SPOOL}/work/g000001-probe.pcap"
    _probe_unit(c, "rollcap-capture.service", "rollcap-probe-capture.service", f"""
Type=simple
ExecStart=/usr/bin/tcpdump -i {sys_veth.b} -n -s 262144 -B 8192 -Z tcpdump -C 1000 -w {work}
""")  # fmt: skip
    c.run(["systemctl", "start", "rollcap-probe-capture.service"])
    try:
        wait_for("tcpdump to drop privileges",
                 lambda: tcpdump_child(c, "rollcap-probe-capture.service"))  # fmt: skip
        sys_veth.replay(all_pcap, pps=REPLAY_PPS)
        time.sleep(SETTLE)
    finally:
        c.run(["systemctl", "stop", "rollcap-probe-capture.service"])
    result = unit_props(c, "rollcap-probe-capture.service", "Result")["Result"]
    assert result == "success"
    assert count_packets(c.path(work)) == count_packets(all_pcap)
    # UMask=0007 + setgid work/: group rollcap may read and repair it, others nothing
    assert c.run(["stat", "-c", "%a %U %G", work]).stdout.split() == ["660", "tcpdump", "rollcap"]


def test_reload_signals_the_main_process(container: Container) -> None:
    """ExecReload= works on a minimal Debian (no /bin/kill there) and sends SIGHUP."""
    c = container
    _probe_unit(c, "rollcap-capture.service", "rollcap-probe-reload.service", f"""
Type=simple
ExecStart=/bin/sh -c 'trap "echo hup > {SPOOL}/state/probe-hup; exit 0" HUP; \
  touch {SPOOL}/state/probe-trap; while :; do sleep 0.2; done'
""", keep_reload=True)  # fmt: skip
    c.run(["systemctl", "start", "rollcap-probe-reload.service"])
    try:
        # Type=simple returns at fork: reload only once the trap is in place
        wait_for("the trap", lambda: c.path(f"{SPOOL}/state/probe-trap").exists(), 20)
        c.run(["systemctl", "reload", "rollcap-probe-reload.service"])
        wait_for("SIGHUP to arrive", lambda: c.path(f"{SPOOL}/state/probe-hup").exists(), 20)
    finally:
        c.run(["systemctl", "stop", "rollcap-probe-reload.service"])
        c.run(["rm", "-f", f"{SPOOL}/state/probe-hup", f"{SPOOL}/state/probe-trap",
               "/etc/systemd/system/rollcap-probe-reload.service"])  # fmt: skip


def test_capture_sandbox_can_hand_files_off(container: Container) -> None:
    """What the capture daemon does to tcpdump's files works without CAP_DAC_OVERRIDE
    and CAP_FOWNER: append (repair), take over, chmod, rename to ready/."""
    c = container
    _probe_unit(c, "rollcap-capture.service", "rollcap-probe-handoff.service", f"""
Type=oneshot
ExecStart=/bin/sh -ec 'cd {SPOOL}; f=work/g000001-probe.pcap; : >> $f; \\
  chown root:rollcap $f; chmod 0640 $f; mv $f ready/probe.pcap; \\
  echo "{{}}" > state/probe.json; rm state/probe.json'
""")  # fmt: skip
    r = c.run(["systemctl", "start", "rollcap-probe-handoff.service"], check=False)
    log = c.run(["journalctl", "-u", "rollcap-probe-handoff", "-o", "cat"]).stdout
    assert r.returncode == 0, log
    st = c.run(["stat", "-c", "%a %U %G", f"{SPOOL}/ready/probe.pcap"]).stdout.split()
    assert st == ["640", "root", "rollcap"]


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
  ! cat /etc/credstore/rollcap-s3-credentials 2>/dev/null'
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
    c.run(["systemctl", "reload", "rollcap-capture"])
    wait_for(
        "the capture to log the invalid config",
        lambda: any(
            "snaplen" in str(e.get("MESSAGE", "")) for e in _journal(c, "rollcap-capture", cursor)
        ),
    )
    assert unit_props(c, "rollcap-capture.service", "ActiveState")["ActiveState"] == "active"
    assert tcpdump_child(c, "rollcap-capture.service") == new  # capture went on untouched

    sys_veth.replay(all_pcap, pps=REPLAY_PPS)
    time.sleep(SETTLE)
    c.write("/etc/rollcap.toml", _config(sys_veth, seaweedfs, prefix, filter="udp"))
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
    kept = "/var/lib/rollcap/archive/h/2026/11/26/h-eth0-20261126T120000Z-000001.pcap.zst"
    c.path(kept).parent.mkdir(parents=True, exist_ok=True)
    c.path(kept).write_bytes(b"evidence")
    out = c.run(["apt-get", "purge", "-y", "rollcap"], env={"DEBIAN_FRONTEND": "noninteractive"})
    assert "kept the captures in /var/lib/rollcap/archive" in out.stdout + out.stderr
    assert c.path(kept).read_bytes() == b"evidence"
    # rollcap's uid is gone: nobody who gets it later may read them
    st = c.run(["stat", "-c", "%U %G %a", kept]).stdout.split()
    assert st[:2] == ["root", "root"] and int(st[2], 8) & 0o077 == 0
    c.run(["rm", "-rf", "/var/lib/rollcap"])  # what the message asks the operator to do
    assert c.run(["getent", "passwd", "rollcap"], check=False).returncode == 2
    assert c.run(["getent", "group", "rollcap"], check=False).returncode == 2
    for gone in ("/etc/rollcap.toml", "/etc/credstore/rollcap-s3-credentials",
                 "/var/spool/rollcap", "/var/lib/rollcap", "/usr/lib/rollcap"):  # fmt: skip
        assert not c.path(gone).exists() and not c.path(gone).is_symlink(), gone
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
    wait_for("0.1.0's tcpdump", lambda: tcpdump_child(c, "rollcap-capture.service"))
    sys_veth.replay(all_pcap, pps=REPLAY_PPS)  # ~1.3 MB: one rotation at 1 MB
    time.sleep(SETTLE)

    def spooled() -> set[str]:
        return set(c.run(["ls", f"{SPOOL}/ready"]).stdout.split())

    before = wait_for("a finished capture in the spool", spooled)
    pid = unit_props(c, "rollcap-capture", "MainPID")["MainPID"]

    apt_install(c, debs.new)
    assert c.run(["rollcap", "--version"]).stdout.strip() == f"rollcap {upstream(debs.new_version)}"
    assert hashlib.sha256(conf.read_bytes()).hexdigest() == edited
    for leftover in ("/etc/rollcap.toml.dpkg-new", "/etc/rollcap.toml.dpkg-old"):
        assert not c.path(leftover).exists()
    assert spooled() >= before  # type: ignore[operator]
    capture = unit_props(c, "rollcap-capture", "UnitFileState", "ActiveState", "MainPID")
    assert capture["UnitFileState"] == "enabled" and capture["ActiveState"] == "active"
    assert capture["MainPID"] != pid  # restarted on the new code
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
