"""The network phases of an audit: scans, egress tests, link captures, discovery.

Each phase runs the probes of ``probes/`` with the scope guard and the evidence store, then
condenses their results into the observations the checks read (``policies.empirical``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from functools import partial
from typing import TypeVar

from auditor.audit.observer import AuditObserver
from auditor.audit.options import AuditOptions
from auditor.audit.remote import (
    CAPTURE_TEMPLATES,
    EGRESS_TEMPLATES,
    VANTAGE_TEMPLATES,
    SshRemote,
)
from auditor.audit.scope import ScopeGuard
from auditor.domain.attempts import Attempt, ErrorReason
from auditor.domain.inventory import Role, Zone
from auditor.evidence.store import EvidenceStore
from policies.context import AuditContext
from policies.empirical import (
    DiscoveryObservation,
    EgressAttempt,
    EgressObservation,
    Flow,
    LinkObservation,
    OpenPort,
    ScanObservation,
)
from probes.capture import CaptureSpec
from probes.discovery import DiscoveryResult, discover_from_remote, discover_inventory_network
from probes.egress import EgressResult, Watch, plan_from_inventory, run_egress_test
from probes.linkclass import CaptureStatus, LinkClassification, classify_captured, classify_link
from probes.netlocal import local_interfaces, same_address
from probes.remotecapture import (
    RemoteCaptureSpec,
    remote_capture_window,
    running_remote_capture,
)
from probes.scanner import HostScan, PortState, ScanProfile, scan_from_here, scan_from_remote

T = TypeVar("T")
U = TypeVar("U")

#: Remote-control and remote-access ports scanned on protected networks besides 1-1024.
REMOTE_ACCESS_PORTS = frozenset({1194, 3389, 4500, 5800, 5900, 5901, 5902, 5938, 6568, 7070})
REMOTE_ACCESS_PORTS |= frozenset({8000, 8080, 8443, 21115, 21116, 21117, 21118, 51820})


#: How long the egress captures stay open after a host's last attempt (probes.egress's
#: linger). Every attempt's packets leave while its command runs (nc -w 2 retransmits its
#: SYN within those 2 s; ping sends once), so what the linger waits for is transit and a
#: router's neighbour resolution: milliseconds on a LAN or a carrier VPN. One second keeps a
#: wide margin and, with two hosts tested one after the other, saves 2 s of the audit.
EGRESS_LINGER_SECONDS = 1.0


@dataclass(frozen=True)
class NetworkPhase:
    name: str
    description: str
    run: Callable[[], None]


#: Pairs of network phases that must never overlap, and why (docs/network-probes.md has the
#: full table). Every other pair may: what one sends, the other neither captures nor counts.
CONFLICTS: dict[frozenset[str], str] = {
    frozenset({"collect", "egress"}): (
        "the collection lists the hosts' processes and sockets: the egress test's nc and "
        "ping would be in them"
    ),
    frozenset({"links", "egress"}): (
        "egress attempts cross the captured external networks from the organisation's own "
        "hosts (and draw ICMP errors and NAT'd answers addressed to them): the link "
        "captures would classify them as the organisation's traffic"
    ),
    frozenset({"scan", "discovery"}): (
        "both are nmap runs on this machine's two cores: together, the all-port scans fall "
        "behind their packet rate and the IPv6 neighbour sweep's solicitations wait for CPU "
        "(measured: the sweep took 11 s instead of 2 s), and a sweep starved of CPU risks "
        "missing an answer"
    ),
}


def conflict(first: str, second: str) -> str | None:
    """Why two phases must not overlap, or None when they may."""
    return CONFLICTS.get(frozenset({first, second}))


def run_overlapping(
    phases: Sequence[NetworkPhase],
    run: Callable[[NetworkPhase], None],
    conflicts: Callable[[str, str], str | None] = conflict,
) -> None:
    """``run`` every phase in a thread of its own, each as soon as every EARLIER phase it
    conflicts with has finished. Later phases never hold up earlier ones, so this cannot
    deadlock, and two conflicting phases never overlap whatever their durations.

    The first exception a phase raised is raised again once all phases have ended."""
    finished = {phase.name: threading.Event() for phase in phases}
    errors: list[BaseException] = []

    def start(index: int) -> None:
        phase = phases[index]
        try:
            for earlier in phases[:index]:
                if conflicts(earlier.name, phase.name) is not None:
                    finished[earlier.name].wait()
            run(phase)
        except BaseException as exc:  # handed to the caller's thread below
            errors.append(exc)
        finally:
            finished[phase.name].set()

    threads = [
        threading.Thread(target=start, args=(i,), name=f"phase-{p.name}", daemon=True)
        for i, p in enumerate(phases)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def audit_scan_profile(rate: int) -> ScanProfile:
    """All TCP ports at ``rate`` packets a second at least; UDP on the common ports."""
    return ScanProfile(tcp_min_rate=rate, max_retries=1)


def _port_ranges(ports: set[int]) -> str:
    """nmap's -p syntax for a set of ports, runs collapsed: "1-1024,3389,5900-5902"."""
    ordered = sorted(ports)
    runs: list[list[int]] = []
    for port in ordered:
        if runs and port == runs[-1][1] + 1:
            runs[-1][1] = port
        else:
            runs.append([port, port])
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in runs)


