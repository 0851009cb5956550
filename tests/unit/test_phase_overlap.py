"""The network phases run side by side (auditor.audit.network.run_overlapping): a phase starts
as soon as every earlier phase it conflicts with has ended, never while one is running.

Offline: the phases here sleep instead of probing, and their start and end times are
recorded; what overlapped is read from those times. The pairs are the audit's own
(``CONFLICTS``), so a change to the table shows here as a changed schedule.
"""

from __future__ import annotations

import itertools
import random
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from auditor.audit.network import CONFLICTS, NetworkPhase, NetworkProbes, conflict, run_overlapping
from auditor.audit.observer import SilentObserver
from auditor.audit.orchestrator import AuditResult, _Phases
from auditor.audit.scope import ScopeGuard
from auditor.domain.inventory import Role, load_inventory
from policies.context import AuditContext
from probes.scanner import ScanProfile

CONTEXTS = Path(__file__).parents[1] / "data" / "contexts"
#: The audit's phases in the order orchestrator._run_phases hands them over.
AUDIT_ORDER = ["collect", "links", "scan", "egress", "discovery"]


class Clock:
    """Start and end of every phase run, on one monotonic clock, from any thread."""

    def __init__(self) -> None:
        self.spans: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def phase(self, name: str, seconds: float) -> NetworkPhase:
        def work() -> None:
            began = time.monotonic()
            time.sleep(seconds)
            with self._lock:
                self.spans[name] = (began, time.monotonic())

        return NetworkPhase(name, f"{name} for {seconds} s", work)

    def overlapped(self, first: str, second: str) -> bool:
        (a0, a1), (b0, b1) = self.spans[first], self.spans[second]
        return a0 < b1 and b0 < a1


def run_phase(phase: NetworkPhase) -> None:
    phase.run()


def test_the_audit_schedule_overlaps_exactly_the_pairs_the_table_allows() -> None:
    clock = Clock()
    durations = {"collect": 0.1, "links": 0.3, "scan": 0.4, "egress": 0.2, "discovery": 0.2}
    run_overlapping([clock.phase(n, durations[n]) for n in AUDIT_ORDER], run_phase)

    for first, second in itertools.combinations(AUDIT_ORDER, 2):
        if conflict(first, second) is not None:
            assert not clock.overlapped(first, second), (first, second)
    # What the table allows really runs side by side: the scans from the start, with the
    # collection and the link captures, then with the egress tests; the sweeps after the
    # scans, with the egress tests.
    assert clock.overlapped("collect", "scan")
    assert clock.overlapped("links", "scan")
    assert clock.overlapped("egress", "scan")
    assert clock.overlapped("egress", "discovery")
    # The egress tests wait for the last of the phases they conflict with, and no longer.
    waited_for = max(clock.spans[n][1] for n in ("collect", "links"))
    assert clock.spans["egress"][0] >= waited_for
    assert clock.spans["egress"][0] - waited_for < 0.1


def test_the_audit_takes_its_critical_path_not_the_sum_of_its_phases() -> None:
    clock = Clock()
    durations = {"collect": 0.1, "links": 0.3, "scan": 0.4, "egress": 0.2, "discovery": 0.2}
    began = time.monotonic()
    run_overlapping([clock.phase(n, durations[n]) for n in AUDIT_ORDER], run_phase)
    took = time.monotonic() - began
    # scan, then the sweeps (the egress tests from the end of the link captures, alongside
    # both): 0.6 s of the 1.2 s the phases add up to.
    assert 0.6 <= took < 0.8


@pytest.mark.parametrize("seed", range(12))
def test_no_two_conflicting_phases_overlap_whatever_they_last(seed: int) -> None:
    rng = random.Random(seed)
    order = AUDIT_ORDER[:]
    rng.shuffle(order)
    clock = Clock()
    run_overlapping([clock.phase(n, rng.uniform(0.0, 0.05)) for n in order], run_phase)
    assert set(clock.spans) == set(order)
    for first, second in itertools.combinations(order, 2):
        if conflict(first, second) is not None:
            assert not clock.overlapped(first, second), (order, first, second)


def test_a_failing_phase_ends_its_turn_and_its_error_reaches_the_caller() -> None:
    clock = Clock()

    def broken() -> None:
        raise RuntimeError("scan broke")

    phases = [
        clock.phase("links", 0.05),
        NetworkPhase("scan", "fails at once", broken),
        clock.phase("egress", 0.05),
        clock.phase("discovery", 0.05),
    ]
    with pytest.raises(RuntimeError, match="scan broke"):
        run_overlapping(phases, run_phase)
    # Every other phase still ran, the ones waiting for the broken one included.
    assert set(clock.spans) == {"links", "egress", "discovery"}
    assert not clock.overlapped("links", "egress")


def test_phases_without_conflicts_all_start_at_once() -> None:
    clock = Clock()
    started = threading.Barrier(3, timeout=5)  # breaks (and fails) unless all three run at once

    def together(name: str) -> NetworkPhase:
        def work() -> None:
            started.wait()
            clock.phase(name, 0.0).run()

        return NetworkPhase(name, name, work)

    run_overlapping(
        [together("a"), together("b"), together("c")], run_phase, conflicts=lambda a, b: None
    )
    assert set(clock.spans) == {"a", "b", "c"}


def test_each_conflict_names_two_audit_phases_and_says_why() -> None:
    for pair, why in CONFLICTS.items():
        assert len(pair) == 2 and pair <= set(AUDIT_ORDER)
        assert len(why) > 40


