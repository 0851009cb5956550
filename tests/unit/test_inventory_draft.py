"""`auditor inventory draft`, offline: the draft made from the baseline lab's recorded facts
matches the lab's own inventory wherever a probe can know the answer, leaves TODOs where it
cannot, and the loader refuses those TODOs with file:line:column; addresses outside the scope
are refused before any connection.

``fill_todos`` (also used by the lab test) fills a draft's TODOs from a reference inventory,
matching networks and tunnels by prefix and hosts by address.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from netaddr import IPAddress, IPNetwork
from typer.testing import CliRunner

from auditor.analysis.stored import StoredModel, load_stored_model
from auditor.audit.draft import (
    TODO,
    Draft,
    DraftError,
    HostSpec,
    Sweep,
    build_draft,
    check_hosts_in_scope,
    parse_host_spec,
)
from auditor.audit.draft_yaml import render_draft, todo_count
from auditor.audit.scope import OutOfScopeError
from auditor.cli.exitcodes import ExitCode
from auditor.cli.main import app
from auditor.domain.attempts import Attempt
from auditor.domain.facts import HostFacts, Interface, InterfaceAddress, Listener
from auditor.domain.inventory import Inventory, Scope, SourceError, load_inventory

CONTEXTS = Path(__file__).parents[1] / "data" / "contexts"


# -- filling a draft from a reference inventory (shared with tests/lab) ----------------------


def _segment_prefixes(reference: Inventory) -> dict[str, set[IPNetwork]]:
    found = {n: set(d.prefixes) for n, d in reference.networks.items()}
    found.update({n: set(t.prefixes) for n, t in reference.tunnels.items()})
    return found


def _rename_segments(document: dict[str, Any], reference: Inventory) -> dict[str, str]:
    """Draft segment name -> the reference's, by a shared prefix."""
    reference_prefixes = _segment_prefixes(reference)
    names: dict[str, str] = {}
    for kind in ("networks", "tunnels"):
        for name, body in (document.get(kind) or {}).items():
            mine = {IPNetwork(body[k]) for k in ("ipv4", "ipv6") if k in body}
            match = [r for r, prefixes in reference_prefixes.items() if prefixes & mine]
            assert len(match) == 1, f"{kind}.{name} ({mine}) matches {match} in the reference"
            names[name] = match[0]
    return names


def _rename_hosts(document: dict[str, Any], reference: Inventory) -> dict[str, str]:
    """Draft host name -> the reference's, by a shared address (ssh included)."""
    names: dict[str, str] = {}
    for name, body in document["hosts"].items():
        mine = {IPAddress(a) for addrs in body["addresses"].values() for a in addrs}
        mine |= {IPAddress(body["ssh"])} if "ssh" in body else set()
        match = [
            r
            for r, host in reference.hosts.items()
            if mine & ({*host.all_addresses(), *([host.ssh] if host.ssh else [])})
        ]
        assert len(match) == 1, f"hosts.{name} ({mine}) matches {match} in the reference"
        names[name] = match[0]
    return names


def fill_todos(document: dict[str, Any], reference: Inventory) -> dict[str, Any]:
    """The draft with every TODO decided as ``reference`` decides it, and its names made the
    reference's (findings name their subjects, so equal findings need equal names)."""
    segments = _rename_segments(document, reference)
    hosts = _rename_hosts(document, reference)
    filled: dict[str, Any] = {**document, "organisation": reference.organisation}
    filled["networks"] = {
        segments[name]: {
            **body,
            "zone": reference.networks[segments[name]].zone.value,
            "medium": reference.networks[segments[name]].medium.value,
        }
        for name, body in document["networks"].items()
    }
    filled["tunnels"] = {
        segments[name]: {
            **body,
            "over": reference.tunnels[segments[name]].over
            if body["over"] == TODO
            else segments[body["over"]],
            "endpoints": [hosts.get(e, e) for e in body["endpoints"]],
        }
        for name, body in (document.get("tunnels") or {}).items()
    }
    filled["hosts"] = {}
    for name, body in document["hosts"].items():
        target = hosts[name]
        merged = filled["hosts"].setdefault(target, {"addresses": {}})
        merged["roles"] = [r.value for r in reference.hosts[target].roles]
        merged.update({k: v for k, v in body.items() if k not in ("roles", "addresses")})
        for segment, addresses in body["addresses"].items():
            merged["addresses"].setdefault(segments[segment], []).extend(addresses)
        for service in merged.get("services", []):
            service["from"] = sorted({segments[s] for s in service["from"]})
    return filled


