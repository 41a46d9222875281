"""Case 7: junk in ready/ is quarantined or refused with a reason; none of it is uploaded
or followed, and the offload keeps working (valid files before and after are uploaded)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.faults.pcaprec import synth
from tests.faults.proc import wait_for
from tests.faults.rig import Rig


def _name(rig: Rig, seq: int) -> str:
    start = datetime.fromtimestamp(time.time() - 600 + seq, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{start}-{seq:06d}_{rig.host}_veth0.pcap"


def _sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.case("7. junk in ready/")
@pytest.mark.hard_timeout(120)
def test_junk_is_quarantined_never_uploaded(offload_rig: Rig, tmp_path: Path,
                                            reliability) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    rig = offload_rig
    rig.configure()
    for d in ("ready", "work", "quarantine", "tmp", "state"):
        (rig.spool / d).mkdir(mode=0o770)
    src = rig.pcap.read_bytes()
    good1 = synth(src, 1, time.time() - 700)
    good2 = synth(src, 1, time.time() - 650)
    outside = tmp_path / "outside.pcap"  # a valid pcap outside the spool
    outside.write_bytes(synth(src, 1, time.time() - 800))
    pcapng = tmp_path / "x.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", "-c", "50", str(rig.pcap), str(pcapng)],
                   check=True, capture_output=True)  # fmt: skip
    ng = next(iter(sorted(tmp_path.glob("x*.pcapng"))))
    shadow_sha = _sha("/etc/shadow")
    r = rig.ready
    junk: dict[str, str] = {}

    def put(seq: int, what: str) -> Path:
        p = r / _name(rig, seq)
        junk[p.name] = what
        return p

    (r / _name(rig, 1)).write_bytes(good1)  # a valid file first
    put(2, "not a pcap").write_text("hello, I am not a capture\n" * 100)
    put(3, "truncated header").write_bytes(src[:13])
    put(4, "pcapng").write_bytes(ng.read_bytes())
    put(5, "symlink to /etc/shadow").symlink_to("/etc/shadow")
    put(6, "symlink to a valid pcap outside the spool").symlink_to(outside)
    os.mkfifo(put(7, "FIFO"))
    put(8, "0-byte file").write_bytes(b"")
    other = put(9, "valid pcap owned by another user (nobody)")
    other.write_bytes(synth(src, 1, time.time() - 900))
    os.chown(other, 65534, 65534)
    os.chmod(other, 0o600)
    os.mkdir(put(10, "a directory"))
    other_sha = hashlib.sha256(other.read_bytes()).hexdigest()
    outside_sha = _sha(str(outside))
    rig.watch()
    off = rig.daemon("offload")
    off.start()
    good = {hashlib.sha256(good1).hexdigest()}

    def stored() -> set[str]:
        return {o.content_sha256 for o in rig.bucket().objects}

    wait_for(lambda: good <= stored(), 60, 0.5, what="the valid file before the junk")
    time.sleep(3)  # the junk had its chance
    # still working after the junk? Renamed in whole, as capture hands off: a
    # write_bytes into ready/ can be seen (and judged) while still empty
    staged = rig.spool / "work" / _name(rig, 11)
    staged.write_bytes(good2)
    os.rename(staged, r / staged.name)
    good.add(hashlib.sha256(good2).hexdigest())
    wait_for(lambda: good <= stored(), 60, 0.5, what="a valid file placed after the junk")
    time.sleep(2)
    alive = off.running()
    assert off.stop() == 0, off.tail()
    log = off.text()
    quarantined = {p.name.split(".pcap")[0] + ".pcap" for p in rig.quarantine.iterdir()}
    verdicts = []
    unhandled = []
    for name, what in junk.items():
        where = ("quarantined" if name in quarantined
                 else "left in ready/" if (r / name).exists() or (r / name).is_symlink()
                 else "gone")  # fmt: skip
        reason = [ln for ln in log.splitlines() if name in ln]
        verdicts.append(f"{what}: {where}")
        if where == "gone" or not reason:
            unhandled.append(f"{what} ({name}): {where}, log lines: {reason[:2]}")
    objects = stored()
    uploaded_junk = objects - good
    reliability.record(
        runs=1, packets_in=2 * 5374, packets_out=rig.bucket().ledger.unique,
        lost=0 if good <= objects else "valid file missing", duplicated=0,
        notes=f"{len(junk)} junk entries; " + "; ".join(verdicts),
    )  # fmt: skip
    assert _sha("/etc/shadow") == shadow_sha and not Path("/etc/shadow").is_symlink()
    assert Path(outside).exists() and _sha(str(outside)) == outside_sha, "link target touched"
    assert alive, "offload died on the junk"
    assert outside_sha not in objects, "a symlink was followed and uploaded"
    assert other_sha not in objects, "a file owned by another user was uploaded"
    assert not uploaded_junk, f"{len(uploaded_junk)} junk objects uploaded"
    assert not unhandled, "junk without a quarantine/refusal and a logged reason:\n" + "\n".join(
        unhandled
    )