class NetworkProbes:
    def __init__(
        self,
        ctx: AuditContext,
        store: EvidenceStore,
        guard: ScopeGuard,
        observer: AuditObserver,
        profile: ScanProfile,
        *,
        collected: threading.Event | None = None,
    ) -> None:
        """``collected`` is set once the hosts' facts are in ``ctx.collection`` (or their
        collection failed); the scans of protected networks wait for it. None: they are."""
        self.profile = profile
        self.collected = collected
        self.ctx = ctx
        self.store = store
        self.guard = guard
        self.observer = observer
        self.inventory = ctx.inventory

    def steps(self, options: AuditOptions) -> list[NetworkPhase]:
        """The phases in the order they may start: a phase waits only for the earlier ones it
        conflicts with (``CONFLICTS``). So the links are captured while the scans run; the
        egress tests follow the captures, still beside the scans (their captures keep only
        new connections toward their targets, which no scan sends); the neighbour sweeps
        follow the scans."""
        seconds = options.link_capture_seconds
        return [
            NetworkPhase(
                "links",
                f"{seconds:.0f} s captures on the external networks",
                lambda: self.links(seconds),
            ),
            NetworkPhase("scan", "port scans from each vantage point", self.scans),
            NetworkPhase(
                "egress", "egress attempts from receiving and processing hosts", self.egress
            ),
            NetworkPhase(
                "discovery", "ARP / neighbour sweeps of protected networks", self.discovery
            ),
        ]

    # -- links ---------------------------------------------------------------------------
    def links(self, seconds: float) -> None:
        networks = self._link_networks()
        with SshRemote(self.inventory, self.guard.check, CAPTURE_TEMPLATES) as remote:
            results = _parallel(networks, lambda n: self._capture_link(remote, n, seconds))
        for network, attempt in zip(networks, results, strict=True):
            self.ctx.links[network] = _convert(
                attempt, partial(_link_observation, network, seconds=seconds)
            )

    def _link_networks(self) -> list[str]:
        """External networks where an organisation host meets an outside party."""
        wanted = {
            n
            for host in self.inventory.organisation_hosts()
            for shared in self.ctx.outside_parties(host).values()
            for n in shared
            if n in self.inventory.networks
        }
        return sorted(wanted)

    def _capture_link(
        self, remote: SshRemote, network: str, seconds: float
    ) -> Attempt[LinkClassification]:
        """From this machine's address on the network, else from a vantage host on it."""
        local = self._local_address(network)
        if local is not None:
            spec = CaptureSpec(local, self._link_filter(), max_seconds=seconds, network=network)
            self.observer.step("links", f"capturing on {network} for {seconds:.0f} s")
            return classify_link(spec, self.store)
        vantage = self._vantage_on(network)
        if vantage is None:
            return _no_vantage(network, "capture")
        self.observer.step("links", f"capturing on {network} from {vantage} for {seconds:.0f} s")
        remote_spec = RemoteCaptureSpec(
            vantage,
            self._addresses_of(vantage, network),
            self._link_filter(),
            max_seconds=seconds,
            network=network,
        )
        return classify_captured(remote_capture_window(remote_spec, remote, self.store))

    def _link_filter(self) -> str:
        """Every IP packet except the audit's own: to or from this machine's addresses and
        the vantage hosts' (the auditor's outside machines). Those carry only the scans,
        the SSH sessions and the egress test's targets, never the organisation's traffic,
        so leaving them out lets the scans run while the links are captured."""
        own = sorted(self._audit_addresses())
        if not own:
            return "ip or ip6"
        return "(ip or ip6) and not (" + " or ".join(f"host {a}" for a in own) + ")"

    def _audit_addresses(self) -> set[str]:
        mine = {
            str(address)
            for definition in self.inventory.networks.values()
            if definition.auditor is not None
            for address in (definition.auditor.ipv4, definition.auditor.ipv6)
            if address is not None
        }
        vantages = {
            str(address)
            for host in self.inventory.hosts_with(Role.VANTAGE)
            for addresses in self.inventory.hosts[host].addresses.values()
            for address in addresses
        }
        return mine | vantages

    # -- egress --------------------------------------------------------------------------
    def egress(self) -> None:
        hosts = sorted(
            {
                *self.inventory.hosts_with(Role.RECEIVING),
                *self.inventory.hosts_with(Role.PROCESSING),
            }
        )
        with (
            SshRemote(self.inventory, self.guard.check, EGRESS_TEMPLATES) as remote,
            SshRemote(self.inventory, self.guard.check, CAPTURE_TEMPLATES) as watchers,
        ):
            # One host at a time: captures attribute attempts by signature, not by host.
            for host in hosts:
                self.observer.step("egress", f"egress attempts from {host}")
                attempt = run_egress_test(
                    plan_from_inventory(self.inventory, host),
                    run_remote=remote,
                    sink=self.store,
                    check_target=self.guard.check,
                    linger=EGRESS_LINGER_SECONDS,
                    remote_watch=partial(self._watch_from_vantage, watchers),
                )
                self.ctx.egress[host] = _convert(attempt, _egress_observation)

    def _watch_from_vantage(
        self, remote: SshRemote, network: str, bpf: str, bound: float
    ) -> AbstractContextManager[Watch] | None:
        """The egress capture of a network this machine is not on, from a vantage host."""
        vantage = self._vantage_on(network)
        if vantage is None:
            return None
        spec = RemoteCaptureSpec(
            vantage,
            self._addresses_of(vantage, network),
            bpf,
            max_seconds=bound,
            max_packets=50_000,
            network=network,
        )
        return running_remote_capture(spec, remote, self.store)

    # -- scans ---------------------------------------------------------------------------
    def scans(self) -> None:
        """Every (network, family) this machine can scan and every network a vantage host
        stands on, all at once: each nmap leaves by its own interface or host, and the
        slowest scan, not their sum, sets the phase's time."""
        local = [
            (network, family)
            for network in self.inventory.networks
            if self._local_address(network) is not None
            for family in (4, 6)
            if self._scan_targets(network, family)
        ]
        remote = self._vantage_scan_jobs()
        with (
            SshRemote(self.inventory, self.guard.check, VANTAGE_TEMPLATES) as ssh,
            ThreadPoolExecutor(max_workers=max(1, len(local) + len(remote))) as pool,
        ):
            from_here = [pool.submit(self._scan_locally, *job) for job in local]
            from_vantages = [pool.submit(self._scan_from_vantage, ssh, *job) for job in remote]
            by_network: dict[str, Attempt[ScanObservation]] = {}
            for (network, _), done in zip(local, from_here, strict=True):
                by_network[network] = _merge_scans(
                    by_network.get(network), done.result(), union=True
                )
            for (_, network), done in zip(remote, from_vantages, strict=True):
                by_network[network] = _merge_scans(by_network.get(network), done.result())
        self.ctx.scans.update(by_network)
        for network in self.inventory.networks:
            if network not in self.ctx.scans and self._scan_targets(network):
                self.ctx.scans[network] = _no_vantage(network, "scan")

    def _scan_targets(self, network: str, family: int | None = None) -> list[str]:
        """The organisation hosts' declared addresses on a network (of one family)."""
        return sorted(
            {
                str(a)
                for h in self.inventory.organisation_hosts()
                for a in self.inventory.hosts[h].addresses.get(network, [])
                if family is None or a.version == family
            }
        )

    def _profile_for(self, network: str) -> ScanProfile:
        """All TCP ports toward external networks; inside the protected area the well-known
        range plus every port a collected host listens on, which is what the
        unauthorized-access control needs and a fraction of the time.

        Only the protected networks' profile needs the collection, so only their scans wait
        for it: the all-port scans, the audit's longest wait, start with the collection."""
        if self.inventory.networks[network].zone is not Zone.PROTECTED:
            return self.profile
        if self.collected is not None:
            self.collected.wait()
        ports = set(range(1, 1025)) | REMOTE_ACCESS_PORTS
        for attempt in self.ctx.collection.values():
            if (facts := attempt.collected) is not None:
                ports.update(listener.port for listener in facts.listeners or [])
        return replace(self.profile, tcp_ports=_port_ranges(ports))

    def _scan_locally(self, network: str, family: int) -> Attempt[ScanObservation]:
        definition = self.inventory.networks[network].auditor
        source = getattr(definition, f"ipv{family}", None) if definition else None
        if source is None:
            return Attempt.failed(
                "network", network, ErrorReason.UNREACHABLE,
                f"this machine has no IPv{family} address on {network} (the inventory names none)",
            )  # fmt: skip
        targets = self._scan_targets(network, family)
        self.observer.step("scan", f"scanning {len(targets)} IPv{family} addresses on {network}")
        attempts = scan_from_here(
            targets,
            source_addresses=[str(source)],
            sink=self.store,
            check_target=self.guard.check,
            profile=self._profile_for(network),
        )
        return _scan_observation(network, f"local {source}", attempts)

    def _vantage_scan_jobs(self) -> list[tuple[str, str]]:
        """(vantage host, network) for every network with targets that a vantage point (role
        vantage, reached over SSH, nmap allowed by its sudoers) stands on: beside this
        machine's scan where it has an address there, instead of it where it has none (the
        auditor plugged into fewer segments)."""
        return [
            (vantage, network)
            for vantage in self.inventory.hosts_with(Role.VANTAGE)
            if self.inventory.hosts[vantage].ssh
            for network in self.inventory.hosts[vantage].addresses
            if network in self.inventory.networks and self._scan_targets(network)
        ]

    def _scan_from_vantage(
        self, remote: SshRemote, vantage: str, network: str
    ) -> Attempt[ScanObservation]:
        self.observer.step("scan", f"scanning {network} from {vantage}")
        attempts = scan_from_remote(
            self._scan_targets(network),
            vantage_host=vantage,
            run_remote=remote,
            sink=self.store,
            check_target=self.guard.check,
            profile=self._profile_for(network),
            on_link=True,  # the vantage host has an address on the network it scans
        )
        return _scan_observation(network, f"ssh {vantage}", attempts)

    # -- discovery -----------------------------------------------------------------------
    def discovery(self) -> None:
        networks = self.inventory.networks_in(Zone.PROTECTED)
        with SshRemote(self.inventory, self.guard.check, VANTAGE_TEMPLATES) as remote:
            results = _parallel(networks, partial(self._discover, remote))
        for network, attempt in zip(networks, results, strict=True):
            self.ctx.discovery[network] = _convert(attempt, _discovery_observation)

    def _discover(self, remote: SshRemote, network: str) -> Attempt[DiscoveryResult]:
        """From this machine's address on the network, else from a vantage host on it."""
        if self._local_address(network) is not None:
            self.observer.step("discovery", f"sweeping {network}")
            return discover_inventory_network(
                self.inventory, network, sink=self.store, check_target=self.guard.check
            )
        vantage = self._vantage_on(network)
        if vantage is None:
            return _no_vantage(network, "sweep")
        self.observer.step("discovery", f"sweeping {network} from {vantage}")
        swept = discover_from_remote(
            network=network,
            prefixes=[str(p) for p in self.inventory.networks[network].prefixes],
            vantage_host=vantage,
            vantage_addresses=self._addresses_of(vantage, network),
            run_remote=remote,
            sink=self.store,
            check_target=self.guard.check,
            known_ipv6=[
                str(a)
                for host in self.inventory.hosts.values()
                for a in host.addresses.get(network, [])
                if a.version == 6
            ],
        )
        return _without_this_machine(swept)

    def _vantage_on(self, network: str) -> str | None:
        """A vantage host (reached over SSH) with an address on ``network``, if any."""
        return next(
            (
                host
                for host in sorted(self.inventory.hosts_with(Role.VANTAGE))
                if self.inventory.hosts[host].ssh and self._addresses_of(host, network)
            ),
            None,
        )

    def _addresses_of(self, host: str, network: str) -> tuple[str, ...]:
        return tuple(str(a) for a in self.inventory.hosts[host].addresses.get(network, []))

    def _local_address(self, network: str) -> str | None:
        own = self.inventory.networks[network].auditor
        if own is None:
            return None
        address = own.ipv4 or own.ipv6
        return str(address) if address is not None else None


