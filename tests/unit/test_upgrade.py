"""The upgrade from 0.1.0 keeps every spool file and gives it to the new owners,
without following what tcpdump's user may have left in work/."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from rollcap.spool import Spool
from rollcap.upgrade import migrate


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root (CI runs as root)")
def test_old_spool_files_move_to_the_new_owners(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    spool = Spool.at(tmp_path / "spool")
    for d in ("work", "ready", "quarantine", "tmp", "state"):
        (spool.root / d).mkdir(parents=True)
    (spool.state / "capture-counters.json").write_text('{"generation": 7, "seq": 42}')
    (spool.state / "capture.json").write_text("{}")
    (spool.state / "offload.json").write_text("{}")
    live = spool.work / "g000007-20261126T120000-eth0.pcap"
    live.write_bytes(b"\xd4\xc3\xb2\xa1" + b"\0" * 40)
    live.chmod(0o660)
    ready = spool.ready / "20261126T120000Z-000042_h_eth0.pcap"
    ready.write_bytes(b"x" * 100)
    ready.chmod(0o640)
    outside = tmp_path / "outside"
    outside.write_bytes(b"secret")
    outside.chmod(0o600)
    (spool.work / "g000008-20261126T120001-eth0.pcap").symlink_to(outside)
    done = migrate(spool, nobody.pw_uid, nobody.pw_gid)
    assert done, "nothing reported"
    assert (spool.capture_state / "capture-counters.json").read_text().startswith('{"gen')
    assert not (spool.state / "capture.json").exists()
    assert (spool.state / "offload.json").exists()  # offload's own: untouched
    for p in (live, ready, spool.capture_state / "capture-counters.json"):
        st = p.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (
            nobody.pw_uid, nobody.pw_gid, 0o640
        ), p  # fmt: skip
    ost = outside.stat()
    assert (ost.st_uid, stat.S_IMODE(ost.st_mode), outside.read_bytes()) == (0, 0o600, b"secret")
    assert migrate(spool, nobody.pw_uid, nobody.pw_gid) == []  # idempotent
