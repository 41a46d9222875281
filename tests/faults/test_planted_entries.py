"""Case 12: the spool's own users plant links, hard links, FIFOs and directories.

Both daemons run as in the package: capture (and its tcpdump) as an
unprivileged user with CAP_NET_RAW only, offload as another one without any
capability. As each of these users, the test plants in every spool directory
that user may write entries pointing at files it may not touch (root's, the
other daemon user's) or hard links to its own files outside the spool. Nothing
outside the spool may change owner, mode or content, no planted content may be
uploaded, and every captured packet still reaches the bucket.

tcpdump's user stands in for the capture user here (its own group), nobody
for rollcap, nogroup for the spool group: users that exist on every Debian.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import time
from pathlib import Path

import pytest

from tests.faults.proc import wait_for
from tests.faults.rig import Rig
from tests.faults.users import (
    CAPTURE_USER,
    GROUP,
    NET_RAW,
    NO_CAPS,
    OFFLOAD_USER,
    layout,
    plant,
    setpriv,
)


def _fingerprint(p: Path) -> tuple[int, int, int, str]:
    st = p.stat()
    return st.st_uid, st.st_gid, st.st_mode, hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.case("12. links, FIFOs, directories planted by the spool's users")
@pytest.mark.hard_timeout(240)
def test_planted_entries_are_never_followed_and_stop_nothing(rig: Rig, reliability) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    spool = rig.spool
    # the config must be readable by the daemons' users (pytest's tmp_path is 0700)
    rig.workdir = Path(f"{spool}-etc")
    # targets: readable by nobody but their owner; the directory lets links resolve
    targets = Path(f"{spool}-targets")
    for d in (rig.workdir, targets):
        d.mkdir(mode=0o755)
    try:
        _run(rig, spool, targets, reliability)
    finally:
        shutil.rmtree(targets, ignore_errors=True)
    shutil.rmtree(rig.workdir, ignore_errors=True)  # the logs stay when it failed


def _run(rig: Rig, spool: Path, targets: Path, reliability) -> None:  # type: ignore[no-untyped-def]
    layout(spool)
    rig.configure(capture={"rotate_megabytes": 1}, spool={"group": GROUP})
    secret = {}
    for owner in ("root", CAPTURE_USER, OFFLOAD_USER):
        p = targets / f"{owner}-secret"
        p.write_bytes(f"{owner}'s secret\n".encode() * 100)
        os.chown(p, pwd.getpwnam(owner).pw_uid, 0)
        p.chmod(0o600)
        secret[owner] = p
    for owner in (CAPTURE_USER, OFFLOAD_USER):  # their own, to hard-link (protected_hardlinks)
        p = targets / f"{owner}-own"
        p.write_bytes(b"not a capture, " * 200)
        os.chown(p, pwd.getpwnam(owner).pw_uid, 0)
        p.chmod(0o644)
    before = {p: _fingerprint(p) for p in targets.iterdir()}
    iface = rig.veth.b if rig.veth else "lo"
    # As the capture user (tcpdump's, after an exploit): its own directories.
    plant(CAPTURE_USER, f"""
        import os
        T = {str(targets)!r}
        S = {str(spool)!r}
        w, r, q, c = (os.path.join(S, d) for d in ("work", "ready", "quarantine", "capture"))
        for i, (kind, target) in enumerate([("link", T + "/root-secret"),
                ("link", T + "/{OFFLOAD_USER}-secret"), ("fifo", ""), ("dir", ""),
                ("hard", T + "/{CAPTURE_USER}-own")], start=1):
            for d, name in ((w, f"g00000{{i}}-20250101T00000{{i}}-{iface}.pcap"),
                            (r, f"20250101T00000{{i}}Z-00000{{i}}_h_{iface}.pcap"),
                            (q, f"planted-{{i}}")):
                p = os.path.join(d, name)
                if kind == "link": os.symlink(target, p)
                elif kind == "fifo": os.mkfifo(p)
                elif kind == "dir": os.mkdir(p)
                else: os.link(target, p)
        os.symlink(T + "/root-secret", os.path.join(w, ".overlap-g000006.bin"))
        os.symlink(T + "/root-secret", os.path.join(c, "capture-counters.json"))
    """)  # fmt: skip
    # As rollcap (offload's user): ready/ and quarantine/.
    plant(OFFLOAD_USER, f"""
        import os
        T = {str(targets)!r}
        r, q = (os.path.join({str(spool)!r}, d) for d in ("ready", "quarantine"))
        for i, (kind, target) in enumerate([("link", T + "/root-secret"),
                ("link", T + "/{CAPTURE_USER}-secret"), ("fifo", ""), ("dir", ""),
                ("hard", T + "/{OFFLOAD_USER}-own")], start=11):
            for d, name in ((r, f"20250101T0000{{i:02d}}Z-0001{{i:02d}}_h_{iface}.pcap"),
                            (q, f"planted-{{i}}")):
                p = os.path.join(d, name)
                if kind == "link": os.symlink(target, p)
                elif kind == "fifo": os.mkfifo(p)
                elif kind == "dir": os.mkdir(p)
                else: os.link(target, p)
    """)  # fmt: skip
    planted = {p.name for d in ("work", "ready") for p in (spool / d).iterdir()}
    cap = rig.daemon("capture", wrapper=setpriv(CAPTURE_USER, NET_RAW))
    cap.start()
    rig.wait_capturing(cap)
    off = rig.daemon("offload", wrapper=setpriv(OFFLOAD_USER, NO_CAPS))
    off.start()
    sent = rig.replay(loops=2, pps=15000)
    time.sleep(1.5)
    assert cap.stop(timeout=30) == 0, cap.tail()
    # A directory of the capture user's in ready/ cannot be moved by offload (a
    # directory's rename needs write access to it): skipped with one line.
    stuck = {f"20250101T000004Z-000004_h_{iface}.pcap"}
    wait_for(lambda: set(rig.ready_files()) <= stuck, 90, 0.5,
             what=lambda: f"ready/ to drain: {rig.ready_files()}\n{off.tail()}")  # fmt: skip
    alive = off.running()
    assert off.stop() == 0, off.tail()
    olog = off.text()
    for name in stuck:
        lines = [ln for ln in olog.splitlines() if name in ln]
        assert len(lines) == 1 and "cannot quarantine it" in lines[0], lines
    view = rig.bucket()
    stored = sum(o.packets for o in view.objects)
    left = sorted(p.name for p in (spool / "work").iterdir())
    after = {p: _fingerprint(p) for p in targets.iterdir()}
    secrets_sha = {_fingerprint(p)[3] for p in secret.values()}
    uploaded_secret = [o.key for o in view.objects if o.content_sha256 in secrets_sha]
    reliability.record(
        runs=1, packets_in=sent, packets_out=stored, lost=sent - stored, duplicated=0,
        notes=f"{len(planted)} entries planted in work/ and ready/ as the capture and the "
        f"offload user (+ quarantine/, capture/); left in work/: {left}",
    )  # fmt: skip
    assert after == before, "a file outside the spool changed owner, mode or content"
    assert alive, "offload died on the planted entries"
    assert not uploaded_secret, uploaded_secret
    assert stored == sent, f"{sent - stored} packets did not reach the bucket"
    assert not [n for n in left if n in planted], f"planted entries left in work/: {left}"
    qnames = {p.name for p in (spool / "quarantine").iterdir()}
    assert any(n.startswith("g000004-") for n in qnames), "the planted directory was not moved"
