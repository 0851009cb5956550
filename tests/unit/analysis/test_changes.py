"""The parsers of ``auditor whatif``'s changes, and their effect on a recorded run's facts and
model (the baseline recording of the lab)."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path

import pytest

from auditor.analysis.changes import (
    DEFAULT_IPV6_METRIC,
    ChangeError,
    ForwardingChange,
    HostDownChange,
    LinkDownChange,
    RulesetChange,
    apply_to_collection,
    apply_to_topology,
    check_names,
    down_hosts,
    down_segments,
    parse_forwarding_spec,
    parse_listen_spec,
    parse_listener,
    parse_route_line,
    parse_route_spec,
    parse_ruleset_spec,
    split_host_spec,
)
from auditor.analysis.nftcheck import NAMESPACE_PREFIX, RulesetError, load_ruleset
from auditor.analysis.stored import StoredModel, load_stored_model
from auditor.domain.facts import IptablesListings, IptablesSave, SavedTable

CONTEXTS = Path(__file__).parents[2] / "data" / "contexts"
SCENARIOS = Path(__file__).parents[3] / "lab" / "scenarios"


@pytest.fixture(scope="module")
def baseline() -> StoredModel:
    return load_stored_model(CONTEXTS / "baseline")


# --- route lines --------------------------------------------------------------------------


def test_a_default_route_takes_its_family_from_the_gateway() -> None:
    spec = parse_route_line("default via 10.98.1.1 dev eth0")
    assert spec.route.family == 4
    assert spec.route.destination == "default"
    assert spec.route.gateway == "10.98.1.1"
    assert spec.route.device == "eth0"
    assert spec.route.type == "unicast"
    assert spec.route.metric is None  # IPv4 routes added without a metric have none


def test_an_ipv6_route_gets_the_kernels_default_metric() -> None:
    spec = parse_route_line("default via fd98:0:0:10::1")
    assert (spec.route.family, spec.route.metric) == (6, DEFAULT_IPV6_METRIC)
    assert parse_route_line("::/0 dev eth0 metric 5").route.metric == 5


def test_prefixes_are_written_as_the_collector_writes_them() -> None:
    assert parse_route_line("10.98.50.7/24 via 10.98.2.1").route.destination == "10.98.50.0/24"
    assert parse_route_line("10.98.50.7 dev eth1").route.destination == "10.98.50.7/32"
    assert parse_route_line("0.0.0.0/0 dev eth0").route.destination == "default"


def test_a_route_type_comes_first() -> None:
    spec = parse_route_line("blackhole 10.98.60.0/24")
    assert (spec.route.type, spec.route.destination, spec.route.gateway) == (
        "blackhole",
        "10.98.60.0/24",
        None,
    )
    assert "type" in spec.given


def test_table_and_source_are_read() -> None:
    spec = parse_route_line("10.98.50.0/24 via 10.98.2.1 table 100 src 10.98.2.20")
    assert (spec.route.table, spec.route.source) == ("100", "10.98.2.20")


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("", "empty"),
        ("blackhole", "no destination"),
        ("nonsense via 10.0.0.1", "not a destination"),
        ("default dev eth0", "cannot tell IPv4 from IPv6"),
        ("10.98.50.0/24 via", "has no value"),
        ("10.98.50.0/24 proto static", "'proto' is not understood"),
        ("10.98.50.0/24 via fd98::1", "is not IPv4"),
        ("10.98.50.0/24 via 10.0.0.1 via 10.0.0.2", "given twice"),
        ("10.98.50.0/24 via 10.0.0.300", "not an IP address"),
        ("blackhole 10.98.60.0/24 via 10.98.1.1", "has no gateway"),
        ("10.98.50.0/24 dev eth0 metric high", "not a number"),
    ],
)
def test_a_route_line_that_cannot_be_read_is_refused_naming_it(line: str, complaint: str) -> None:
    with pytest.raises(ChangeError, match=complaint) as caught:
        parse_route_line(line)
    assert repr(line) in str(caught.value)


def test_a_leading_minus_asks_for_removal() -> None:
    change = parse_route_spec("recv-srv=-default via 10.98.10.1")
    assert (change.host, change.remove, change.route.route.gateway) == (
        "recv-srv",
        True,
        "10.98.10.1",
    )
    assert change.spec == "recv-srv=-default via 10.98.10.1"


# --- the other specs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address", "port", "proto"),
    [
        ("8443/tcp", "*", 8443, "tcp"),
        ("10.98.11.20:8443/tcp", "10.98.11.20", 8443, "tcp"),
        ("[::]:53/udp", "::", 53, "udp"),
        ("[fd98:0:0:11:0::20]:53/udp", "fd98:0:0:11::20", 53, "udp"),
        ("*:22/tcp", "*", 22, "tcp"),
    ],
)
def test_listeners(text: str, address: str, port: int, proto: str) -> None:
    listener = parse_listener(text)
    assert (listener.address, listener.port, listener.proto) == (address, port, proto)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("8443", "expected"),
        ("8443/sctp", "expected"),
        ("http/tcp", "not a number"),
        ("0/tcp", "not in 1-65535"),
        ("70000/tcp", "not in 1-65535"),
        ("::1:53/udp", "in brackets"),
        ("[::1]53/udp", r"\[IPV6\]:PORT"),
        ("server:53/udp", "not an IP address"),
    ],
)
def test_a_malformed_listener_is_refused(text: str, complaint: str) -> None:
    with pytest.raises(ChangeError, match=complaint):
        parse_listener(text)


def test_a_listen_spec_names_its_host() -> None:
    change = parse_listen_spec("send-srv=8443/tcp")
    assert (change.host, change.listener.port, change.spec) == (
        "send-srv",
        8443,
        "send-srv=8443/tcp",
    )


@pytest.mark.parametrize(("state", "enabled"), [("on", True), ("off", False), ("ON", True)])
def test_forwarding(state: str, enabled: bool) -> None:
    assert parse_forwarding_spec(f"proc-srv={state}") == ForwardingChange("proc-srv", enabled)


def test_a_forwarding_state_other_than_on_or_off_is_refused() -> None:
    with pytest.raises(ChangeError, match="'maybe'"):
        parse_forwarding_spec("proc-srv=maybe")


@pytest.mark.parametrize("spec", ["proc-srv", "=on", "proc-srv=", " = "])
def test_a_spec_without_host_and_value_is_refused(spec: str) -> None:
    with pytest.raises(ChangeError, match="expected HOST=VALUE"):
        split_host_spec("forwarding", spec)


def test_a_ruleset_spec_keeps_the_path() -> None:
    assert parse_ruleset_spec("recv-srv=/tmp/r.nft") == RulesetChange(
        "recv-srv", Path("/tmp/r.nft")
    )


# --- names --------------------------------------------------------------------------------


def test_unknown_hosts_and_networks_are_named(baseline: StoredModel) -> None:
    with pytest.raises(ChangeError, match="no host 'recv-svr'"):
        check_names(baseline.inventory, [ForwardingChange("recv-svr", True)])
    with pytest.raises(ChangeError, match="no host 'ghost'"):
        check_names(baseline.inventory, [HostDownChange("ghost")])
    with pytest.raises(ChangeError, match=r"no such network or tunnel.*carrier-in"):
        check_names(baseline.inventory, [LinkDownChange("carrier-inn")])
    check_names(baseline.inventory, [LinkDownChange("wg-in"), HostDownChange("recv-srv")])


# --- applying to the facts ----------------------------------------------------------------


def test_a_route_without_dev_leaves_by_the_gateways_interface(baseline: StoredModel) -> None:
    collection = apply_to_collection(
        baseline.observations.collection, [parse_route_spec("recv-srv=default via 10.98.10.1")]
    )
    facts = collection["recv-srv"].value
    assert facts is not None and facts.routes is not None
    added = [r for r in facts.routes if r.destination == "default" and r.table == "main"]
    assert [(r.gateway, r.device) for r in added] == [("10.98.10.1", "carrier-in")]
    # The changed fact rests on no collected output any more.
    assert not any(key.startswith("routes") for key in facts.evidence)
    assert "nftables" in facts.evidence
    # The stored run's own facts are untouched.
    before = baseline.observations.collection["recv-srv"].value
    assert before is not None and before.routes is not None
    assert len(before.routes) == len(facts.routes) - 1


def test_a_gateway_on_none_of_the_hosts_networks_is_refused(baseline: StoredModel) -> None:
    with pytest.raises(
        ChangeError, match=re.escape("10.98.77.1 is on none of recv-srv's networks")
    ):
        apply_to_collection(
            baseline.observations.collection, [parse_route_spec("recv-srv=default via 10.98.77.1")]
        )


def test_a_route_the_host_has_is_not_added_twice(baseline: StoredModel) -> None:
    facts = baseline.observations.collection["recv-srv"].value
    assert facts is not None and facts.routes is not None
    connected = next(r for r in facts.routes if r.destination == "10.98.10.0/24")
    with pytest.raises(ChangeError, match=re.escape("already has a route to 10.98.10.0/24")):
        apply_to_collection(
            baseline.observations.collection,
            [parse_route_spec(f"recv-srv=10.98.10.0/24 dev {connected.device}")],
        )


def test_removing_a_route_takes_every_match_and_refuses_none(baseline: StoredModel) -> None:
    collection = apply_to_collection(
        baseline.observations.collection, [parse_route_spec("recv-srv=-10.98.10.0/24")]
    )
    facts = collection["recv-srv"].value
    assert facts is not None and facts.routes is not None
    assert not [r for r in facts.routes if r.destination == "10.98.10.0/24" and r.table == "main"]
    with pytest.raises(ChangeError, match="recv-srv has no route matching it"):
        apply_to_collection(
            baseline.observations.collection, [parse_route_spec("recv-srv=-10.98.99.0/24")]
        )


def test_forwarding_and_listeners_are_set(baseline: StoredModel) -> None:
    collection = apply_to_collection(
        baseline.observations.collection,
        [parse_forwarding_spec("send-srv=on"), parse_listen_spec("send-srv=8443/tcp")],
    )
    facts = collection["send-srv"].value
    assert facts is not None and facts.listeners is not None
    assert (facts.forwarding_v4, facts.forwarding_v6) == (True, True)
    assert ("tcp", "*", 8443) in {(s.proto, s.address, s.port) for s in facts.listeners}


def test_a_ruleset_replaces_the_whole_fact(baseline: StoredModel, tmp_path: Path) -> None:
    other = load_stored_model(CONTEXTS / "recv-egress").observations.collection["recv-srv"].value
    assert other is not None and other.nftables is not None
    path = tmp_path / "recv.json"
    path.write_text(json.dumps(other.nftables))
    collection = apply_to_collection(
        baseline.observations.collection, [parse_ruleset_spec(f"recv-srv={path}")]
    )
    facts = collection["recv-srv"].value
    assert facts is not None
    assert facts.nftables == other.nftables
    assert "nftables" not in facts.evidence


# --- applying to the model ----------------------------------------------------------------


def test_a_link_down_takes_its_tunnels_with_it(baseline: StoredModel) -> None:
    changes = [LinkDownChange("carrier-in")]
    segments = down_segments(baseline.inventory, changes)
    assert segments == {"carrier-in", "wg-in"}
    topology = apply_to_topology(baseline.topology, segments, down_hosts(changes))
    assert baseline.topology.members("carrier-in")  # the run's model is untouched
    assert topology.members("carrier-in") == []
    assert topology.members("wg-in") == []
    assert topology.members("line-recv") == baseline.topology.members("line-recv")


def test_a_down_host_is_on_no_segment(baseline: StoredModel) -> None:
    topology = apply_to_topology(baseline.topology, set(), {"send-srv"})
    assert topology.hosts["send-srv"].attachments == []
    assert all("send-srv" not in topology.members(s) for s in topology.segments)
    assert "proc-srv" in topology.members("line-send")


def test_a_host_without_facts_cannot_have_a_fact_changed(baseline: StoredModel) -> None:
    collection = {k: v for k, v in baseline.observations.collection.items() if k != "send-srv"}
    with pytest.raises(ChangeError, match="no facts of send-srv"):
        apply_to_collection(collection, [parse_forwarding_spec("send-srv=on")])


# --- rule set files -----------------------------------------------------------------------


def _whatif_namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {
        line.split()[0] for line in listed.stdout.splitlines() if line.startswith(NAMESPACE_PREFIX)
    }


def test_nft_text_is_loaded_by_nft_and_listed_back() -> None:
    before = _whatif_namespaces()
    document = load_ruleset(SCENARIOS / "recv-egress" / "recv-nftables.conf")
    chains = {o["chain"]["name"]: o["chain"] for o in document["nftables"] if "chain" in o}
    assert chains["output"]["policy"] == "accept"
    assert chains["input"]["policy"] == "drop"
    assert _whatif_namespaces() == before  # the scratch namespace is gone


def test_nft_text_with_a_syntax_error_is_refused_with_nfts_message(tmp_path: Path) -> None:
    before = _whatif_namespaces()
    path = tmp_path / "bad.nft"
    path.write_text(
        "table inet filter {\n  chain input {\n"
        "    type filter hook input priority filter; policy drop;\n"
        "    tcp dport 22 acept\n  }\n}\n"
    )
    with pytest.raises(RulesetError) as caught:
        load_ruleset(path)
    message = str(caught.value)
    assert f"{path}:4:" in message  # nft names file:line:column
    assert "syntax error" in message
    assert "acept" in message  # and quotes the line
    assert _whatif_namespaces() == before


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ('{"nftables": 3}', "not a list"),
        ('{"nft": []}', "single key"),
        ('{"nftables": [{"rule": {"family": "inet"}}]}', "malformed"),
        ('{"nftables": [', "not JSON"),
    ],
)
def test_json_that_is_no_ruleset_document_is_refused(
    tmp_path: Path, content: str, complaint: str
) -> None:
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(RulesetError, match=complaint) as caught:
        load_ruleset(path)
    assert str(path) in str(caught.value)


def test_a_missing_ruleset_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(RulesetError, match=re.escape("missing.nft: cannot be read")):
        load_ruleset(tmp_path / "missing.nft")


def test_a_new_ruleset_drops_iptables_nfts_listing_and_keeps_legacy_tables(
    baseline: StoredModel, tmp_path: Path
) -> None:
    """iptables-nft-save described the old nftables tables; legacy tables are not nftables."""
    listing = IptablesSave(tables=(SavedTable(name="filter"),))
    attempt = baseline.observations.collection["recv-srv"]
    facts = attempt.value
    assert facts is not None
    with_iptables = facts.model_copy(
        update={"iptables": IptablesListings(legacy_v4=listing, nft_v4=listing)}
    )
    collection = {"recv-srv": dataclasses.replace(attempt, value=with_iptables)}
    proposed = tmp_path / "r.json"
    proposed.write_text(json.dumps({"nftables": []}))
    changed = apply_to_collection(collection, [RulesetChange("recv-srv", proposed)])
    after = changed["recv-srv"].value
    assert after is not None and after.iptables is not None
    assert after.iptables.nft_v4 is None and after.iptables.legacy_v4 == listing
    assert after.nftables == {"nftables": []}