def test_each_phase_is_timed_on_its_own_clock_while_they_overlap() -> None:
    """findings.json's per-phase seconds are each phase's own wall time, not the time since
    the audit began; the audit's own wall time is kept apart (AuditResult.seconds)."""
    result = AuditResult(Path("unused"), [])
    phases = _Phases(SilentObserver(), result)
    durations = {"links": 0.3, "scan": 0.2, "egress": 0.1, "discovery": 0.1}
    steps = [NetworkPhase(n, n, _sleeper(d)) for n, d in durations.items()]
    began = time.monotonic()
    run_overlapping(steps, phases.run)
    took = time.monotonic() - began
    for name, seconds in durations.items():
        assert seconds <= result.phases[name] < seconds + 0.08, name
    assert took < sum(durations.values())


def test_a_phase_that_fails_in_its_thread_is_a_problem_not_a_crash() -> None:
    result = AuditResult(Path("unused"), [])
    observer = SilentObserver()
    phases = _Phases(observer, result)

    def broken() -> None:
        raise OSError("tcpdump vanished")

    run_overlapping(
        [NetworkPhase("links", "l", broken), NetworkPhase("scan", "s", _sleeper(0.05))],
        phases.run,
    )
    assert result.problems == ["links: OSError: tcpdump vanished"]
    assert observer.problems == ["links: OSError: tcpdump vanished"]
    assert set(result.phases) == {"links", "scan"}


def _sleeper(seconds: float) -> Callable[[], None]:
    return lambda: time.sleep(seconds)


# -- the link captures leave the audit's own packets out ------------------------------------


def _probes(scenario: str) -> NetworkProbes:
    inventory = load_inventory(CONTEXTS / scenario / "inventory.yaml")
    ctx = AuditContext(inventory=inventory)
    guard = ScopeGuard.from_inventory(inventory)
    return NetworkProbes(ctx, None, guard, SilentObserver(), ScanProfile())  # type: ignore[arg-type]


def test_the_link_filter_leaves_out_every_address_of_the_auditor_and_its_vantage_hosts() -> None:
    probes = _probes("baseline")
    bpf = probes._link_filter()
    inventory = probes.inventory
    own = {
        str(a)
        for n in inventory.networks.values()
        if n.auditor
        for a in (n.auditor.ipv4, n.auditor.ipv6)
        if a
    }
    vantage = {
        str(a)
        for h in inventory.hosts_with(Role.VANTAGE)
        for addresses in inventory.hosts[h].addresses.values()
        for a in addresses
    }
    assert own and vantage
    excluded = bpf.split("and not (", 1)[1].rstrip(")").split(" or ")
    assert sorted(excluded) == sorted(f"host {a}" for a in own | vantage)
    # The organisation's and the outside parties' own addresses are all still captured.
    for host in inventory.hosts:
        if host in inventory.hosts_with(Role.VANTAGE):
            continue
        for addresses in inventory.hosts[host].addresses.values():
            for address in addresses:
                assert f"host {address})" not in bpf and f"host {address} " not in bpf


def test_tcpdump_accepts_the_link_filter_and_it_drops_only_the_audits_packets(
    tmp_path: Path,
) -> None:
    """Compiled and run by tcpdump itself on packets written for it: the pipeline's flow is
    kept, the scan's and the auditor's SSH packets are not."""
    scapy = pytest.importorskip("scapy.all")
    bpf = _probes("baseline")._link_filter()

    def ether() -> object:  # both MACs given: scapy resolves none, so nothing is sent
        return scapy.Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")

    packets = [
        ether() / scapy.IP(src="10.98.10.10", dst="10.98.10.20") / scapy.UDP(dport=51820),
        ether() / scapy.IP(src="10.98.10.1", dst="10.98.10.20") / scapy.TCP(dport=443),
        ether() / scapy.IP(src="10.98.10.20", dst="10.98.10.1") / scapy.TCP(sport=443),
        ether() / scapy.IPv6(src="fd98:0:0:10::1", dst="fd98:0:0:10::20") / scapy.TCP(),
        ether() / scapy.IPv6(src="fd98:0:0:10::10", dst="fd98:0:0:10::20") / scapy.UDP(),
        ether() / scapy.IP(src="10.98.0.100", dst="10.98.10.20") / scapy.TCP(dport=22),
    ]
    pcap = tmp_path / "mixed.pcap"
    scapy.wrpcap(str(pcap), packets)
    kept = tmp_path / "kept.pcap"
    subprocess.run(
        ["tcpdump", "-r", str(pcap), "-w", str(kept), bpf], check=True, capture_output=True
    )
    sources = [
        p[scapy.IP].src if p.haslayer(scapy.IP) else p[scapy.IPv6].src
        for p in scapy.rdpcap(str(kept))
    ]
    assert sources == ["10.98.10.10", "fd98:0:0:10::10"]


# -- the scans start with the collection; only the protected networks' wait for it ----------


def test_only_the_protected_networks_scans_wait_for_the_collection() -> None:
    inventory = load_inventory(CONTEXTS / "baseline" / "inventory.yaml")
    collected = threading.Event()
    probes = NetworkProbes(
        AuditContext(inventory=inventory),
        None,  # type: ignore[arg-type]
        ScopeGuard.from_inventory(inventory),
        SilentObserver(),
        ScanProfile(tcp_ports="1-65535"),
        collected=collected,
    )
    # An external network's all-port profile needs nothing collected: no wait.
    assert probes._profile_for("carrier-in").tcp_ports == "1-65535"

    profiles: list[ScanProfile] = []
    waiting = threading.Thread(target=lambda: profiles.append(probes._profile_for("line-recv")))
    waiting.start()
    waiting.join(timeout=0.3)
    assert waiting.is_alive() and profiles == []  # held until the collection ends
    collected.set()
    waiting.join(timeout=5)
    assert len(profiles) == 1 and profiles[0].tcp_ports.startswith("1-1024,")
