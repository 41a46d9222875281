"""`rollcap index --compact` against what real offloads store.

Three hosts' real `rollcap offload` processes (flow_index on) store prepared
spools of real packets into one SeaweedFS bucket. Then the real CLI:
`rollcap flows` and `rollcap fetch --filter` before the compaction, `rollcap
index --compact`, and the same commands again: the same flows, the same
packets out, with fewer GETs (counted by a botocore event hook loaded into
each CLI process through sitecustomize, independent of rollcap's counts).
A capture stored after the compaction is still found (from its own
summary), and a re-run writes a new generation that holds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from rollcap.flows import compact
from tests.integration.test_flows_command import T1, _prepare, _run_offload, _spool
from tests.integration.test_index_daemon import keys_in_all
from tests.integration.test_offload import new_bucket, write_config
from tests.support.offloaded import REPO
from tests.support.seaweedfs import SeaweedFS

pytestmark = pytest.mark.integration

HOSTS = ("web1", "web2", "db1")
N = 3  # captures per host, one per slot

# counts the S3 GetObject calls of one CLI process (botocore's event system)
_HOOK = '''
import atexit, os
import botocore.session
_n = [0]
_orig = botocore.session.Session.create_client
def _create(self, *a, **k):
    c = _orig(self, *a, **k)
    def _count(**_kw):
        _n[0] += 1
    c.meta.events.register("before-call.s3.GetObject", _count)
    return c
botocore.session.Session.create_client = _create
def _write():
    with open(os.environ["ROLLCAP_TEST_GETS"], "a") as f:
        f.write(f"{_n[0]}\\n")
atexit.register(_write)
'''


def _cli(cfg: Path, env: dict[str, str], hook: Path, *args: str
         ) -> tuple[subprocess.CompletedProcess[str], int]:  # fmt: skip
    """A `python -m rollcap` process and the GETs it made."""
    counts = hook / "gets.txt"
    counts.unlink(missing_ok=True)
    p = subprocess.run(
        [sys.executable, "-m", "rollcap", *args, "--config", str(cfg)], cwd=REPO,
        env={**os.environ, **env, "PYTHONPATH": f"{hook}:{REPO}",
             "ROLLCAP_TEST_GETS": str(counts)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return p, sum(int(x) for x in counts.read_text().split())


def test_compaction_gives_the_same_answers_with_fewer_gets(
    seaweedfs: SeaweedFS, all_pcap: Path, tmp_path: Path
) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_HOOK)
    bucket = new_bucket(seaweedfs)
    env = seaweedfs.env()
    cfgs = {}
    for host in HOSTS:
        spool = _spool(tmp_path / host)
        _prepare([spool], all_pcap, N, host=host)
        cfg = write_config(tmp_path / f"{host}.toml", spool, f"s3://{bucket}/caps",
                           endpoint_url=seaweedfs.endpoint, region="us-east-1",
                           flow_index=True)  # fmt: skip
        cfg.write_text(cfg.read_text().replace('hostname = "', f'hostname = "{host}" #', 1))
        _run_offload(cfg, spool, env, N)
        cfgs[host] = cfg
    cfg = cfgs["db1"]  # any config naming the bucket: the analyst's
    since, until = T1, T1 + timedelta(minutes=10 * N)
    win = ("--since", since.isoformat(), "--until", until.isoformat())
    target = _busy_udp_address(seaweedfs, bucket)

    def flows() -> tuple[dict[str, Any], int]:
        p, gets = _cli(cfg, env, hook, "flows", "--json", "--ip", target, *win)
        assert p.returncode == 0, p.stderr
        out = json.loads(p.stdout)
        assert isinstance(out, dict)
        out["stderr"] = p.stderr
        return out, gets

    def fetch(name: str) -> tuple[str, str, int]:
        out = tmp_path / name
        p, gets = _cli(cfg, env, hook, "fetch", *win, "-w", str(out), "--force", "-v",
                       "--filter", f"host {target}")  # fmt: skip
        assert p.returncode == 0, p.stderr
        return hashlib.sha256(out.read_bytes()).hexdigest(), p.stderr, gets

    plain, plain_gets = flows()
    assert plain["flows"] and plain["index"]["from_compaction"] == 0
    assert plain["index"]["summaries_read"] == len(HOSTS) * N
    pcap0, err0, fetch_gets0 = fetch("plain.pcap")

    p, _g = _cli(cfg, env, hook, "index", "--compact", *win)
    assert p.returncode == 0, p.stderr
    assert f"{N} slots compacted ({len(HOSTS) * N} summaries)" in p.stdout
    comp_keys = keys_in_all(seaweedfs, bucket, compact.root("caps"))
    assert len(comp_keys) == N and all("~" not in k for k in comp_keys)

    comp, comp_gets = flows()
    assert comp["flows"] == plain["flows"] and comp["hosts"] == plain["hosts"]
    assert comp["index"]["compactions"] == N, comp["stderr"]
    assert comp["index"]["from_compaction"] == len(HOSTS) * N
    p, _g = _cli(cfg, env, hook, "flows", "--json", "--ip", target, *win, "--no-compaction")
    assert p.returncode == 0 and json.loads(p.stdout)["index"]["from_compaction"] == 0
    pcap1, err1, fetch_gets1 = fetch("comp.pcap")
    assert pcap1 == pcap0
    assert f"{len(HOSTS) * N} more summaries from {N} slot compactions (" in err1, err1
    # the summaries' GETs are gone: one per slot instead of one per capture
    # (the manifest entries and the downloaded captures are read as before)
    assert plain_gets - comp_gets == len(HOSTS) * N - N, (plain_gets, comp_gets)
    assert fetch_gets0 - fetch_gets1 == len(HOSTS) * N - N, (fetch_gets0, fetch_gets1, err0)

    # a host stores more after the compaction: found from its own summary ...
    late = _spool(tmp_path / "late")
    _prepare([late], all_pcap, N, host="web3")
    lcfg = write_config(tmp_path / "late.toml", late, f"s3://{bucket}/caps",
                        endpoint_url=seaweedfs.endpoint, region="us-east-1",
                        flow_index=True)  # fmt: skip
    lcfg.write_text(lcfg.read_text().replace('hostname = "', 'hostname = "web3" #', 1))
    _run_offload(lcfg, late, env, N)
    more, _g = flows()
    assert {f["host"] for f in more["flows"]} == {f["host"] for f in plain["flows"]} | {"web3"}
    assert more["index"]["from_compaction"] == len(HOSTS) * N
    assert more["index"]["summaries_read"] == (len(HOSTS) + 1) * N
    # ... and a second run writes generation 2 of each slot, holding it too
    p, _g = _cli(cfg, env, hook, "index", "--compact", *win, "-v")
    assert p.returncode == 0, p.stderr
    assert f"{N} slots compacted ({(len(HOSTS) + 1) * N} summaries)" in p.stdout
    assert len(keys_in_all(seaweedfs, bucket, compact.root("caps"))) == 2 * N
    again, _g = flows()
    assert again["flows"] == more["flows"]
    assert again["index"]["from_compaction"] == (len(HOSTS) + 1) * N
    p, _g = _cli(cfg, env, hook, "index", "--compact", *win)
    assert p.returncode == 0 and f"0 slots compacted (0 summaries), {N} already current" in p.stdout


def _busy_udp_address(seaweedfs: SeaweedFS, bucket: str) -> str:
    """An address in the stored flows (every host replays the same packets)."""
    import gzip
    from collections import Counter

    from rollcap.flows import index as flowindex

    client = seaweedfs.client()
    seen: Counter[str] = Counter()
    for key in keys_in_all(seaweedfs, bucket, flowindex.root("caps")):
        body = gzip.decompress(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        for line in body.decode().splitlines()[1:]:
            f = json.loads(line)
            if f["proto"] == 17 and f["ip"] == 4:
                seen.update([f["src"], f["dst"]])
    # not the commonest: one that some captures lack, so fetch skips some
    return sorted(seen.items(), key=lambda kv: (kv[1], kv[0]))[len(seen) // 2][0]