def write_filled(draft_text: str, reference: Inventory, path: Path) -> Path:
    filled = fill_todos(yaml.safe_load(draft_text), reference)
    path.write_text(yaml.safe_dump(filled, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


# -- the draft of the recorded baseline ------------------------------------------------------


@pytest.fixture(scope="module")
def baseline() -> StoredModel:
    return load_stored_model(CONTEXTS / "baseline")


def _specs(model: StoredModel) -> list[HostSpec]:
    return [HostSpec(n, str(model.inventory.hosts[n].ssh)) for n in model.context.collection]


def _auditor_interfaces(inventory: Inventory) -> list[Interface]:
    """This machine's interfaces as the lab gives them: one address on every network."""
    interfaces = []
    for index, (_, network) in enumerate(sorted(inventory.networks.items())):
        own = network.auditor
        assert own is not None
        addresses = [
            InterfaceAddress(address=str(a), prefixlen=p.prefixlen, family=a.version)
            for a, p in ((own.ipv4, network.ipv4), (own.ipv6, network.ipv6))
            if a is not None and p is not None
        ]
        interfaces.append(Interface(name=f"br{index}", up=True, addresses=addresses))
    return interfaces


def _recorded_sweeps(model: StoredModel) -> dict[str, Sweep]:
    return {n: Sweep(dict(a.value.live)) for n, a in model.context.discovery.items() if a.value}


def draft_of(model: StoredModel, specs: list[HostSpec] | None = None) -> Draft:
    return build_draft(
        specs=specs if specs is not None else _specs(model),
        collected=model.context.collection,
        local=_auditor_interfaces(model.inventory),
        sweeps=_recorded_sweeps(model),
        scope=model.inventory.scope,
        access=model.inventory.ssh,
    )


def test_the_draft_finds_every_network_and_names_it_as_the_hosts_do(
    baseline: StoredModel,
) -> None:
    draft = draft_of(baseline)
    lab = baseline.inventory
    drafted = {n.name: set(n.prefixes) for n in draft.networks}
    # Networks a logged-in host is on keep the host's interface name; the others (this
    # machine's only: the Internet and the office LAN) are named after their prefix.
    assert drafted == {
        **{n: set(lab.networks[n].prefixes) for n in ("carrier-in", "carrier-out")},
        **{n: set(lab.networks[n].prefixes) for n in ("line-recv", "line-send", "term-lan")},
        "net-10-98-0-0-24": set(lab.networks["inet"].prefixes),
        "net-10-98-40-0-24": set(lab.networks["office"].prefixes),
    }
    for network in draft.networks:
        reference = lab.networks[lab.network_of(network.prefixes[0].ip) or ""]
        assert reference.auditor is not None
        assert network.auditor == [reference.auditor.ipv4, reference.auditor.ipv6]


def test_logged_in_hosts_get_every_address_and_their_listeners(baseline: StoredModel) -> None:
    draft = draft_of(baseline)
    lab = baseline.inventory
    for host in draft.hosts:
        assert host.ssh == str(lab.hosts[host.name].ssh)
        assert host.addresses == lab.hosts[host.name].addresses, host.name
    services = {h.name: {(s.port, s.proto): s.sources for s in h.services} for h in draft.hosts}
    # Bound to 0.0.0.0 and ::, so reachable (before the firewall) from every segment of the
    # host; chrony's 127.0.0.1:323 is reachable from none and is no service.
    assert services["recv-srv"] == {
        (22, "tcp"): ["carrier-in", "line-recv", "wg-in"],
        (51820, "udp"): ["carrier-in", "line-recv", "wg-in"],
    }
    assert services["term-1"] == {(22, "tcp"): ["term-lan"]}


def test_tunnels_end_at_the_peer_found_from_its_endpoint(baseline: StoredModel) -> None:
    draft = draft_of(baseline)
    tunnels = {t.name: t for t in draft.tunnels}
    assert sorted(tunnels) == ["wg-in", "wg-out"]
    wg_in = tunnels["wg-in"]
    assert (wg_in.over, wg_in.prefixes) == ("carrier-in", [IPNetwork("10.98.100.0/24")])
    peer = next(h for h in draft.neighbours if h.name == wg_in.ends[1].host)
    # The recorded sweeps cover the protected networks only: the hospital is known from
    # recv-srv's WireGuard peer (its endpoint and its allowed address in the tunnel).
    assert peer.addresses == {
        "carrier-in": [IPAddress("10.98.10.10")],
        "wg-in": [IPAddress("10.98.100.10")],
    }
    assert wg_in.ends[0].host == "recv-srv"


def test_an_unknown_device_on_a_protected_network_is_listed() -> None:
    model = load_stored_model(CONTEXTS / "rogue-device")
    draft = draft_of(model)
    known = {IPAddress(a) for h in model.inventory.hosts.values() for a in h.all_addresses()}
    found = [a for h in draft.neighbours for addrs in h.addresses.values() for a in addrs]
    rogue = [a for a in found if a not in known]
    # Its IPv4 and IPv6 answers came from one MAC: one device, named after its first address.
    assert rogue == [IPAddress("10.98.21.66"), IPAddress("fd98:0:0:21::66")]
    device = next(h for h in draft.neighbours if h.name == "unknown-10-98-21-66")
    assert device.addresses == {"line-recv": rogue}
    assert device.ssh is None


def test_the_same_facts_give_the_same_text_whatever_the_order_of_hosts(
    baseline: StoredModel, tmp_path: Path
) -> None:
    out = tmp_path / "draft.yaml"
    first = render_draft(draft_of(baseline), out)
    reordered = render_draft(draft_of(baseline, list(reversed(_specs(baseline)))), out)
    # Hosts logged in to keep the order they were given in; everything else is the same.
    assert sorted(first.splitlines()) == sorted(reordered.splitlines())
    assert [n.name for n in draft_of(baseline).networks] == [
        n.name for n in draft_of(baseline, list(reversed(_specs(baseline)))).networks
    ]


def test_filled_from_the_lab_inventory_the_draft_loads(
    baseline: StoredModel, tmp_path: Path
) -> None:
    text = render_draft(draft_of(baseline), tmp_path / "draft.yaml")
    assert todo_count(yaml.safe_load(text)) > 0
    filled = load_inventory(write_filled(text, baseline.inventory, tmp_path / "filled.yaml"))
    lab = baseline.inventory
    for name in baseline.context.collection:
        assert filled.hosts[name].addresses == lab.hosts[name].addresses
        assert filled.hosts[name].roles == lab.hosts[name].roles
    assert {n: d.prefixes for n, d in filled.networks.items()} == {
        n: d.prefixes for n, d in lab.networks.items()
    }
    assert {n: (t.over, t.prefixes, set(t.endpoints)) for n, t in filled.tunnels.items()} == {
        n: (t.over, t.prefixes, set(t.endpoints)) for n, t in lab.tunnels.items()
    }


# -- the loader refuses TODOs ---------------------------------------------------------------


def _line_col(text: str, needle: str) -> tuple[int, int]:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number, line.index(needle.strip()) + 1
    raise AssertionError(f"{needle!r} not in the draft")


def test_the_loader_refuses_each_todo_at_its_line(baseline: StoredModel, tmp_path: Path) -> None:
    path = tmp_path / "draft.yaml"
    text = render_draft(draft_of(baseline), path)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SourceError) as caught:
        load_inventory(path)
    problems = caught.value.problems
    assert len(problems) == todo_count(yaml.safe_load(text))
    line, column = _line_col(text, "organisation: TODO")
    assert problems[0] == (
        f"{path}:{line}:{column}: organisation: still a TODO from `auditor inventory draft`: "
        "decide the audited organisation's name, as it must appear on the reports"
    )
    zone = next(p for p in problems if ": networks.line-recv.zone:" in p)
    lines = text.splitlines()
    zone_line = int(zone.split(":")[1])
    assert lines[zone_line - 1].strip().startswith("zone: TODO")
    assert lines[zone_line - 2].strip().startswith("line-recv:")
    assert "decide the zone: external" in zone
    assert any("hosts.recv-srv.roles.0: still a TODO" in p for p in problems)


def test_a_todo_left_in_an_otherwise_valid_inventory_is_refused(tmp_path: Path) -> None:
    lab = (Path(__file__).parents[1] / "data" / "inventory" / "lab.yaml").read_text()
    path = tmp_path / "inventory.yaml"
    path.write_text(lab.replace("medium: leased-line", "medium: TODO", 1), encoding="utf-8")
    with pytest.raises(SourceError, match=r"\.medium: still a TODO .*decide the medium"):
        load_inventory(path)


# -- scope, names and the command --------------------------------------------------------------


def test_an_address_outside_the_scope_is_refused_before_any_connection() -> None:
    scope = Scope.model_validate({"authorized": ["10.98.0.0/16"]})
    specs = [HostSpec("recv-srv", "10.98.21.20"), HostSpec("elsewhere", "203.0.113.5")]
    with pytest.raises(OutOfScopeError, match=r"refusing '203\.0\.113\.5'"):
        check_hosts_in_scope(specs, scope)


def test_the_command_refuses_out_of_scope_hosts_and_writes_nothing(tmp_path: Path) -> None:
    key, known = tmp_path / "key", tmp_path / "known_hosts"
    key.write_text("not used\n")
    known.write_text("")
    out = tmp_path / "draft.yaml"
    args = ["inventory", "draft", "--host", "a=10.98.21.20", "--host", "198.51.100.7"]
    args += ["--key", str(key), "--known-hosts", str(known), "--scope", "10.98.0.0/16"]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == ExitCode.CANNOT_RUN
    assert "refusing '198.51.100.7'" in result.output
    assert not out.exists()


def test_the_command_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "draft.yaml"
    out.write_text("mine\n")
    args = ["inventory", "draft", "--host", "10.98.21.20", "--key", "k", "--known-hosts", "k"]
    result = CliRunner().invoke(app, [*args, "--scope", "10.98.0.0/16", "--out", str(out)])
    assert result.exit_code == ExitCode.CANNOT_RUN
    assert "exists; pass --force" in result.output
    assert out.read_text() == "mine\n"


def test_a_scope_with_host_bits_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("x\n")
    args = ["inventory", "draft", "--host", "10.98.21.20", "--key", str(key)]
    args += ["--known-hosts", str(key), "--scope", "10.98.21.1/24"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "d.yaml")])
    assert result.exit_code == ExitCode.CANNOT_RUN
    assert "host bits set" in result.output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("recv-srv=10.98.21.20", HostSpec("recv-srv", "10.98.21.20")),
        ("10.98.21.20", HostSpec("host-10-98-21-20", "10.98.21.20")),
        ("fd98:0:0:21::20", HostSpec("host-fd98-0-0-21-20", "fd98:0:0:21::20")),
    ],
)
def test_host_options_name_an_ip_literal(text: str, expected: HostSpec) -> None:
    assert parse_host_spec(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("recv-srv=recv.example.org", "is not an IP address"),
        ("Recv=10.98.21.20", "is not a valid inventory name"),
        ("a b=10.98.21.20", "is not a valid inventory name"),
    ],
)
def test_host_options_that_are_not_usable_are_refused(text: str, problem: str) -> None:
    with pytest.raises(DraftError, match=problem):
        parse_host_spec(text)


