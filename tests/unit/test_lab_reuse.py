"""The lab pieces other users of the lab's machinery reuse (the collection benchmark)."""

from __future__ import annotations

import pytest

from lab.guard import same_segment_handles
from lab.paths import HOSTS_DIR, SUDOERS_DIR
from lab.plan import collection_clone, known_hosts_line, make_plan
from lab.scenario import scenario_or_baseline

LISTING = """table inet auditor_lab_guard {
\tchain same_segment { # handle 1
\t\tiifname "podman17" oifname "podman17" accept # handle 3
\t\tiifname "podman1" oifname "podman1" accept # handle 4
\t\tiifname "podman1" oifname "podman1" accept # handle 9
\t}
}
"""


def test_same_segment_handles_finds_exactly_that_bridges_rules() -> None:
    # "podman1" must not match the rule of "podman17".
    assert same_segment_handles(LISTING, "podman1") == [4, 9]
    assert same_segment_handles(LISTING, "podman17") == [3]
    assert same_segment_handles(LISTING, "podman2") == []


def test_collection_clone_is_set_up_as_the_lab_host_for_the_auditor() -> None:
    clone = collection_clone("bench-coll-07", "term-1", "ssh-ed25519 AAAAkey auditor@x")
    assert clone.container == "bench-coll-07"
    files = clone.files
    assert files["/home/auditor/.ssh/authorized_keys"] == b"ssh-ed25519 AAAAkey auditor@x\n"
    assert files["/etc/sudoers.d/auditor"] == (SUDOERS_DIR / "auditor").read_bytes()
    assert files["/etc/sudoers.d/logging"] == (SUDOERS_DIR / "logging").read_bytes()
    rule_set = HOSTS_DIR / "term-1" / "rootfs" / "etc" / "nftables.conf"
    assert files["/etc/nftables.conf"] == rule_set.read_bytes()
    assert "/etc/modprobe.d/usb-storage.conf" in files  # the terminal layer
    assert files["/etc/lab/services"].decode().split() == ["rsyslog", "sshd", "usbguard"]
    assert "/etc/ssh/ssh_host_ed25519_key" in clone.secret_files
    # Collection only: nothing of the lab's tunnels, transfers or pipeline.
    assert not any(p.startswith(("/etc/lab/wireguard/", "/etc/lab/keys/")) for p in files)
    assert "/etc/lab/pipeline.json" not in files
    assert clone.networks == {}
    assert not clone.needs_tun


def test_each_clone_is_a_machine_of_its_own() -> None:
    one = collection_clone("bench-coll-01", "term-1", "ssh-ed25519 AAAAkey")
    two = collection_clone("bench-coll-02", "term-1", "ssh-ed25519 AAAAkey")
    assert one.host_key is not None and two.host_key is not None
    assert one.host_key.public_key != two.host_key.public_key
    assert one.files["/etc/machine-id"] != two.files["/etc/machine-id"]
    line = known_hosts_line(["10.98.200.11", "fd98:0:0:200::11"], one.host_key)
    assert line == f"10.98.200.11,fd98:0:0:200::11 {one.host_key.public_key}"


def test_a_host_the_auditor_does_not_log_in_to_cannot_be_cloned_for_collection() -> None:
    with pytest.raises(ValueError, match="office-pc"):
        collection_clone("bench-coll-01", "office-pc", "ssh-ed25519 AAAAkey")


def test_lab_containers_keep_their_lab_names() -> None:
    plan = make_plan(scenario_or_baseline(None))
    assert {c.container for c in plan.containers.values()} == {
        f"lab-{host}" for host in plan.containers
    }
