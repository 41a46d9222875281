"""rollcap.metrics: the [metrics] section, the textfile writer, the HTTP endpoint
and the collectors fed from the daemons' state dicts."""

from __future__ import annotations

import logging
import os
import socket
import stat
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from rollcap import __version__
from rollcap.config.load import parse_config
from rollcap.config.schema import parse_listen
from rollcap.errors import ConfigError
from rollcap.metrics.exporter import capture_exporter, offload_exporter
from rollcap.metrics.textfile import write_textfile

CAPTURE_STATE: dict[str, Any] = {
    "state": "capturing", "interface": "eth0", "packets_captured": 1234,
    "kernel_drops": 5, "interface_drops": 1, "handed_off_files": 3, "handed_off_bytes": 99999,
    "restarts": 2, "dropped_files": 1, "dropped_bytes": 500, "paused": False,
    "budget": {"used_bytes": 10, "max_bytes": 20_000_000, "free_percent": 42.0},
}  # fmt: skip
OFFLOAD_STATE: dict[str, Any] = {
    "state": "running", "backlog_files": 2, "backlog_bytes": 4096, "uploaded_files": 7,
    "uploaded_bytes_in": 7000, "uploaded_bytes_out": 3000,
    "last_upload": {"file": "x", "key": "k", "at": 1_700_000_000.5, "seconds": 0.2},
}  # fmt: skip


def _cfg(tmp_path: Path, **metrics: str | int) -> Any:
    lines = [f'[spool]\ndirectory = "{tmp_path}/spool"', "[metrics]"]
    lines += [f"{k} = {v!r}".replace("'", '"') for k, v in metrics.items()]
    return parse_config("\n".join(lines) + "\n")


def _value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not in:\n{text}")


# -- config -------------------------------------------------------------------


