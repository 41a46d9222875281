"""`fetch --filter` skips captures by their flow summaries, soundly: a
fixed-seed subset of the soundness check (tests/support/soundness.py; the
full run is bench/skip_soundness.py). The summaries are written by a real
`rollcap offload` process (offload.flow_index = true) into SeaweedFS; the
captures are synthetic (IPv4, IPv6 with extension headers, fragments,
VLAN/QinQ, ICMP, SCTP, GRE, ARP, Linux cooked `-i any`, raw IP) and real
ones from tests/data/pcaps. Then the real `rollcap fetch` CLI, with and
without the index, must write exactly the packets tcpdump keeps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rollcap.flows import index as flowindex
from tests.integration.test_offload import Offload, new_bucket, state, write_config
from tests.support import flowpcaps, soundness
from tests.support.cli import run_rollcap
from tests.support.seaweedfs import SeaweedFS

pytestmark = pytest.mark.integration

SEED = 26
FILTERS = int(os.environ.get("ROLLCAP_SOUNDNESS_FILTERS", "300"))
# fetched through the CLI too (with and without the index): output compared
CLI_FILTERS = [
    "host 203.0.113.7",
    "tcp and (port 80 or 443) and not host 10.0.0.1",
    "vlan 20 and udp",
    "ip6 and not icmp6",
    "src net 192.168.0.0/16 or dst portrange 5000-5001",
]


def test_the_index_never_skips_a_capture_holding_a_matching_packet(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    for d in ("work", "ready", "quarantine", "tmp", "state"):
        (spool / d).mkdir(parents=True)
    bucket = new_bucket(seaweedfs)
    n = soundness.make_ready(spool / "ready", tmp_path, SEED, synthetic=24)
    cfg = write_config(
        tmp_path / "rollcap.toml", spool, f"s3://{bucket}/caps",
        endpoint_url=seaweedfs.endpoint, region="us-east-1", flow_index=True,
    )  # fmt: skip
    host = f'hostname = "{soundness.HOST}"'
    cfg.write_text(cfg.read_text().replace('hostname = "testhost"', host))
    p = Offload(cfg, seaweedfs.env()).start()
    try:
        p.wait_for("all stored", lambda: state(spool).get("uploaded_files") == n, timeout=120)
        assert p.stop() == 0
    finally:
        if p.proc is not None and p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(10)
    st = soundness.stored(seaweedfs.client(), bucket, "caps")
    assert len(st.captures) == n and set(st.summaries) == set(st.captures)

    pool4, pool6 = soundness.address_pools(st)
    exprs = flowpcaps.filters(SEED, FILTERS, pool4, pool6) + CLI_FILTERS
    out = soundness.check(st, exprs, tmp_path)
    assert out.missing == [], "\n".join(out.missing[:20])
    # not vacuous: most filters are decided by the index, and it skips a lot
    assert out.decidable >= 0.8 * len(exprs)
    assert out.matched_packets > 1000
    assert out.skipped >= 0.2 * out.pairs, out.why

    # the real CLI: with the index, the same packets as without it and as tcpdump
    env = seaweedfs.env()
    for expr in CLI_FILTERS:
        got = {}
        for flag in ([], ["--no-flow-index"]):
            dest = tmp_path / f"out{len(flag)}.pcap"
            r = run_rollcap(cfg, env, "fetch", "--since", "2026-11-26T00:00:00Z", "--until",
                            "2026-11-27T00:00:00Z", "-i", "eth0", "-w", str(dest), "--force",
                            "-v", *flag, "--filter", expr)  # fmt: skip
            assert r.returncode == 0, r.stderr
            got[bool(flag)] = soundness.packets(dest.read_bytes())
            if not flag:
                assert "flow index: skipped" in r.stderr, r.stderr
        eth = sorted(k for k, c in st.captures.items() if c.linktype == 1)
        want = soundness.tcpdump_packets(soundness.merged([st.pcaps[k] for k in eth]), expr,
                                         tmp_path)  # fmt: skip
        assert got[False] == got[True] == want, expr
    assert flowindex.VERSION == 1