# -- condensing probe results into observations ------------------------------------------


def _parallel(items: Sequence[str], work: Callable[[str], T]) -> list[T]:
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(4, len(items))) as pool:
        return list(pool.map(work, items))


def _without_this_machine(swept: Attempt[DiscoveryResult]) -> Attempt[DiscoveryResult]:
    """A vantage host's sweep with this machine's own addresses left out, as a local sweep
    leaves them out: where this machine still has an address on a network the inventory
    does not plug it into (an SSH path, a management port), it is the auditor's own
    equipment, never an unknown neighbour."""
    if swept.value is None:
        return swept
    try:
        mine = {a for interface in local_interfaces() for a in interface.addresses}
    except (OSError, RuntimeError, ValueError) as exc:  # ip missing, failing, or garbled
        return Attempt.failed(
            swept.probe, swept.target, ErrorReason.INTERNAL,
            f"this machine's own addresses could not be listed to leave them out: {exc}",
            swept.evidence,
        )  # fmt: skip
    result = swept.value
    kept = replace(
        result,
        hosts=tuple(h for h in result.hosts if not _held_by(h.address, mine)),
        neighbours=tuple(n for n in result.neighbours if not _held_by(n.address, mine)),
        own_addresses=tuple(
            sorted(
                {
                    *result.own_addresses,
                    *(h.address for h in result.hosts if _held_by(h.address, mine)),
                }
            )
        ),
    )
    return Attempt.ok(swept.probe, swept.target, kept, swept.evidence)


