"""bench.live --sched: the variants run what the units say, and "weights"
puts a daemon and every process it starts in its unit's cpu group from the
start, then leaves no group behind."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from bench.common import REPO
from bench.live import (
    CPU_CGROUP,
    cpu_cgroup_of,
    cpu_cgroups,
    cpu_shares,
    variant_scheduling,
)


def _unit_value(unit: str, key: str) -> str:
    for line in (REPO / "units" / unit).read_text().splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1].strip()
    raise AssertionError(f"{unit} has no {key}=")


def test_cpu_weight_becomes_systemds_cgroup_v1_shares() -> None:
    # systemd: shares = weight * 1024 / 100, clamped to the kernel's [2, 262144]
    assert cpu_shares(100) == 1024
    assert cpu_shares(1000) == 10240
    assert cpu_shares(20) == 204
    assert cpu_shares(1) == 10
    assert cpu_shares(10000) == 102400


def test_variants_take_the_units_settings() -> None:
    shipped = variant_scheduling("shipped")
    assert shipped["offload"].settings["Nice"] == _unit_value("rollcap-offload.service", "Nice")
    assert all(s.shares is None for s in shipped.values())
    assert "CPUWeight" in shipped["capture"].not_applied

    weights = variant_scheduling("weights")
    for role in ("capture", "offload"):
        unit_weight = int(_unit_value(f"rollcap-{role}.service", "CPUWeight"))
        assert weights[role].shares == cpu_shares(unit_weight)
        assert "CPUWeight" not in weights[role].not_applied
    # the shipped Nice= and I/O class stay: systemd applies them inside the group
    assert weights["offload"].settings == shipped["offload"].settings

    nice19 = variant_scheduling("nice19")
    off = nice19["offload"]
    assert (off.settings["Nice"], off.settings["CPUSchedulingPolicy"]) == ("19", "batch")
    assert off.prefix() == ["ionice", "-c", "3"]
    assert all(s.shares is None for s in nice19.values())
    assert nice19["capture"].settings == shipped["capture"].settings

    with pytest.raises(ValueError, match="unknown variant 'nice20'"):
        variant_scheduling("nice20")


@pytest.mark.skipif(
    os.geteuid() != 0 or not (CPU_CGROUP / "cpu.shares").is_file(),
    reason="needs root and the cgroup v1 cpu controller at /sys/fs/cgroup/cpu",
)
def test_weights_put_a_daemon_and_its_children_in_its_group_and_remove_it() -> None:
    sched = variant_scheduling("weights")
    tag = f"test-{os.getpid()}"
    with cpu_cgroups(sched, tag):
        group = sched["capture"].cgroup
        assert group is not None
        assert int((group / "cpu.shares").read_text()) == sched["capture"].shares
        # a "daemon" that starts a child at once, as capture starts tcpdump
        proc = subprocess.Popen(
            ["sh", "-c", "sleep 60 & echo $!; wait"],
            preexec_fn=sched["capture"].preexec, stdout=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            child = int(proc.stdout.readline())
            want = f"/rollcap-bench-{tag}-capture"
            assert (cpu_cgroup_of(proc.pid), cpu_cgroup_of(child)) == (want, want)
            assert cpu_cgroup_of(os.getpid()) != want  # the caller stays where it was
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert not list(CPU_CGROUP.glob(f"rollcap-bench-{tag}-*"))
    assert all(s.cgroup is None for s in sched.values())
