"""rollcap.metrics.publish: root copies each daemon's textfile into node_exporter's
directory, never a link to a path a daemon user controls: node_exporter opens every
*.prom there with no type check or size cap."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rollcap.config.load import parse_config
from rollcap.config.schema import RollcapConfig
from rollcap.metrics import publish

TEXT = b'rollcap_capture_up{interface="eth0"} 1\n'


def _setup(tmp_path: Path) -> tuple[RollcapConfig, Path, Path]:
    nx = tmp_path / "node-exporter"
    nx.mkdir()
    cfg = parse_config(f'[metrics]\ntextfile_directory = "{tmp_path}/own"\n')
    own = tmp_path / "own" / "capture"
    own.mkdir(parents=True)
    return cfg, nx, own / "rollcap-capture.prom"


def _copy(nx: Path) -> os.stat_result:
    return (nx / "rollcap-capture.prom").lstat()


def _series(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """What node_exporter reads from a textfile: value by name and labels."""
    return {
        (smp.name, tuple(sorted(smp.labels.items()))): smp.value
        for fam in text_string_to_metric_families(text.decode())
        for smp in fam.samples
    }


def test_a_copy_follows_the_daemons_file_and_goes_with_it(tmp_path: Path) -> None:
    cfg, nx, own = _setup(tmp_path)
    # not before the daemon wrote its file: an empty or dangling entry is a scrape error
    assert publish.publish(cfg, "capture", str(nx)) == ""
    assert os.listdir(nx) == []
    own.write_bytes(TEXT)
    os.chmod(own, 0o600)  # the copy is 0644 whatever the daemon's file says
    assert publish.publish(cfg, "capture", str(nx)) == f"published {nx}/rollcap-capture.prom"
    st = _copy(nx)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644
    assert st.st_uid == os.geteuid()
    assert _series((nx / "rollcap-capture.prom").read_bytes()) == _series(TEXT)
    own.write_bytes(TEXT.replace(b" 1\n", b" 0\n"))
    assert publish.publish(cfg, "capture", str(nx)) == ""  # a plain update: no log line
    assert _series((nx / "rollcap-capture.prom").read_bytes()) == {
        ("rollcap_capture_up", (("interface", "eth0"),)): 0.0
    }
    assert sorted(os.listdir(nx)) == ["rollcap-capture.prom"]  # no temp file left
    own.unlink()
    assert publish.publish(cfg, "capture", str(nx)).startswith("removed ")
    assert os.listdir(nx) == []
    assert publish.publish(cfg, "offload", str(tmp_path / "absent")) == ""


def test_textfiles_off_removes_the_copy(tmp_path: Path) -> None:
    cfg, nx, own = _setup(tmp_path)
    own.write_bytes(TEXT)
    publish.publish(cfg, "capture", str(nx))
    off = parse_config('[metrics]\ntextfile_directory = ""\n')
    assert publish.publish(off, "capture", str(nx)).startswith("removed ")
    assert os.listdir(nx) == []


def test_the_link_of_an_earlier_version_is_replaced_by_a_copy(tmp_path: Path) -> None:
    cfg, nx, own = _setup(tmp_path)
    own.write_bytes(TEXT)
    (nx / "rollcap-capture.prom").symlink_to(own)
    assert publish.publish(cfg, "capture", str(nx)).startswith("replaced the link ")
    assert stat.S_ISREG(_copy(nx).st_mode)


def _shapes(own: Path, victim: Path) -> dict[str, object]:
    return {
        "a FIFO": lambda: os.mkfifo(own),
        "a symlink": lambda: own.symlink_to(victim),
        "a hard link": lambda: os.link(victim, own),
        "a directory": lambda: own.mkdir(),
        "too large": lambda: own.write_bytes(b"#" * (publish.MAX_BYTES + 1)),
    }


@pytest.mark.parametrize("shape", ["a FIFO", "a symlink", "a hard link", "a directory",
                                   "too large"])  # fmt: skip
def test_anything_but_a_small_plain_file_is_refused_without_blocking(
    tmp_path: Path, shape: str
) -> None:
    """A FIFO would block the reader forever: the test runs publish() in a thread
    and fails if it has not returned when the main thread's join gives up."""
    cfg, nx, own = _setup(tmp_path)
    victim = tmp_path / "victim"
    victim.write_bytes(b"secret 1\n")
    own.write_bytes(TEXT)
    publish.publish(cfg, "capture", str(nx))
    own.unlink()
    make = _shapes(own, victim)[shape]
    assert callable(make)
    make()
    out: list[str] = []
    t = threading.Thread(target=lambda: out.append(publish.publish(cfg, "capture", str(nx))),
                         daemon=True)  # fmt: skip
    t.start()
    t.join(30)
    assert out, "publish() blocked"
    assert out[0].startswith("warning: not publishing capture's metrics (kept the last copy)"), out
    # the last good copy
    assert _series((nx / "rollcap-capture.prom").read_bytes()) == _series(TEXT)
    assert sorted(os.listdir(nx)) == ["rollcap-capture.prom"]