def _held_by(address: str, mine: set[str]) -> bool:
    return any(same_address(address, own) for own in mine)


def _no_vantage(network: str, probe: str) -> Attempt[T]:
    """Nothing could look at ``network``: the auditor is not plugged into it and no vantage
    host stands on it (docs/network-probes.md, "Remote vantage points"). Missing evidence,
    never a verdict. ``probe``: "scan", "capture" or "sweep", for the message."""
    return Attempt.failed(
        "network", network, ErrorReason.UNREACHABLE,
        f"no {probe}: this machine has no address on {network} (the inventory names none), "
        "and no vantage host (role vantage, with an ssh address) is on it either",
    )  # fmt: skip


def _convert(attempt: Attempt[T], condense: Callable[[T], U | str]) -> Attempt[U]:
    """An attempt of the probe's result as an attempt of the check's observation.

    ``condense`` returns a string instead of an observation when the result, though
    completed, cannot support a verdict (for example a capture that saw no traffic).
    """
    if not attempt.succeeded or attempt.value is None:
        error = attempt.error
        return Attempt.failed(
            attempt.probe, attempt.target,
            error.reason if error else ErrorReason.INTERNAL,
            error.message if error else "no result",
            attempt.evidence,
        )  # fmt: skip
    condensed = condense(attempt.value)
    if isinstance(condensed, str):
        return Attempt.failed(
            attempt.probe, attempt.target, ErrorReason.INTERNAL, condensed, attempt.evidence
        )
    return Attempt.ok(attempt.probe, attempt.target, condensed, attempt.evidence)


