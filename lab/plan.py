"""From the lab's description and a scenario to a plan: which containers, on which networks,
with which files. Pure: nothing here touches podman, so the plan can be tested offline.

Files come in layers, later ones replacing earlier ones at the same path:
image < ``lab/hosts/_organisation`` (organisation hosts) < ``lab/hosts/_terminal``
(terminals) < ``lab/hosts/<host>`` < generated files (keys, tunnels, pipeline, routes)
< the scenario's ``files`` (a ``null`` source removes the lab's file).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditor.domain.inventory import Role
from lab.keys import SshKey, WireGuardKey, new_ssh_key, new_wireguard_key
from lab.model import (
    AUDITOR_OCTET,
    HOSTS,
    NETWORKS,
    PIPELINE,
    TAPS,
    TUNNELS,
    WIREGUARD_PORT,
    LabHost,
    LabTunnel,
)
from lab.paths import HOSTS_DIR, SUDOERS_DIR
from lab.scenario import Scenario

XFER_KEY = "/etc/lab/keys/xfer_ed25519"
XFER_KNOWN_HOSTS = "/etc/lab/xfer_known_hosts"
KEEPALIVE_SECONDS = 10
PIPELINE_EVERY_SECONDS = 2
CANARY_TCP = (53, 80, 443, 8080)
CANARY_UDP = (53, 123)
SECRET_MODE = 0o600
#: The files every tap gets (its rule set): one folder for all of them.
TAP_FILES = HOSTS_DIR / "_tap" / "rootfs"


@dataclass
class ContainerPlan:
    """One container: a baseline host (possibly playing others' parts) or a scenario's new one."""

    host: str
    networks: dict[str, int]  #: network -> host octet (IPv4 .N, IPv6 ::N)
    sysctls: dict[str, str]
    files: dict[str, bytes] = field(default_factory=dict)
    secret_files: set[str] = field(default_factory=set)
    exec: list[str] = field(default_factory=list)
    tunnels: list[str] = field(default_factory=list)  #: wg interfaces that must handshake
    plays: list[str] = field(default_factory=list)
    host_key: SshKey | None = None
    machine_id: str = ""
    #: The podman name when it is not ``lab-<host>`` (hosts made outside a lab, which
    #: ``lab down`` must not remove).
    name: str = ""
    #: network -> a fixed MAC address (otherwise podman draws one at every start)
    macs: dict[str, str] = field(default_factory=dict)

    @property
    def container(self) -> str:
        return self.name or f"lab-{self.host}"

    @property
    def needs_tun(self) -> bool:
        return bool(self.tunnels) or any(h in HOSTS and HOSTS[h].tunnels for h in self.roles_of)

    @property
    def roles_of(self) -> list[str]:
        """The logical hosts this container is: itself and the hosts it plays."""
        return [self.host, *self.plays]

    def addresses(self) -> list[str]:
        return [
            addr
            for net, octet in self.networks.items()
            for addr in (NETWORKS[net].address4(octet), NETWORKS[net].address6(octet))
        ]


@dataclass
class LabKeys:
    auditor: SshKey
    host_keys: dict[str, SshKey]
    xfer: dict[str, SshKey]
    wireguard: dict[tuple[str, str], WireGuardKey]  #: (tunnel, host) -> key


@dataclass
class LabPlan:
    scenario: Scenario
    containers: dict[str, ContainerPlan]
    keys: LabKeys
    #: logical host -> the container that does its work (differs when a host is played)
    placed_in: dict[str, str]
    #: The remote layout's vantage hosts (lab.model.TAPS): created with the lab, started
    #: only by ``auditor lab taps up``.
    taps: dict[str, ContainerPlan] = field(default_factory=dict)

    def known_hosts_lines(self) -> list[str]:
        """One line per container, taps included: every address it holds, then its host key."""
        lines = []
        for plan in [*self.containers.values(), *self.taps.values()]:
            assert plan.host_key is not None
            lines.append(known_hosts_line(plan.addresses(), plan.host_key))
        return lines

    @property
    def auditor_public_key(self) -> str:
        return self.keys.auditor.public_line


def tap_mac(network_index: int, octet: int) -> str:
    """A locally administered unicast MAC address (``02:...``) made of the tap's address."""
    return f"02:98:00:00:{network_index:02x}:{octet:02x}"


def known_hosts_line(addresses: list[str], host_key: SshKey) -> str:
    return f"{','.join(addresses)} {host_key.public_key}"


def octet_of(address: str) -> int:
    return int(address.rsplit(".", 1)[1])


def make_plan(scenario: Scenario) -> LabPlan:
    present = [h for h in HOSTS if not scenario.is_absent(h)] + scenario.new_hosts
    placed_in = {h: h for h in present}
    for host in present:
        for played in scenario.spec(host).plays:
            placed_in[played] = host
    keys = LabKeys(
        auditor=new_ssh_key("auditor@reference-lab"),
        host_keys={h: new_ssh_key(f"root@{h}") for h in present},
        xfer={h: new_ssh_key(f"xfer@{h}") for h in ("hospital", "proc-srv", "send-srv")},
        wireguard={
            (t.name, h): new_wireguard_key()
            for t in TUNNELS.values()
            for h in (t.initiator, t.responder)
        },
    )
    containers = {h: _container(h, scenario, keys) for h in present}
    plan = LabPlan(scenario, containers, keys, placed_in)
    for container in containers.values():
        _add_generated_files(container, plan)
        _apply_scenario_files(container, scenario)
    plan.taps = {name: tap_container(name, plan.auditor_public_key) for name in TAPS}
    return plan


def tap_container(name: str, auditor_public_key: str) -> ContainerPlan:
    """A tap of lab.model.TAPS: its one network, a host key and machine-id of its own, the
    auditor's key and sudoers (whose ``Host_Alias VANTAGE`` lets it run nmap and tcpdump),
    sshd. No organisation role, no tunnel, no pipeline, forwarding off."""
    tap = TAPS[name]
    container = ContainerPlan(
        host=name,
        networks=dict(tap.addresses),
        sysctls=_sysctls(router=False),
        host_key=new_ssh_key(f"root@{name}"),
        machine_id=uuid.uuid4().hex,
        # A tap is stopped and started again between audits: with the MAC podman would draw
        # anew, this machine's neighbour cache would send to the old one for up to a minute.
        macs={net: tap_mac(NETWORKS[net].index, octet) for net, octet in tap.addresses.items()},
    )
    for source in sorted(p for p in TAP_FILES.rglob("*") if p.is_file()):
        _put(container, "/" + str(source.relative_to(TAP_FILES)), source.read_bytes())
    _add_identity(container)
    _add_auditor_access(container, auditor_public_key)
    _put(container, "/etc/lab/network.sh", _network_script(container, [], []))
    _put(container, "/etc/lab/services", "rsyslog\nsshd\n")
    return container


def _container(host: str, scenario: Scenario, keys: LabKeys) -> ContainerPlan:
    spec = scenario.spec(host)
    base = HOSTS.get(host)
    networks: dict[str, int] = dict(base.addresses) if base else {}
    for played in spec.plays:
        networks.update(HOSTS[played].addresses)
    networks.update({net: octet_of(addr) for net, addr in spec.networks.items()})
    sysctls = _sysctls(bool(base and base.router))
    sysctls.update({k: str(v) for k, v in spec.sysctls.items()})
    return ContainerPlan(
        host=host,
        networks=networks,
        sysctls=sysctls,
        exec=list(spec.exec),
        plays=list(spec.plays),
        host_key=keys.host_keys[host],
        machine_id=uuid.uuid4().hex,
    )


def _sysctls(router: bool) -> dict[str, str]:
    forwarding = "1" if router else "0"
    return {
        "net.ipv4.ip_forward": forwarding,
        "net.ipv6.conf.all.forwarding": forwarding,
        # Addresses are usable at once: no duplicate detection delay at start-up.
        "net.ipv6.conf.all.accept_dad": "0",
        "net.ipv6.conf.default.accept_dad": "0",
    }


# -- generated files -----------------------------------------------------------------------
def _add_generated_files(container: ContainerPlan, plan: LabPlan) -> None:
    logical = [HOSTS[h] for h in container.roles_of if h in HOSTS]
    own = HOSTS.get(container.host)
    if own is not None:
        _add_tree(container, own)
    _add_identity(container)
    if own is not None and own.auditor_login:
        _add_auditor_access(container, plan.auditor_public_key)
    tunnels = [t for h in logical for t in h.tunnels]
    for tunnel in tunnels:
        _add_tunnel(container, tunnel, plan)
    _put(container, "/etc/lab/network.sh", _network_script(container, logical, tunnels))
    _add_transfer_files(container, logical, plan)
    pipeline = _pipeline_config(logical, plan)
    services = ["rsyslog", "sshd"]
    if pipeline["loops"] or pipeline["servers"]:
        _put(container, "/etc/lab/pipeline.json", json.dumps(pipeline, indent=2) + "\n")
        services.append("pipeline")
    if own is not None and Role.TERMINAL in own.roles:
        services.append("usbguard")
    _put(container, "/etc/lab/services", "\n".join(services) + "\n")


def _add_identity(container: ContainerPlan) -> None:
    """The machine-id and SSH host key that make this container a machine of its own."""
    assert container.host_key is not None
    _put(container, "/etc/machine-id", container.machine_id + "\n")
    _put(container, "/etc/ssh/ssh_host_ed25519_key", container.host_key.private_openssh, True)
    _put(container, "/etc/ssh/ssh_host_ed25519_key.pub", container.host_key.public_line + "\n")


def _add_auditor_access(container: ContainerPlan, auditor_public_key: str) -> None:
    """The auditor's key login and its exact-command sudo rules (and sudo's logging)."""
    _put(container, "/home/auditor/.ssh/authorized_keys", auditor_public_key + "\n")
    _put(container, "/etc/sudoers.d/auditor", (SUDOERS_DIR / "auditor").read_bytes())
    _put(container, "/etc/sudoers.d/logging", (SUDOERS_DIR / "logging").read_bytes())


def collection_clone(name: str, like: str, auditor_public_key: str) -> ContainerPlan:
    """A container podman names ``name``, set up as the lab sets up host ``like`` for SSH
    collection: its configuration layers, a host key and machine-id of its own, the
    auditor's key and sudoers, its services. Without the lab's networks, tunnels, transfer
    keys or pipeline: the caller attaches it to a network of its own (benchmarks)."""
    host = HOSTS[like]
    if not host.auditor_login:
        raise ValueError(f"the auditor does not log in to {like}")
    container = ContainerPlan(
        host=like,
        networks={},
        sysctls=_sysctls(host.router),
        host_key=new_ssh_key(f"root@{name}"),
        machine_id=uuid.uuid4().hex,
        name=name,
    )
    _add_tree(container, host)
    _add_identity(container)
    _add_auditor_access(container, auditor_public_key)
    _put(container, "/etc/lab/network.sh", _network_script(container, [], []))
    services = ["rsyslog", "sshd", *(["usbguard"] if Role.TERMINAL in host.roles else [])]
    _put(container, "/etc/lab/services", "\n".join(services) + "\n")
    return container


#: usbguard-daemon refuses to start when its configuration is readable by others.
_OWNER_ONLY_PREFIXES = ("/etc/usbguard/",)


def _put(container: ContainerPlan, path: str, content: str | bytes, secret: bool = False) -> None:
    container.files[path] = content.encode() if isinstance(content, str) else content
    if secret or path.startswith(_OWNER_ONLY_PREFIXES):
        container.secret_files.add(path)


def _add_tree(container: ContainerPlan, host: LabHost) -> None:
    layers = []
    if host.is_organisation:
        layers.append(HOSTS_DIR / "_organisation" / "rootfs")
    if Role.TERMINAL in host.roles:
        layers.append(HOSTS_DIR / "_terminal" / "rootfs")
    layers.append(HOSTS_DIR / host.name / "rootfs")
    for layer in layers:
        for source in sorted(p for p in layer.rglob("*") if p.is_file()):
            _put(container, "/" + str(source.relative_to(layer)), source.read_bytes())


def _add_tunnel(container: ContainerPlan, tunnel: LabTunnel, plan: LabPlan) -> None:
    me = tunnel.initiator if tunnel.initiator in container.roles_of else tunnel.responder
    peer = tunnel.peer_of(me)
    my_key = plan.keys.wireguard[(tunnel.name, me)]
    peer_key = plan.keys.wireguard[(tunnel.name, peer)]
    lines = ["[Interface]", f"PrivateKey = {my_key.private}"]
    if me == tunnel.responder or not _responds_elsewhere(container, tunnel):
        # A machine that plays both a responder and an initiator (shared-host) can listen on
        # 51820 once: its initiating side then uses a port of the system's choosing.
        lines.append(f"ListenPort = {WIREGUARD_PORT}")
    lines += [
        "",
        "[Peer]",
        f"PublicKey = {peer_key.public}",
        f"AllowedIPs = {tunnel.address4(tunnel.octet_of(peer))}/32",
    ]
    if me == tunnel.initiator:
        # Only the initiator knows where its peer is: the responder can only answer.
        over = NETWORKS[tunnel.over]
        peer_octet = HOSTS[peer].addresses[tunnel.over]
        lines += [
            f"Endpoint = {over.address4(peer_octet)}:{WIREGUARD_PORT}",
            f"PersistentKeepalive = {KEEPALIVE_SECONDS}",
        ]
    _put(container, f"/etc/lab/wireguard/{tunnel.name}.conf", "\n".join(lines) + "\n", True)
    container.tunnels.append(tunnel.name)


def _responds_elsewhere(container: ContainerPlan, tunnel: LabTunnel) -> bool:
    return any(
        other.name != tunnel.name and other.responder in container.roles_of
        for other in TUNNELS.values()
    )


def _network_script(
    container: ContainerPlan, logical: list[LabHost], tunnels: list[LabTunnel]
) -> str:
    lines = [
        "# Generated by `auditor lab up`: this host's routes and tunnels (run by lab-init).",
        "# No default route unless the lab says so (podman adds none on internal networks;",
        "# this makes sure of it).",
        "while ip -4 route del default 2>/dev/null; do :; done",
        "while ip -6 route del default 2>/dev/null; do :; done",
    ]
    for tunnel in tunnels:
        me = tunnel.initiator if tunnel.initiator in container.roles_of else tunnel.responder
        address = f"{tunnel.address4(tunnel.octet_of(me))}/24"
        lines += [
            f"if [ -f /etc/lab/wireguard/{tunnel.name}.conf ]; then",
            f"    lab-wg-up {tunnel.name} {address}",
            "fi",
        ]
    for host in logical:
        if host.default_via is not None:
            net, octet = host.default_via
            lines.append(f"ip -4 route add default via {NETWORKS[net].address4(octet)}")
            lines.append(f"ip -6 route add default via {NETWORKS[net].address6(octet)}")
    return "\n".join(lines) + "\n"


def _sftp_target(plan: LabPlan, host: str, network: str) -> tuple[str, str]:
    """(user@address, known_hosts line) of ``host``'s SSH on ``network`` or tunnel."""
    if network in TUNNELS:
        tunnel = TUNNELS[network]
        address = tunnel.address4(tunnel.octet_of(host))
    else:
        address = NETWORKS[network].address4(HOSTS[host].addresses[network])
    holder = plan.containers[plan.placed_in[host]]
    assert holder.host_key is not None
    return f"xfer@{address}", f"{address} {holder.host_key.public_key}"


#: Who pushes or pulls to whom, over which network: (client, server, network).
TRANSFERS = (
    ("hospital", "recv-srv", "wg-in"),
    ("proc-srv", "recv-srv", "line-recv"),
    ("proc-srv", "send-srv", "line-send"),
    ("send-srv", "recipient", "wg-out"),
)


def _add_transfer_files(container: ContainerPlan, logical: list[LabHost], plan: LabPlan) -> None:
    names = {h.name for h in logical}
    authorized = [
        plan.keys.xfer[client].public_line for client, server, _ in TRANSFERS if server in names
    ]
    if authorized:
        unique = list(dict.fromkeys(authorized))
        _put(container, "/home/xfer/.ssh/authorized_keys", "\n".join(unique) + "\n")
    clients = [c for c in names if c in plan.keys.xfer]
    if clients:
        # A container playing two clients uses the first one's key (both are authorized).
        _put(container, XFER_KEY, plan.keys.xfer[sorted(clients)[0]].private_openssh, True)
        known = [_sftp_target(plan, s, n)[1] for c, s, n in TRANSFERS if c in names]
        _put(container, XFER_KNOWN_HOSTS, "\n".join(dict.fromkeys(known)) + "\n")


def _pipeline_config(logical: list[LabHost], plan: LabPlan) -> dict[str, Any]:
    loops: list[dict[str, Any]] = []
    servers: list[dict[str, Any]] = []

    def sftp(server: str, network: str, **step: Any) -> dict[str, Any]:
        target, _ = _sftp_target(plan, server, network)
        return {"target": target, "key": XFER_KEY, "known_hosts": XFER_KNOWN_HOSTS, **step}

    for host in logical:
        for part in host.pipeline:
            if part == "produce":
                loops.append(
                    _loop(
                        "deliver",
                        [
                            {"type": "produce", "to_dir": PIPELINE.outbox, "prefix": host.name},
                            sftp(
                                "recv-srv",
                                "wg-in",
                                type="sftp-push",
                                from_dir=PIPELINE.outbox,
                                remote_dir="incoming",
                            ),
                        ],
                    )
                )
            elif part == "process":
                loops.append(
                    _loop(
                        "process",
                        [
                            sftp(
                                "recv-srv",
                                "line-recv",
                                type="sftp-pull",
                                remote_dir="incoming",
                                to_dir="/var/lib/lab/pulled",
                            ),
                            {
                                "type": "process",
                                "from_dir": "/var/lib/lab/pulled",
                                "to_dir": "/var/lib/lab/processed",
                                "marker": host.name,
                            },
                            sftp(
                                "send-srv",
                                "line-send",
                                type="sftp-push",
                                from_dir="/var/lib/lab/processed",
                                remote_dir="outgoing",
                            ),
                        ],
                    )
                )
            elif part == "send":
                loops.append(
                    _loop(
                        "send",
                        [
                            sftp(
                                "recipient",
                                "wg-out",
                                type="sftp-push",
                                from_dir=PIPELINE.outgoing,
                                remote_dir="inbox",
                            ),
                        ],
                    )
                )
            elif part == "receive":
                loops.append(
                    _loop(
                        "keep-inbox-small",
                        [
                            {"type": "prune", "dir": PIPELINE.inbox, "keep": 500},
                        ],
                    )
                )
            elif part == "canary":
                servers.append(
                    {
                        "type": "canary",
                        "tcp": list(CANARY_TCP),
                        "udp": list(CANARY_UDP),
                        "log": "/var/log/lab/canary.log",
                    }
                )
    return {"loops": loops, "servers": servers}


def _loop(name: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "every": PIPELINE_EVERY_SECONDS, "steps": steps}


def _apply_scenario_files(container: ContainerPlan, scenario: Scenario) -> None:
    for target, source in scenario.spec(container.host).files.items():
        if source is None:
            container.files.pop(target, None)
            if target.startswith("/etc/lab/wireguard/") and target.endswith(".conf"):
                name = Path(target).stem
                container.tunnels = [t for t in container.tunnels if t != name]
        else:
            _put(container, target, scenario.source_file(source).read_bytes())


def auditor_address(network: str) -> str:
    return NETWORKS[network].address4(AUDITOR_OCTET)