def test_hostile_listener_text_stays_a_value(baseline: StoredModel, tmp_path: Path) -> None:
    attempt = baseline.context.collection["term-1"]
    assert attempt.value is not None
    evil = 'sshd"\n  - {port: 1, from: [term-lan]}\n# \x7f\u202e\x1b[2J'
    listeners = [Listener(proto="tcp", address="0.0.0.0", port=2222, process=evil)]
    facts = attempt.value.model_copy(update={"listeners": listeners})
    collected = {**baseline.context.collection}
    collected["term-1"] = type(attempt).ok(attempt.probe, attempt.target, facts, [])
    draft = build_draft(
        specs=[HostSpec("term-1", "10.98.30.41")],
        collected=collected,
        local=[],
        sweeps={},
        scope=baseline.inventory.scope,
        access=baseline.inventory.ssh,
    )
    text = render_draft(draft, tmp_path / "draft.yaml")
    services = yaml.safe_load(text)["hosts"]["term-1"]["services"]
    assert services == [{"port": 2222, "proto": "tcp", "from": ["term-lan"], "purpose": evil}]
    assert all(c == "\n" or c.isprintable() for c in text)


def _facts(host: str, *interfaces: tuple[str, list[str]]) -> Attempt[HostFacts]:
    found = [
        Interface(
            name=name,
            up=True,
            addresses=[
                InterfaceAddress(address=a.split("/")[0], prefixlen=int(a.split("/")[1]), family=4)
                for a in addresses
            ],
        )
        for name, addresses in interfaces
    ]
    return Attempt.ok("ssh-host", host, HostFacts(host=host, interfaces=found), [])