def _link_observation(
    network: str, result: LinkClassification, *, seconds: float
) -> LinkObservation | str:
    if result.status is CaptureStatus.NO_TRAFFIC:
        return f"no IP traffic captured on {network} in {seconds:.0f} s"
    flows = tuple(
        Flow(
            src=f.client,
            dst=f.server,
            proto=f.proto,
            sport=f.client_port,
            dport=f.server_port,
            kind=str(f.link_class),
            detail=f.detail,
            packets=f.packets,
        )
        for f in result.flows
    )
    return LinkObservation(network=network, seconds=seconds, flows=flows)


def _egress_observation(result: EgressResult) -> EgressObservation:
    attempts = tuple(
        EgressAttempt(
            proto=a.kind.proto,
            destination=a.target,
            port=a.kind.port,
            executed=a.executed,
            outcome=str(a.outcome),
            seen_on=tuple(s.network for s in a.seen),
        )
        for a in result.attempts
    )
    ran = tuple(c.network for c in result.captures if c.ran)
    evidence = tuple(c.pcap_ref for c in result.captures if c.pcap_ref)
    return EgressObservation(result.host, ran, attempts, evidence)


def _scan_observation(
    network: str, vantage: str, attempts: list[Attempt[HostScan]]
) -> Attempt[ScanObservation]:
    failures = [a for a in attempts if not a.succeeded or a.value is None]
    evidence = [ref for a in attempts for ref in a.evidence]
    if failures:
        first = failures[0].error
        message = f"{len(failures)} of {len(attempts)} targets not scanned from {vantage}" + (
            f": {first.message}" if first else ""
        )
        reason = first.reason if first else ErrorReason.INTERNAL
        return Attempt.failed("scan", network, reason, message, evidence)
    scanned = [a.value for a in attempts if a.value is not None]
    open_ports = tuple(
        OpenPort(s.address, p.proto, p.port, str(p.state), p.service or "")
        for s in scanned
        for p in s.ports
        if p.state is PortState.OPEN
    )
    observation = ScanObservation(
        network=network,
        vantage=vantage,
        targets=tuple(s.address for s in scanned),
        open_ports=open_ports,
        evidence=tuple(evidence),
    )
    return Attempt.ok("scan", network, observation, evidence)


def _merge_scans(
    first: Attempt[ScanObservation] | None,
    second: Attempt[ScanObservation],
    *,
    union: bool = False,
) -> Attempt[ScanObservation]:
    """Two scans of one network must both have worked; open ports add up. ``union``: they
    scanned different targets (one per address family); otherwise the same targets from two
    vantage points, and only targets both reached count as scanned."""
    if first is None:
        return second
    if not (first.succeeded and second.succeeded and first.value and second.value):
        return first if not first.succeeded else second
    a, b = first.value, second.value
    targets = set(a.targets) | set(b.targets) if union else set(a.targets) & set(b.targets)
    vantage = a.vantage if a.vantage == b.vantage else f"{a.vantage}; {b.vantage}"
    merged = ScanObservation(
        network=a.network,
        vantage=vantage,
        targets=tuple(sorted(targets)),
        open_ports=a.open_ports + b.open_ports,
        evidence=a.evidence + b.evidence,
    )
    return Attempt.ok("scan", a.network, merged, [*first.evidence, *second.evidence])


def _discovery_observation(result: DiscoveryResult) -> DiscoveryObservation:
    live = {h.address: h.mac for h in result.hosts}
    return DiscoveryObservation(network=result.network, live=live)
