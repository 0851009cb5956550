"""The collection benchmark's pure helpers (the benchmark itself is run with python -m bench)."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import pytest

from auditor.audit.scope import ScopeGuard
from auditor.domain.inventory import Inventory, SshAccess
from bench.collection import (
    IPV4,
    IPV6,
    BenchError,
    bench_hosts,
    busy_fraction,
    cgroup_cpu_file,
    cgroup_cpu_seconds,
    commands_run,
    inventory_document,
    ratio_floor,
)
from probes.host_collector import targets_from_inventory


def test_hosts_are_named_for_podman_and_addressed_in_the_benchmark_network() -> None:
    hosts = bench_hosts(50)
    assert [h.name for h in hosts[:2]] == ["bench-coll-01", "bench-coll-02"]
    assert hosts[-1].name == "bench-coll-50"
    assert len({h.address4 for h in hosts}) == 50
    for host in hosts:
        assert ipaddress.ip_address(host.address4) in ipaddress.ip_network(IPV4)
        assert ipaddress.ip_address(host.address6) in ipaddress.ip_network(IPV6)
        assert host.octet not in (0, 1, 255)  # network, this machine's bridge, broadcast
    assert hosts[0].address6 == "fd98:0:0:200::11"
    assert hosts[0].attachment == (
        "bench-coll:ip=10.98.200.11,ip6=fd98:0:0:200::11,interface_name=term-lan"
    )


def test_more_hosts_than_the_network_holds_are_refused() -> None:
    assert len(bench_hosts(244)) == 244
    with pytest.raises(BenchError):
        bench_hosts(245)
    with pytest.raises(BenchError):
        bench_hosts(0)


def test_inventory_collects_every_host_in_scope_with_the_default_bound() -> None:
    hosts = bench_hosts(5)
    inventory = Inventory.model_validate(inventory_document(hosts, None))
    assert inventory.ssh.parallel == SshAccess.model_fields["parallel"].default
    targets = targets_from_inventory(inventory)
    assert [t.host for t in targets] == [h.name for h in hosts]
    guard = ScopeGuard.from_inventory(inventory)
    assert all(guard.permits(t.address) for t in targets)
    assert not guard.permits("10.98.21.20")  # the lab's own networks are not the bench's


def test_inventory_takes_an_explicit_bound() -> None:
    inventory = Inventory.model_validate(inventory_document(bench_hosts(3), 16))
    assert inventory.ssh.parallel == 16


def test_commands_run_counts_commands_not_their_stderr_or_the_handshake_key() -> None:
    evidence = {
        "host_keys:transport": "sha256:a",
        "interfaces": "sha256:b",
        "tool-version:iproute2": "sha256:c",
        "routes:v4": "sha256:d",
        "routes:v6": "sha256:e",
        "commands:usbguard-rules": "sha256:f",
        "commands:usbguard-rules:stderr": "sha256:g",
    }
    assert commands_run(evidence) == 5


def test_busy_fraction_counts_idle_and_iowait_as_not_busy() -> None:
    # user nice system idle iowait irq softirq steal
    before = [100, 0, 50, 1000, 10, 0, 0, 0]
    after = [160, 0, 70, 1100, 30, 0, 0, 10]
    # busy: 60 + 20 + 10 = 90 of 210
    assert busy_fraction(before, after) == round(90 / 210, 3)
    assert busy_fraction(before, before) == 0.0


HYBRID = """9:name=systemd:/libpod_parent/libpod-ab12
2:cpuacct:/libpod_parent/libpod-ab12
1:cpu:/libpod_parent/libpod-ab12
0::/libpod_parent/libpod-ab12
"""


def test_cgroup_cpu_file_prefers_v1_cpuacct_on_a_hybrid_hierarchy() -> None:
    root = Path("/sys/fs/cgroup")
    assert cgroup_cpu_file(HYBRID, root) == (
        root / "cpuacct/libpod_parent/libpod-ab12/cpuacct.usage"
    )
    # systemd's "cpu,cpuacct" joint mount names both controllers on one line
    joint = "4:cpu,cpuacct:/machine.slice/x\n0::/machine.slice/x\n"
    assert cgroup_cpu_file(joint, root).name == "cpuacct.usage"


def test_cgroup_cpu_file_falls_back_to_the_unified_hierarchy() -> None:
    root = Path("/sys/fs/cgroup")
    assert cgroup_cpu_file("0::/system.slice/sshd.service\n", root) == (
        root / "system.slice/sshd.service/cpu.stat"
    )
    with pytest.raises(BenchError):
        cgroup_cpu_file("9:name=systemd:/\n", root)


def test_cgroup_cpu_seconds_reads_both_formats(tmp_path: Path) -> None:
    v1 = tmp_path / "cpuacct.usage"
    v1.write_text("2500000000\n")
    v2 = tmp_path / "cpu.stat"
    v2.write_text("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
    assert cgroup_cpu_seconds(v1) == 2.5
    assert cgroup_cpu_seconds(v2) == 1.5


def test_this_process_cgroup_cpu_time_grows_while_it_computes() -> None:
    cpu_file = cgroup_cpu_file(Path("/proc/self/cgroup").read_text(encoding="ascii"))
    before = cgroup_cpu_seconds(cpu_file)
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    assert cgroup_cpu_seconds(cpu_file) - before >= 0.04


def test_ratio_floor_is_the_many_runs_cpu_work_over_the_cores_and_one_hosts_time() -> None:
    # 50 hosts of 0.9 core-seconds each on 2 cores cannot take less than 22.5 s; one host
    # alone took 0.96 s, so no collector can bring the ratio under 23.4 here.
    assert ratio_floor(45.0, 2, 0.96) == 23.44
    assert ratio_floor(45.0, 64, 0.96) == 0.73