@pytest.mark.skipif(os.geteuid() != 0, reason="a file of another owner needs root")
def test_a_file_its_directory_owner_does_not_own_is_refused(tmp_path: Path) -> None:
    cfg, nx, own = _setup(tmp_path)
    os.chown(own.parent, 4242, 4242)
    own.write_bytes(TEXT)  # root's, in 4242's directory
    assert publish.publish(cfg, "capture", str(nx)).startswith("warning: ")
    assert os.listdir(nx) == []
    os.chown(own, 4242, 4242)
    assert publish.publish(cfg, "capture", str(nx)).startswith("published ")


def test_link_metrics_at_start_logs_each_entry_it_removes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, _nx, _own = _setup(tmp_path)
    monkeypatch.setattr(publish, "remove_grants", lambda cfg: [])
    planted = ["/nx/a.prom (FIFO, uid 1 gid 1)"]
    monkeypatch.setattr(publish, "remove_planted", lambda cfg: planted)
    monkeypatch.setattr(publish, "publish", lambda cfg, daemon: "")
    assert publish.publish_at_start(cfg, "capture") == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["rollcap: removed /nx/a.prom (FIFO, uid 1 gid 1): a rollcap user's entry "
                   "in node_exporter's directory, where root's collectors write (docs/metrics.md)"]


def test_a_copy_that_cannot_be_written_does_not_fail_the_daemons_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, _nx, _own = _setup(tmp_path)
    monkeypatch.setattr(publish, "remove_grants", lambda cfg: [])
    monkeypatch.setattr(publish, "remove_planted", lambda cfg: [])

    def full(cfg: RollcapConfig, daemon: str) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(publish, "publish", full)
    assert publish.publish_at_start(cfg, "capture") == 0
    assert "No space left on device" in capsys.readouterr().err
    assert publish.publish_and_log(cfg, ("capture",)) == 1  # the publisher's own run fails


FORGED = b"""# HELP rollcap_capture_packets Packets tcpdump captured.
# TYPE rollcap_capture_packets counter
rollcap_capture_packets_total{interface="eth0"} 42
# TYPE rollcap_build_info gauge
rollcap_build_info{daemon="capture",version="0.3.0"} 1
rollcap_build_info{daemon="offload",version="0.3.0"} 1
# TYPE rollcap_state_updated_timestamp_seconds gauge
rollcap_state_updated_timestamp_seconds{daemon="capture"} 1.8e9
rollcap_state_updated_timestamp_seconds{daemon="offload"} 1.8e9
# TYPE rollcap_spool_bytes gauge
rollcap_spool_bytes{area="ready"} 10
rollcap_offload_destination_up 1
smartmon_device_smart_healthy{disk="/dev/sda",type="sat"} 1
node_textfile_scrape_error 0
"""


def test_a_copy_holds_only_the_daemons_own_series(tmp_path: Path) -> None:
    """An exploited capture cannot speak for the offload or for another collector
    (node_exporter keeps the first of two equal series: the forged one would hide
    the real one, and its alert)."""
    cfg, nx, own = _setup(tmp_path)
    own.write_bytes(FORGED)
    line = publish.publish(cfg, "capture", str(nx))
    assert line.startswith("warning: published ") and "without 5 samples" in line
    got = _series((nx / "rollcap-capture.prom").read_bytes())
    assert got == {
        ("rollcap_capture_packets_total", (("interface", "eth0"),)): 42.0,
        ("rollcap_build_info", (("daemon", "capture"), ("version", "0.3.0"))): 1.0,
        ("rollcap_state_updated_timestamp_seconds", (("daemon", "capture"),)): 1.8e9,
        ("rollcap_spool_bytes", (("area", "ready"),)): 10.0,
    }


@pytest.mark.parametrize("bad", [b"\xff\xfe not text\n", b"rollcap_capture_up{ 1\n",
                                 b"".join(b"rollcap_capture_up{i=\"%d\"} 1\n" % i
                                          for i in range(10_001))])  # fmt: skip
def test_a_file_that_is_not_small_prometheus_text_keeps_the_last_copy(
    tmp_path: Path, bad: bytes
) -> None:
    cfg, nx, own = _setup(tmp_path)
    own.write_bytes(TEXT)
    publish.publish(cfg, "capture", str(nx))
    own.write_bytes(bad)
    line = publish.publish(cfg, "capture", str(nx))
    assert line.startswith("warning: not publishing capture's metrics (kept the last copy)")
    assert _series((nx / "rollcap-capture.prom").read_bytes()) == _series(TEXT)