def test_defaults_textfile_on_http_off() -> None:
    m = parse_config("").metrics
    assert m.textfile_directory == "/var/lib/rollcap-metrics"
    assert m.interval_seconds == 15
    assert m.capture_listen == m.offload_listen == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [("127.0.0.1:9817", ("127.0.0.1", 9817)), ("[::1]:9818", ("::1", 9818)),
     ("0.0.0.0:1", ("0.0.0.0", 1)), ("localhost:65535", ("localhost", 65535))],
)  # fmt: skip
def test_listen_addresses(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize(
    ("toml", "message"),
    [('capture_listen = "9817"', 'metrics.capture_listen: "host:port" with an IP address'),
     ('capture_listen = ":9817"', "metrics.capture_listen"),
     ('offload_listen = "127.0.0.1:0"', "a port from 1 to 65535"),
     ('offload_listen = "127.0.0.1:99999"', "a port from 1 to 65535"),
     ('offload_listen = "[127.0.0.1]:80"', "is not an IPv6 address"),
     ('offload_listen = "example.com:80"', "with an IP address"),
     ('textfile_directory = "relative"', "metrics.textfile_directory: an absolute path"),
     ("interval_seconds = 0", "metrics.interval_seconds"),
     ('textfile_directory = "/var/lib/prometheus/node-exporter/rollcap"',
      "metrics.textfile_directory: a directory of rollcap's own, not in or above "
      "node_exporter's /var/lib/prometheus/node-exporter"),
     ('textfile_directory = "/var/lib/prometheus"', "not in or above node_exporter's"),
     ('capture_listen = "127.0.0.1:9817"\noffload_listen = "127.0.0.1:9817"',
      "metrics.offload_listen: must differ from metrics.capture_listen")],
)  # fmt: skip
def test_bad_metrics_config_is_one_clear_line(toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(f"[metrics]\n{toml}\n")
    assert len(e.value.problems) == 1
    assert message in e.value.problems[0]


def test_node_exporters_directory_from_0_2_configs_means_the_default() -> None:
    """0.2's conffile named it; an edited conffile keeps that line after the upgrade."""
    for value in ("/var/lib/prometheus/node-exporter", "/var/lib/prometheus/node-exporter/"):
        m = parse_config(f'[metrics]\ntextfile_directory = "{value}"\n').metrics
        assert m.textfile_directory == "/var/lib/rollcap-metrics"


def test_textfile_can_be_turned_off(tmp_path: Path) -> None:
    assert _cfg(tmp_path, textfile_directory="").metrics.textfile_directory == ""


# -- textfile -------------------------------------------------------------------


def test_textfile_is_replaced_atomically_and_world_readable(tmp_path: Path) -> None:
    old = os.umask(0o027)  # what the offload unit uses
    try:
        write_textfile(str(tmp_path), "x.prom", b"a 1\n")
        write_textfile(str(tmp_path), "x.prom", b"a 2\n")
    finally:
        os.umask(old)
    assert (tmp_path / "x.prom").read_bytes() == b"a 2\n"
    assert stat.S_IMODE((tmp_path / "x.prom").stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["x.prom"]  # no temp file left


def test_textfile_never_follows_a_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    d = tmp_path / "textfile"
    d.mkdir()
    (d / "x.prom").symlink_to(victim)
    (d / f".x.prom.{os.getpid()}.tmp").symlink_to(victim)
    write_textfile(str(d), "x.prom", b"a 1\n")
    assert victim.read_text() == "keep"
    assert not (d / "x.prom").is_symlink()
    assert (d / "x.prom").read_bytes() == b"a 1\n"


def test_missing_directory_is_logged_once_and_written_when_it_appears(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = tmp_path / "metrics"
    exp = capture_exporter(_cfg(tmp_path, textfile_directory=str(d)))
    exp.publish(CAPTURE_STATE)
    with caplog.at_level(logging.INFO, logger="rollcap.metrics"):
        exp.write()
        exp.write()
        assert len([r for r in caplog.records if "does not exist" in r.message]) == 1
        (d / "capture").mkdir(parents=True)
        exp.write()
    text = (d / "capture/rollcap-capture.prom").read_text()
    assert _value(text, 'rollcap_capture_packets_total{interface="eth0"}') == 1234


def test_unwritable_directory_is_a_warning_not_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    f = tmp_path / "not-a-dir"
    f.write_text("")
    exp = offload_exporter(_cfg(tmp_path, textfile_directory=str(f)))
    with caplog.at_level(logging.INFO, logger="rollcap.metrics"):
        exp.write()  # must not raise
    assert any(r.levelno == logging.WARNING and "cannot write" in r.message for r in caplog.records)


# -- HTTP -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_http_serves_metrics_only_and_closes(tmp_path: Path) -> None:
    port = _free_port()
    exp = offload_exporter(
        _cfg(tmp_path, textfile_directory="", offload_listen=f"127.0.0.1:{port}")
    )
    exp.publish(OFFLOAD_STATE)
    exp.start()
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        text = body.decode()
        assert _value(text, "rollcap_offload_backlog_files") == 2
        assert "process_resident_memory_bytes" in text  # this process's own, on HTTP only
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
        assert e.value.code == 404
    finally:
        exp.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_a_taken_port_is_logged_and_the_daemon_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        exp = capture_exporter(
            _cfg(tmp_path, textfile_directory=str(tmp_path), capture_listen=f"127.0.0.1:{port}")
        )
        (tmp_path / "capture").mkdir()
        with caplog.at_level(logging.INFO, logger="rollcap.metrics"):
            exp.start()
        try:
            assert exp.server is None
            assert any(f"cannot listen on 127.0.0.1:{port}" in r.message for r in caplog.records)
            assert (tmp_path / "capture/rollcap-capture.prom").exists()  # the textfile still works
        finally:
            exp.close()


# -- collectors -------------------------------------------------------------------


def _textfile(exp: Any, tmp_path: Path) -> str:
    (tmp_path / exp.daemon).mkdir(exist_ok=True)  # each daemon writes into its own
    exp.write()
    return (tmp_path / exp.daemon / f"rollcap-{exp.daemon}.prom").read_text()


def test_capture_metrics_are_the_status_numbers(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, textfile_directory=str(tmp_path))
    (tmp_path / "spool" / "ready").mkdir(parents=True)
    (tmp_path / "spool" / "ready" / "f.pcap").write_bytes(b"x" * 300)
    exp = capture_exporter(cfg)
    exp.publish(CAPTURE_STATE)
    t = _textfile(exp, tmp_path)
    i = '{interface="eth0"}'
    assert _value(t, f"rollcap_capture_packets_total{i}") == 1234
    assert _value(t, f"rollcap_capture_kernel_drops_total{i}") == 5
    assert _value(t, f"rollcap_capture_interface_drops_total{i}") == 1
    assert _value(t, f"rollcap_capture_handoff_files_total{i}") == 3
    assert _value(t, f"rollcap_capture_handoff_bytes_total{i}") == 99999
    assert _value(t, f"rollcap_capture_tcpdump_restarts_total{i}") == 2
    assert _value(t, f"rollcap_capture_up{i}") == 1
    assert _value(t, 'rollcap_spool_bytes{area="ready"}') == 300
    assert _value(t, 'rollcap_spool_bytes{area="work"}') == 0
    assert _value(t, "rollcap_spool_budget_bytes") == 20_000_000
    assert _value(t, "rollcap_spool_dropped_files_total") == 1
    assert _value(t, "rollcap_spool_dropped_bytes_total") == 500
    assert _value(t, f'rollcap_build_info{{daemon="capture",version="{__version__}"}}') == 1
    # no process_* in the textfile: node_exporter merges both daemons' files
    assert "process_" not in t
    exp.publish({**CAPTURE_STATE, "state": "waiting-for-interface"})
    assert _value(_textfile(exp, tmp_path), f"rollcap_capture_up{i}") == 0


def test_capture_metrics_have_one_series_per_interface(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, textfile_directory=str(tmp_path))
    exp = capture_exporter(cfg)
    per = {
        "eth0": {"state": "capturing", "packets_captured": 10, "kernel_drops": 0, "restarts": 0},
        "eth1": {"state": "restarting", "packets_captured": 7, "kernel_drops": 3, "restarts": 2},
    }
    exp.publish({**CAPTURE_STATE, "interface": "eth0, eth1", "interfaces": per})
    t = _textfile(exp, tmp_path)
    assert _value(t, 'rollcap_capture_packets_total{interface="eth0"}') == 10
    assert _value(t, 'rollcap_capture_packets_total{interface="eth1"}') == 7
    assert _value(t, 'rollcap_capture_kernel_drops_total{interface="eth1"}') == 3
    assert _value(t, 'rollcap_capture_tcpdump_restarts_total{interface="eth1"}') == 2
    assert _value(t, 'rollcap_capture_up{interface="eth0"}') == 1
    assert _value(t, 'rollcap_capture_up{interface="eth1"}') == 0
    assert 'interface="eth0, eth1"' not in t


def test_offload_outcomes_and_state(tmp_path: Path) -> None:
    exp = offload_exporter(_cfg(tmp_path, textfile_directory=str(tmp_path)))
    exp.publish(OFFLOAD_STATE)
    c = exp.collector
    for kind, seconds, attempt in [
        ("uploaded", 0.3, 1),
        ("uploaded", 40.0, 3),
        ("failed", 0, 1),
        ("failed", 0, 2),
        ("exists", 0.1, 1),
        ("quarantined", 0, 1),
        ("ignored", 0, 1),
        ("cancelled", 0, 1),
        ("dropped", 0, 1),
    ]:
        c.outcome(kind, seconds, attempt)  # fmt: skip
    t = _textfile(exp, tmp_path)
    assert _value(t, 'rollcap_offload_uploads_total{result="stored"}') == 2
    assert _value(t, 'rollcap_offload_uploads_total{result="exists"}') == 1
    assert _value(t, 'rollcap_offload_uploads_total{result="quarantined"}') == 1
    assert _value(t, 'rollcap_offload_uploads_total{result="failed"}') == 3
    assert _value(t, "rollcap_offload_retries_total") == 2
    assert _value(t, "rollcap_offload_upload_duration_seconds_count") == 2
    assert _value(t, 'rollcap_offload_upload_duration_seconds_bucket{le="0.5"}') == 1
    assert _value(t, "rollcap_offload_bytes_in_total") == 7000
    assert _value(t, "rollcap_offload_bytes_out_total") == 3000
    assert _value(t, "rollcap_offload_backlog_bytes") == 4096
    assert _value(t, "rollcap_offload_last_upload_timestamp_seconds") == 1_700_000_000.5
    assert _value(t, "rollcap_offload_destination_up") == 1
    exp.publish({**OFFLOAD_STATE, "state": "destination-down"})
    assert _value(_textfile(exp, tmp_path), "rollcap_offload_destination_up") == 0
    exp.publish({**OFFLOAD_STATE, "state": "stopped", "last_upload": None})
    t = _textfile(exp, tmp_path)
    assert "rollcap_offload_destination_up " not in t
    assert "rollcap_offload_last_upload_timestamp_seconds " not in t


def test_oldest_backlog_age_from_ready(tmp_path: Path) -> None:
    ready = tmp_path / "spool" / "ready"
    ready.mkdir(parents=True)
    f = ready / "20261126T130501Z-000042_host_eth0.pcap"
    f.write_bytes(b"x")
    os.utime(f, (f.stat().st_atime, f.stat().st_mtime - 600))
    (ready / ".tmp-in-progress").write_text("")  # hidden: not backlog
    (ready / "link.pcap").symlink_to("/etc/passwd")  # never followed, not counted
    exp = offload_exporter(_cfg(tmp_path, textfile_directory=str(tmp_path)))
    exp.publish(OFFLOAD_STATE)
    age = _value(_textfile(exp, tmp_path), "rollcap_offload_oldest_backlog_age_seconds")
    assert 600 <= age < 660


def test_every_outcome_of_a_file_is_counted_or_known_not_to_be() -> None:
    """A new kind of pipeline.Outcome gets a result label of rollcap_offload_files_total,
    or is named here as not a result, instead of going uncounted unnoticed."""
    from typing import get_args

    from rollcap.metrics.offload import _RESULT_OF, RESULTS
    from rollcap.offload.pipeline import OutcomeKind

    kinds = set(get_args(OutcomeKind))
    assert set(_RESULT_OF) <= kinds
    # dropped: rollcap_spool_dropped_files_total; cancelled: stopping; covered: no object
    assert kinds - set(_RESULT_OF) == {"dropped", "cancelled", "covered"}
    assert set(_RESULT_OF.values()) == set(RESULTS)


def test_offload_compression_pause_by_reason(tmp_path: Path) -> None:
    exp = offload_exporter(_cfg(tmp_path, textfile_directory=str(tmp_path)))
    paused = {"capture-drops": 12.5, "dirty-pages": 3.0}
    exp.publish({**OFFLOAD_STATE, "compression_paused": "dirty-pages",
                 "compression_paused_seconds": paused})  # fmt: skip
    t = _textfile(exp, tmp_path)
    assert _value(t, 'rollcap_offload_compression_paused{reason="dirty-pages"}') == 1
    assert _value(t, 'rollcap_offload_compression_paused{reason="capture-drops"}') == 0
    assert (
        _value(t, 'rollcap_offload_compression_paused_seconds_total{reason="capture-drops"}')
        == 12.5
    )