def test_generic_names_nested_and_shared_prefixes_are_left_for_a_person() -> None:
    collected = {
        "a": _facts("a", ("eth0", ["10.98.21.5/20"]), ("eth1", ["10.98.50.1/24", "10.98.51.1/24"])),
        "b": _facts("b", ("eth0", ["10.98.21.6/24"]), ("eth1", ["192.0.2.7/24"])),
    }
    draft = build_draft(
        specs=[HostSpec("a", "10.98.21.5"), HostSpec("b", "10.98.21.6")],
        collected=collected,
        local=[],
        sweeps={},
        scope=Scope.model_validate({"authorized": ["10.98.0.0/16"]}),
        access=load_stored_model(CONTEXTS / "baseline").inventory.ssh,
    )
    # "eth0" says nothing about a network: names come from the prefixes.
    assert [n.name for n in draft.networks] == [
        "net-10-98-16-0-20",
        "net-10-98-21-0-24",
        "net-10-98-50-0-24",
        "net-10-98-51-0-24",
    ]
    assert draft.notes == [
        "b: eth1 192.0.2.0/24 is outside the scope: left out",
        "10.98.50.0/24, 10.98.51.0/24 share an interface: drafted as separate networks",
        "net-10-98-21-0-24 (10.98.21.0/24) overlaps net-10-98-16-0-20 (10.98.16.0/20): "
        "decide which prefix is right",
    ]
