"""Metrics end to end: capture and offload against a real SeaweedFS, scraped by
Debian's real node_exporter (textfile collector) and Prometheus (the HTTP
endpoints too); the numbers Prometheus reports are what reached the bucket."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from rollcap.config.load import parse_config
from rollcap.metrics import publish
from tests.integration.capture_daemon import CaptureDaemon
from tests.integration.test_offload import Offload, keys_in, new_bucket, state
from tests.support.net import Veth, count_packets
from tests.support.prometheus import (
    PROMTOOL,
    NodeExporter,
    Prometheus,
    free_port,
    http_get,
    need,
    wait_until,
)
from tests.support.seaweedfs import SeaweedFS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "packaging" / "prometheus" / "rollcap.rules.yml"
DASHBOARD = REPO / "packaging" / "grafana" / "rollcap.json"
PACKETS = 5374  # in all_pcap
LOOPS = 3


def promtool_check(exposition: bytes, what: str) -> None:
    r = subprocess.run(
        [need(PROMTOOL), "check", "metrics"], input=exposition, capture_output=True
    )
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 0 and not out.strip(), f"promtool check metrics on {what}:\n{out}"


def samples(exposition: str, name: str) -> dict[str, float]:
    """{label part: value} of the samples of one metric in a text exposition."""
    out = {}
    for line in exposition.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            series, value = line.rsplit(" ", 1)
            out[series[len(name) :]] = float(value)
    return out


def test_prometheus_sees_what_reached_seaweedfs(
    veth: Veth, all_pcap: Path, base: Path, seaweedfs: SeaweedFS
) -> None:
    bucket = new_bucket(seaweedfs)
    textfiles = base / "textfile"  # node_exporter's: no rollcap process writes here
    textfiles.mkdir()
    own = base / "metrics"  # rollcap's: a directory per daemon
    for daemon in ("capture", "offload"):
        (own / daemon).mkdir(parents=True)
    cap_port, off_port = free_port(), free_port()
    # rotate_seconds 10: the quiet-link switch hands off the last file ~13 s after
    # the replay, so both daemons keep running (and serving /metrics) to the end
    cap = CaptureDaemon(base, veth.b, rotate_megabytes=1, rotate_seconds=10, offload={
        "destination": f"s3://{bucket}/metrics", "endpoint_url": seaweedfs.endpoint,
        "region": "us-east-1",
    }, metrics={
        "textfile_directory": str(own), "interval_seconds": 1,
        "capture_listen": f"127.0.0.1:{cap_port}", "offload_listen": f"127.0.0.1:{off_port}",
    })  # fmt: skip
    node = NodeExporter(textfiles)
    prom = Prometheus(
        {"node": f"127.0.0.1:{node.port}", "rollcap-capture": f"127.0.0.1:{cap_port}",
         "rollcap-offload": f"127.0.0.1:{off_port}"},
        rule_files=[RULES],
    )  # fmt: skip
    off: Offload | None = None
    stop_publishing = threading.Event()
    publisher: list[threading.Thread] = []
    try:
        node.start()
        prom.start()
        cap.start()
        cap.wait_capturing()
        off = Offload(cap.config, seaweedfs.env()).start()
        off.wait_for("started", lambda: "offload started" in off.text())
        # root's copies, as each unit's ExecStartPost= (`rollcap link-metrics`)
        # makes them once the daemon is ready (its textfile exists by then), and
        # then rollcap-metrics-publish.path at each write (here: every 0.5 s)
        pub_cfg = parse_config(f'[metrics]\ntextfile_directory = "{own}"\n')
        for daemon in ("capture", "offload"):
            assert publish.publish(pub_cfg, daemon, str(textfiles)).startswith("published ")

        def republish() -> None:
            while not stop_publishing.wait(0.5):
                for daemon in ("capture", "offload"):
                    publish.publish(pub_cfg, daemon, str(textfiles))

        publisher.append(threading.Thread(target=republish, daemon=True))
        publisher[0].start()
        wait_until("Prometheus scraping all three targets", prom.targets_up,
                   lambda up: up == {"node": 1, "rollcap-capture": 1, "rollcap-offload": 1},
                   timeout=30)  # fmt: skip

        veth.replay(all_pcap, loop=LOOPS, pps=20000)

        def snapshot() -> dict[str, dict[str, float]]:
            return {
                # tcpdump counts an overlap's packets in both generations
                "packets": prom.query("rollcap_capture_packets_total - ignoring(interface) "
                                      "rollcap_capture_duplicates_removed_total"),
                "stored": prom.query('rollcap_offload_uploads_total{result="stored"}'),
                "handoffs": prom.query("rollcap_capture_handoff_files_total"),
                "backlog": prom.query("rollcap_offload_backlog_files"),
            }

        def settled(s: dict[str, dict[str, float]]) -> bool:
            both = ("node", "rollcap-capture")
            return (
                all(s["packets"].get(j) == LOOPS * PACKETS for j in both)
                and set(s["stored"]) == {"node", "rollcap-offload"}
                and len(set(s["stored"].values()) | set(s["handoffs"].values())) == 1
                and set(s["backlog"].values()) == {0.0}
            )

        # -- what reached SeaweedFS, counted by capinfos ---------------------------
        # rollcap_capture_packets_total is tcpdump's own count: it reaches the
        # total while the last file is still live, so the bucket says when
        # everything is stored (the quiet-link switch hands that file off)
        client = seaweedfs.client()
        got = base / "got"
        got.mkdir()
        counted: dict[str, int] = {}

        def in_bucket() -> int:
            for key in keys_in(seaweedfs, bucket, "metrics/"):
                if key not in counted:
                    dest = got / f"{len(counted)}{Path(key).name[-9:]}"  # keeps .pcap.zst
                    client.download_file(bucket, key, str(dest))
                    counted[key] = count_packets(dest)
            return sum(counted.values())

        stored_packets = wait_until("every replayed packet stored", in_bucket,
                                    lambda n: n >= LOOPS * PACKETS, 90)  # fmt: skip
        assert stored_packets == LOOPS * PACKETS
        keys = sorted(counted)
        snap = wait_until(
            "the metrics of every stored file", snapshot,
            lambda s: settled(s) and set(s["stored"].values()) == {float(len(keys))}, 60,
        )  # fmt: skip
        for job in ("node", "rollcap-capture"):
            assert snap["packets"][job] == stored_packets
        for job in ("node", "rollcap-offload"):
            assert snap["stored"][job] == len(keys)
        for metric in ("rollcap_capture_kernel_drops_total",
                       "rollcap_capture_interface_drops_total"):  # fmt: skip
            drops = prom.query(metric)
            assert drops == {"node": 0.0, "rollcap-capture": 0.0}, (metric, drops)
        bad = prom.query(
            'sum by (job) (rollcap_offload_uploads_total{result=~"failed|quarantined"})'
        )
        assert bad == {"node": 0.0, "rollcap-offload": 0.0}
        hist = prom.query("rollcap_offload_upload_duration_seconds_count")
        assert hist == {"node": len(keys), "rollcap-offload": len(keys)}
        assert prom.query("rollcap_capture_up") == {"node": 1.0, "rollcap-capture": 1.0}
        assert prom.query("rollcap_offload_destination_up") == {
            "node": 1.0, "rollcap-offload": 1.0,
        }  # fmt: skip
        assert prom.query('node_textfile_scrape_error{job="node"}') == {"node": 0.0}
        # the shipped rules were loaded and nothing fires on a healthy run
        rules = prom.api("rules")["groups"]
        assert [g["name"] for g in rules] == ["rollcap"]
        assert all(r.get("health") == "ok" for r in rules[0]["rules"]), rules
        assert prom.api("alerts")["alerts"] == []
        # every dashboard query is valid PromQL and shows data from this run
        for panel in json.loads(DASHBOARD.read_text())["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"].replace("$instance", ".*")
                expr = expr.replace("$__rate_interval", "30s")
                result = prom.api("query", query=expr)["result"]
                assert result, f"dashboard panel {panel['title']!r}: no data for {expr}"

        # -- every exposition passes promtool -------------------------------------
        live = {
            "capture /metrics": http_get(f"http://127.0.0.1:{cap_port}/metrics"),
            "offload /metrics": http_get(f"http://127.0.0.1:{off_port}/metrics"),
        }
        for p in sorted(textfiles.glob("*.prom")):
            live[p.name] = p.read_bytes()
        assert set(live) == {"capture /metrics", "offload /metrics",
                             "rollcap-capture.prom", "rollcap-offload.prom"}  # fmt: skip
        for what, data in live.items():
            promtool_check(data, what)
        scrape = node.scrape()
        print(f"\n--- node_exporter {node.url}/metrics (rollcap_capture_*, rollcap_spool_*) ---")
        print("\n".join(
            ln for ln in scrape.splitlines() if ln.startswith(("rollcap_capture", "rollcap_spool"))
        ))  # fmt: skip
        print("--- offload /metrics (rollcap_offload_*) ---")
        print("\n".join(
            ln for ln in live["offload /metrics"].decode().splitlines()
            if ln.startswith("rollcap_offload_") and "_bucket" not in ln
        ))  # fmt: skip

        # -- at exit: the last values stay in the textfile, the ports close --------
        assert cap.stop() == 0
        assert off.stop() == 0
        stop_publishing.set()
        publisher[0].join()
        for daemon in ("capture", "offload"):  # the path unit, at the daemons' last write
            publish.publish(pub_cfg, daemon, str(textfiles))
        final = node.scrape()
        assert samples(final, "rollcap_capture_up") == {f'{{interface="{veth.b}"}}': 0.0}
        [dups] = samples(final, "rollcap_capture_duplicates_removed_total").values()
        assert samples(final, "rollcap_capture_packets_total") == {
            f'{{interface="{veth.b}"}}': float(stored_packets) + dups
        }
        assert "rollcap_offload_destination_up" not in final  # stopped: unknown
        for p in sorted(textfiles.glob("*.prom")):
            promtool_check(p.read_bytes(), f"{p.name} after exit")
        assert sorted(str(p.relative_to(own)) for p in own.rglob("*") if not p.is_dir()) == [
            "capture/rollcap-capture.prom", "offload/rollcap-offload.prom",
        ]  # no temp files left  # fmt: skip
        # root's copies: plain files, no temp file left
        assert sorted(p.name for p in textfiles.iterdir()) == [
            "rollcap-capture.prom", "rollcap-offload.prom"]  # fmt: skip
        assert not any(p.is_symlink() for p in textfiles.iterdir())
        with pytest.raises(OSError):
            http_get(f"http://127.0.0.1:{cap_port}/metrics", timeout=2)
        assert state(cap.spool)["uploaded_files"] == len(keys)
    finally:
        stop_publishing.set()
        cap.kill()
        if off is not None and off.proc is not None and off.proc.poll() is None:
            off.proc.send_signal(signal.SIGKILL)
        prom.cleanup()
        node.cleanup()
