"""docs/sql/duckdb/ run by real DuckDB (httpfs) over SeaweedFS, against what
`rollcap list --json` answers for the same windows.

The offload's own pipeline stores 10-minute captures of four hosts and
writes their manifest entries: files open at :x0:03, so each spans two
slots, and some span an hour. The queries are read from docs/sql/ (the docs
are what runs). Each answer must equal `rollcap list`: captures counted
once, the same packets. A coverage entry (an idle link's, no object) must
not count as a capture, and entries that break the per-host rules (a name
and body that disagree, a capture key outside the host's own prefix) must be
ignored as `rollcap list` ignores them.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import duckdb_extension_httpfs
import pytest

from rollcap.storage import manifest
from tests.support.archive import NS, ns, read_frames, utc
from tests.support.offloaded import REPO, Offloaded, offload
from tests.support.seaweedfs import SeaweedFS

pytestmark = pytest.mark.integration

SQL = REPO / "docs" / "sql" / "duckdb"
PACKETS = {"web1": 29, "web2": 17, "gap1": 23, "idle1": 11}


def _opens(host: str) -> list[datetime]:
    if host == "idle1":  # hours before every window: seen, never busy
        return [utc(2026, 11, 26, 8, 0, 3) + timedelta(minutes=10 * i) for i in range(3)]
    first = utc(2026, 11, 26, 11, 40, 3) + timedelta(seconds=1 if host == "web2" else 0)
    n = 5 if host == "gap1" else 10  # gap1 stops after 12:20
    return [first + timedelta(minutes=10 * i) for i in range(n)]


def _stamps(host: str, start: datetime) -> list[int]:
    return [ns(start) + NS + i * 20 * NS for i in range(PACKETS[host])]


@pytest.fixture(scope="module")
def fleet(seaweedfs: SeaweedFS, all_pcap: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Offloaded:  # fmt: skip
    files = [(h, s, _stamps(h, s)) for h in PACKETS for s in _opens(h)]
    f = offload(seaweedfs, tmp_path_factory.mktemp("sql"), files, read_frames(all_pcap))
    # idle1's link in the window, as a coverage entry: no object, no packets
    opened = utc(2026, 11, 26, 12, 30, 3)
    cover = manifest.Entry(
        key=f"caps/idle1/2026/11/26/idle1-eth0-{opened:%Y%m%dT%H%M%SZ}-000777.pcap.zst",
        host="idle1", iface="eth0", opened=opened, closed_ts=int(opened.timestamp()) + 600,
        first_ns=None, last_ns=None, packets=0, pcap_bytes=24, size=0, linktype=1,
    )  # fmt: skip
    for key, body in zip(manifest.entry_keys(cover, "caps"), _bodies(cover), strict=True):
        rec = json.loads(gzip.decompress(body))
        rec["has_object"] = False
        _put(seaweedfs, f.bucket, key, rec)
    return f


def _bodies(e: manifest.Entry) -> list[bytes]:
    lo, hi = e.span
    return [manifest.entry_body(e, s) for s in manifest.slots(lo, hi)]


def _put(seaweedfs: SeaweedFS, bucket: str, key: str, rec: dict[str, Any]) -> None:
    body = gzip.compress((json.dumps(rec) + "\n").encode(), mtime=0)
    seaweedfs.client().put_object(Bucket=bucket, Key=key, Body=body)


@pytest.fixture
def db(seaweedfs: SeaweedFS, fleet: Offloaded) -> Iterator[duckdb.DuckDBPyConnection]:
    ext = (Path(duckdb_extension_httpfs.__file__).parent / "extensions"
           / f"v{duckdb.__version__}" / "httpfs.duckdb_extension")  # fmt: skip
    con = duckdb.connect()
    con.execute(f"INSTALL '{ext}'; LOAD httpfs;")  # from the wheel: no download
    env = seaweedfs.env()
    con.execute(
        f"CREATE SECRET (TYPE s3, KEY_ID '{env['AWS_ACCESS_KEY_ID']}', "
        f"SECRET '{env['AWS_SECRET_ACCESS_KEY']}', ENDPOINT '127.0.0.1:{seaweedfs.s3_port}', "
        "URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')"
    )
    con.execute((SQL / "params.sql").read_text())  # every variable the queries read
    con.execute(f"SET VARIABLE bucket = '{fleet.bucket}'")
    yield con
    con.close()


def _run(con: duckdb.DuckDBPyConnection, name: str, since: datetime, until: datetime,
         **variables: str) -> list[dict[str, Any]]:  # fmt: skip
    """entries.sql for [since, until), then docs/sql/duckdb/<name>; rows as dicts."""
    con.execute(f"SET VARIABLE since = TIMESTAMP '{since:%Y-%m-%d %H:%M:%S}'")
    con.execute(f"SET VARIABLE until = TIMESTAMP '{until:%Y-%m-%d %H:%M:%S}'")
    for k, v in variables.items():
        con.execute(f"SET VARIABLE {k} = {v}")
    con.execute((SQL / "entries.sql").read_text())
    r = con.execute((SQL / name).read_text())
    cols = [d[0] for d in r.description]
    return [dict(zip(cols, row, strict=True)) for row in r.fetchall()]


def _list(f: Offloaded, since: datetime, until: datetime) -> dict[str, Any]:
    p = subprocess.run(
        [sys.executable, "-m", "rollcap", "list", "--config", str(f.config), "--json",
         "--since", since.isoformat(), "--until", until.isoformat()],
        cwd=REPO, env=f.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode in (0, 1), p.stderr
    doc: dict[str, Any] = json.loads(p.stdout)
    return doc


def test_params_sets_every_variable_the_queries_read() -> None:
    used = set()
    for f in SQL.glob("*.sql"):
        used |= set(re.findall(r"getvariable\('(\w+)'\)", f.read_text()))
    params = set(re.findall(r"SET VARIABLE (\w+)", (SQL / "params.sql").read_text()))
    derived = {v for name in ("entries.sql", "hosts_without_captures.sql", "flows.sql")
               for v in re.findall(r"SET VARIABLE (\w+)", (SQL / name).read_text())}
    assert used == params | derived


@pytest.mark.parametrize(("since", "until"), [
    (utc(2026, 11, 26, 11), utc(2026, 11, 26, 14)),  # whole hours
    (utc(2026, 11, 26, 11, 45), utc(2026, 11, 26, 13, 25)),  # cut mid-slot at both ends
])  # fmt: skip
def test_captures_per_host_and_hour_equal_rollcap_list(
    db: duckdb.DuckDBPyConnection, fleet: Offloaded, since: datetime, until: datetime
) -> None:
    rows = _run(db, "captures_per_host_hour.sql", since, until)
    got = {(r["host"], r["hour"].replace(tzinfo=since.tzinfo)): (r["captures"], r["packets"])
           for r in rows}  # fmt: skip
    expected: dict[tuple[str, datetime], tuple[int, int]] = {}
    hour = since.replace(minute=0)
    while hour < until:
        lo, hi = max(hour, since), min(hour + timedelta(hours=1), until)
        caps = _list(fleet, lo, hi)["captures"]
        for host in {c["host"] for c in caps}:
            mine = [c for c in caps if c["host"] == host]
            assert len({c["key"] for c in mine}) == len(mine)
            expected[(host, hour)] = (len(mine), sum(c["packets"] for c in mine))
        hour += timedelta(hours=1)
    assert got == expected
    # the captures that span 12:50-13:00:03 count in both hours, once in each
    assert got[("web1", utc(2026, 11, 26, 13))][0] >= 1
    assert got[("web1", utc(2026, 11, 26, 12))] == (6, 6 * PACKETS["web1"])


@pytest.mark.parametrize("minute", [
    utc(2026, 11, 26, 12, 9), utc(2026, 11, 26, 12, 10), utc(2026, 11, 26, 13, 0),
    utc(2026, 11, 26, 12, 25),
])  # fmt: skip
def test_objects_covering_a_minute_equal_rollcap_list(
    db: duckdb.DuckDBPyConnection, fleet: Offloaded, minute: datetime
) -> None:
    until = minute + timedelta(minutes=1)
    rows = _run(db, "objects_covering_minute.sql", minute, until,
                minute=f"TIMESTAMP '{minute:%Y-%m-%d %H:%M:%S}'")  # fmt: skip
    caps = _list(fleet, minute, until)["captures"]
    assert Counter((r["key"], r["packets"], r["size"]) for r in rows) == Counter(
        (c["key"], c["packets"], c["size"]) for c in caps
    )
    assert rows  # every minute chosen holds packets of some host


@pytest.mark.parametrize(("since", "until", "without"), [
    (utc(2026, 11, 26, 12, 30), utc(2026, 11, 26, 13, 30), ["gap1", "idle1"]),
    (utc(2026, 11, 26, 12, 0), utc(2026, 11, 26, 12, 10), ["idle1"]),
    (utc(2026, 11, 26, 15, 0), utc(2026, 11, 26, 15, 30), ["gap1", "idle1", "web1", "web2"]),
])  # fmt: skip
def test_hosts_without_captures_equal_rollcap_list(
    db: duckdb.DuckDBPyConnection, fleet: Offloaded, since: datetime, until: datetime,
    without: list[str],
) -> None:  # fmt: skip
    rows = _run(db, "hosts_without_captures.sql", since, until)
    listed = _list(fleet, since, until)["coverage"]["hosts_without_capture"]
    assert [r["host"] for r in rows] == sorted(listed) == without


def test_entries_that_break_the_host_rules_are_ignored(
    db: duckdb.DuckDBPyConnection, fleet: Offloaded, seaweedfs: SeaweedFS
) -> None:
    """A host may write only entries named "HOST~..." (IAM); SQL must still refuse
    an entry whose body names another host, or whose capture lies outside
    {prefix}/{host}/, as `rollcap list` does."""
    since, until = utc(2026, 11, 26, 12), utc(2026, 11, 26, 13)
    before = _run(db, "captures_per_host_hour.sql", since, until)
    opened = utc(2026, 11, 26, 12, 30, 3)
    real = manifest.Entry(
        key=f"caps/web1/2026/11/26/web1-eth0-{opened:%Y%m%dT%H%M%SZ}-000901.pcap.zst",
        host="web1", iface="eth0", opened=opened, closed_ts=int(opened.timestamp()) + 60,
        first_ns=ns(opened) + NS, last_ns=ns(opened) + 30 * NS, packets=1000, pcap_bytes=9999,
        size=999, linktype=1,
    )  # fmt: skip
    key = manifest.entry_keys(real, "caps")[0]
    body = json.loads(gzip.decompress(manifest.entry_body(real)))
    forged = {
        # web1's name, web2's body: web1 speaking for web2
        key.replace("-000901.", "-000902."): {**body, "host": "web2",
                                              "key": body["key"].replace("000901", "000902")},
        # web1's own name and body, another host's capture
        key.replace("-000901.", "-000903."): {
            **body, "key": "caps/web2/2026/11/26/web2-eth0-20261126T123003Z-000903.pcap.zst"},
        # outside the prefix
        key.replace("-000901.", "-000904."): {**body, "key": "elsewhere/web1/x-000904.pcap.zst"},
    }  # fmt: skip
    prefix = manifest.slot_prefix("caps", manifest.slot_of(opened.timestamp()))
    try:
        for k, rec in forged.items():
            assert k.startswith(prefix + "web1~")
            _put(seaweedfs, fleet.bucket, k, rec)
        assert _run(db, "captures_per_host_hour.sql", since, until) == before
        rows = _run(db, "objects_covering_minute.sql", opened, opened + timedelta(minutes=1),
                    minute=f"TIMESTAMP '{opened.replace(second=0):%Y-%m-%d %H:%M:%S}'")  # fmt: skip
        assert not any(r["key"].endswith(("000902.pcap.zst", "000903.pcap.zst",
                                          "000904.pcap.zst")) for r in rows)  # fmt: skip
        # the same entry, well-formed, does count: the checks are what refused the others
        _put(seaweedfs, fleet.bucket, key, body)
        after = {(r["host"], r["hour"]): r["captures"]
                 for r in _run(db, "captures_per_host_hour.sql", since, until)}  # fmt: skip
        assert after[("web1", datetime(2026, 11, 26, 12))] == 7
    finally:
        client = seaweedfs.client()
        for k in [*forged, key]:
            client.delete_object(Bucket=fleet.bucket, Key=k)
