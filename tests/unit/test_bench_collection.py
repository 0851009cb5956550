"""The collection benchmark's pure helpers (the benchmark itself is run with python -m bench)."""

from __future__ import annotations

import ipaddress

import pytest

from auditor.inventory import Inventory, SshAccess
from auditor.scope import ScopeGuard
from bench.collection import (
    IPV4,
    IPV6,
    BenchError,
    bench_hosts,
    busy_fraction,
    commands_run,
    inventory_document,
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
