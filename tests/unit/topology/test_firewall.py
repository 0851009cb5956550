"""The nftables engine on rule sets recorded with the real nft (tests/data/nft)."""

from __future__ import annotations

from netaddr import IPSet

from tests.unit.topology.topo_helpers import (
    firewall,
    only,
    ruleset,
    tcp4,
    tcp6,
    udp4,
    udp6,
    verdict,
)
from topology.fields import IntervalSet, ports, protos
from topology.firewall import Firewall, Hook, Verdict
from topology.space import Packet, PacketSpace

ACCEPT, DROP = Verdict.ACCEPT, Verdict.DROP
A, B = "10.98.21.30", "10.98.21.20"
A6, B6 = "fd98:0:0:21::30", "fd98:0:0:21::20"


def test_first_matching_rule_wins() -> None:
    fw = firewall("order")
    assert verdict(fw, Hook.INPUT, tcp4(A, B, 22)) == (DROP, "tcp dport 22 drop")
    assert verdict(fw, Hook.INPUT, tcp4(A, B, 80)) == (ACCEPT, "tcp dport 1-100 accept")
    assert verdict(fw, Hook.INPUT, tcp4(A, B, 101)) == (DROP, "policy drop")
    # A counter-only rule does not decide: udp/53 goes on to its accept.
    assert verdict(fw, Hook.INPUT, udp4(A, B, 53)) == (ACCEPT, "udp dport 53 accept")
    assert verdict(fw, Hook.INPUT, udp4(A, B, 54))[0] is DROP


def test_symbolic_outcomes_partition_the_space() -> None:
    fw = firewall("order")
    space = PacketSpace.new_connections(families=[4], protocols=protos(6))
    accepted = fw.accepts(Hook.INPUT, space)
    assert accepted.where(dport=ports(23, 100))
    assert not accepted.where(dport=ports(22))
    assert not accepted.where(dport=ports(101, 65535))
    outcomes = fw.evaluate(Hook.INPUT, space)
    assert all(o.certain for o in outcomes)
    assert {o.rule for o in outcomes} == {
        "tcp dport 22 drop",
        "tcp dport 1-100 accept",
        "policy drop",
    }


def test_jump_returns_and_goto_does_not() -> None:
    fw = firewall("jumps")
    # from_recv returns for tcp/80: back in input, "tcp dport 80 accept" decides.
    assert verdict(fw, Hook.INPUT, tcp4("10.98.21.5", B, 80)) == (ACCEPT, "tcp dport 80 accept")
    assert verdict(fw, Hook.INPUT, tcp4("10.98.21.5", B, 443)) == (DROP, "tcp dport 443 drop")
    # from_send was entered by goto: falling off its end applies input's policy.
    assert verdict(fw, Hook.INPUT, tcp4("10.98.22.5", B, 80)) == (DROP, "policy drop")
    assert verdict(fw, Hook.INPUT, tcp4("10.98.22.5", B, 22)) == (ACCEPT, "tcp dport 22 accept")
    # Nested jump: deeper accepts one destination, the rest returns twice and hits policy.
    assert verdict(fw, Hook.INPUT, udp4("10.98.21.5", B, 53))[0] is ACCEPT
    assert verdict(fw, Hook.INPUT, udp4("10.98.21.5", "10.98.21.99", 53)) == (DROP, "policy drop")
    outcome = only(fw.decision_for(Hook.INPUT, udp4("10.98.21.5", B, 53)))
    assert (outcome.rule_ref or "").startswith("inet jumps/deeper/")


def test_named_anonymous_and_concatenated_sets() -> None:
    fw = firewall("sets")
    assert verdict(fw, Hook.INPUT, tcp4("10.98.30.15", B, 443))[0] is ACCEPT
    assert verdict(fw, Hook.INPUT, tcp4("10.98.30.16", B, 443))[0] is DROP
    assert verdict(fw, Hook.INPUT, tcp4("10.98.21.9", B, 22))[0] is ACCEPT  # range element
    assert verdict(fw, Hook.INPUT, tcp4("10.98.21.10", B, 22))[0] is DROP
    assert verdict(fw, Hook.INPUT, tcp6("fd98:0:0:30::f", B6, 22))[0] is ACCEPT
    assert verdict(fw, Hook.INPUT, tcp6("fd98:0:0:30::10", B6, 22))[0] is DROP
    assert verdict(fw, Hook.INPUT, tcp4("10.98.22.30", B, 8443))[0] is ACCEPT
    assert verdict(fw, Hook.INPUT, tcp4("10.98.22.30", B, 9000))[0] is DROP  # pairs only
    assert verdict(fw, Hook.INPUT, tcp4("10.98.22.31", B, 9000))[0] is ACCEPT
    # The anonymous drop set comes before the port accept.
    assert verdict(fw, Hook.INPUT, tcp4("10.98.40.7", B, 8050))[0] is DROP
    assert verdict(fw, Hook.INPUT, tcp4("10.98.41.7", B, 8050))[0] is ACCEPT
    assert verdict(fw, Hook.INPUT, tcp6("fd98:0:0:40::7", B6, 9100))[0] is ACCEPT


def test_table_families_see_their_own_packets_only() -> None:
    fw = firewall("families")
    assert verdict(fw, Hook.INPUT, tcp4(A, B, 22))[0] is ACCEPT
    assert verdict(fw, Hook.INPUT, tcp4(A, B, 23)) == (DROP, "policy drop")
    assert verdict(fw, Hook.INPUT, tcp6(A6, B6, 22)) == (DROP, "tcp dport 22 drop")
    assert verdict(fw, Hook.INPUT, tcp6(A6, B6, 23))[0] is ACCEPT  # the ip table never sees it
    assert verdict(fw, Hook.INPUT, udp6(A6, B6, 53)) == (DROP, "udp dport 53 drop")


def test_base_chains_run_by_priority_and_any_drop_is_final() -> None:
    fw = firewall("priorities")
    assert [c.prio for c in fw.chains_on(Hook.INPUT)] == [-10, 5, 10]
    # Accepted at -10, dropped at 10: dropped.
    assert verdict(fw, Hook.INPUT, tcp4(A, B, 22)) == (DROP, "tcp dport 22 drop")
    assert verdict(fw, Hook.INPUT, udp4(A, B, 53)) == (DROP, "udp dport 53 drop")
    accepted = only(fw.decision_for(Hook.INPUT, tcp4(A, B, 80)))
    assert accepted.verdict is ACCEPT
    assert len(accepted.steps) == 3  # one decision per base chain passed
    assert accepted.steps[0].text == "tcp dport { 22, 80 } accept"
    assert verdict(fw, Hook.INPUT, tcp4(A, B, 81)) == (DROP, "policy drop")


def test_ct_state_established_is_not_a_new_connection() -> None:
    fw = firewall("recv-srv")
    out = PacketSpace.new_connections().where(oif=_names("eth0"))
    # Only neighbour discovery leaves; no TCP, UDP or echo (CONTROLS' "new connection").
    accepted = fw.accepts(Hook.OUTPUT, out)
    assert accepted.where(proto=protos(58), icmp_type=icmp6_nd) == accepted
    assert accepted
    attempts = PacketSpace.connection_attempts().where(oif=_names("eth0", "eth1", "wg-in"))
    assert fw.accepts(Hook.OUTPUT, attempts).is_empty()
    replies = PacketSpace.everything().where(ct=frozenset({"established"}), oif=_names("eth0"))
    accepted_replies = fw.accepts(Hook.OUTPUT, replies)
    # Every reply is accepted (output has no input device, hence the iif narrowing).
    assert replies.where(iif=_names("")).subtract(accepted_replies).is_empty()
    reply = tcp4(B, "10.98.10.10", 40000, oif="eth0", ct="related")
    assert verdict(fw, Hook.OUTPUT, reply)[0] is ACCEPT


def test_interface_matches() -> None:
    fw = firewall("ifaces")
    assert verdict(fw, Hook.FORWARD, tcp4(A, B, 1, iif="eth0", oif="eth1"))[0] is ACCEPT
    assert verdict(fw, Hook.FORWARD, tcp4(A, B, 1, iif="eth1", oif="eth0"))[0] is DROP
    assert verdict(fw, Hook.FORWARD, tcp4(A, B, 22, iif="eth1", oif="eth0"))[0] is ACCEPT
    assert verdict(fw, Hook.FORWARD, tcp4(A, B, 22, iif="eth0", oif="eth0"))[0] is DROP
    assert verdict(fw, Hook.INPUT, tcp4(A, B, 22, iif="eth0"))[0] is ACCEPT
    assert verdict(fw, Hook.INPUT, tcp4(A, B, 22, iif="eth1"))[0] is DROP
    assert verdict(fw, Hook.INPUT, tcp4(A, B, 5, iif="lo"))[0] is ACCEPT


def test_dnat_translates_before_the_filter_and_masquerade_is_recorded() -> None:
    fw = firewall("nat-router")
    pre = only(
        fw.decision_for(Hook.PREROUTING, tcp4("10.98.0.100", "10.98.0.254", 8443, iif="eth1"))
    )
    assert pre.verdict is ACCEPT
    assert [n.kind for n in pre.nat] == ["dnat"]
    assert pre.space.addresses("daddr") == IPSet(["10.98.40.20/32"])
    assert pre.origin.addresses("daddr") == IPSet(["10.98.0.254/32"])
    (cube,) = pre.space.cubes
    assert list(cube.dport.values()) == [22]
    # The translated packet is what forward sees, and forward lets it through.
    translated = tcp4("10.98.0.100", "10.98.40.20", 22, iif="eth1", oif="eth0")
    assert verdict(fw, Hook.FORWARD, translated)[0] is ACCEPT
    post = only(
        fw.decision_for(Hook.POSTROUTING, tcp6("fd98:0:0:40::20", "fd98::100", 443, oif="eth1"))
    )
    assert [n.kind for n in post.nat] == ["masquerade"]
    # Later packets of a connection bypass the nat chains.
    later = tcp4("10.98.0.100", "10.98.0.254", 8443, iif="eth1", ct="established")
    assert only(fw.decision_for(Hook.PREROUTING, later)).nat == ()


def test_unknown_expression_gives_uncertain_outcomes() -> None:
    fw = firewall("unknown")
    assert any("meta mark" in p for p in fw.problems)
    outcomes = fw.decision_for(Hook.INPUT, tcp4(A, B, 80))
    # May be accepted by the mark rule, may fall to the policy: both, neither certain.
    assert {(o.verdict, o.certain) for o in outcomes} == {(ACCEPT, False), (DROP, False)}
    assert any("may match" in r for o in outcomes for r in o.reasons)
    space = PacketSpace.new_connections(families=[4])
    assert fw.certainly_accepts(Hook.INPUT, space).is_empty()
    assert fw.accepts(Hook.INPUT, space)


def test_empty_ruleset_accepts_and_missing_ruleset_is_unknown() -> None:
    empty = firewall("empty")
    packet = udp4(A, B, 9)
    outcome = only(empty.decision_for(Hook.INPUT, packet))
    assert (outcome.verdict, outcome.certain) == (ACCEPT, True)
    unknown = Firewall.unknown()
    outcomes = unknown.decision_for(Hook.INPUT, packet)
    assert {(o.verdict, o.certain) for o in outcomes} == {(ACCEPT, False), (DROP, False)}
    assert not unknown.known


def test_rule_text_is_readable() -> None:
    fw = firewall("recv-srv")
    texts = [r.text for c in fw.chains_on(Hook.INPUT) for r in c.rules]
    assert 'iifname "eth0" ip saddr 10.98.10.10 udp dport 51820 accept' in texts
    assert "ct state established,related accept" in texts
    assert ruleset("recv-srv")["nftables"][0]["metainfo"]["json_schema_version"] == 1


def test_icmp_types_and_l4proto() -> None:
    fw = Firewall.from_nft_json(
        {
            "nftables": [
                {"table": {"family": "inet", "name": "t"}},
                {
                    "chain": {
                        "family": "inet",
                        "table": "t",
                        "name": "in",
                        "type": "filter",
                        "hook": "input",
                        "prio": 0,
                        "policy": "drop",
                    }
                },
                {
                    "rule": {
                        "family": "inet",
                        "table": "t",
                        "chain": "in",
                        "handle": 2,
                        "expr": [
                            {
                                "match": {
                                    "op": "==",
                                    "left": {"payload": {"protocol": "icmp", "field": "type"}},
                                    "right": "echo-request",
                                }
                            },
                            {"accept": None},
                        ],
                    }
                },
                {
                    "rule": {
                        "family": "inet",
                        "table": "t",
                        "chain": "in",
                        "handle": 3,
                        "expr": [
                            {
                                "match": {
                                    "op": "==",
                                    "left": {"meta": {"key": "l4proto"}},
                                    "right": "ipv6-icmp",
                                }
                            },
                            {"accept": None},
                        ],
                    }
                },
            ]
        }
    )
    ping = Packet(4, 1, A, B, icmp_type=8, iif="eth0")
    assert verdict(fw, Hook.INPUT, ping)[0] is ACCEPT
    assert verdict(fw, Hook.INPUT, Packet(4, 1, A, B, icmp_type=0, iif="eth0"))[0] is DROP
    assert verdict(fw, Hook.INPUT, Packet(6, 58, A6, B6, icmp_type=1, iif="eth0"))[0] is ACCEPT


icmp6_nd = IntervalSet.of(255, [135, 136])


def _names(*names: str) -> object:
    from topology.fields import NameSet

    return NameSet.of(*names)


def test_empty_named_sets_never_match_and_their_negation_always_does() -> None:
    fw = firewall("empty-sets")
    assert fw.problems == []
    # Nobody is in @blocked4 and the verdict map is empty: port 80 falls to the policy.
    assert verdict(fw, Hook.INPUT, tcp4(A, B, 80)) == (ACCEPT, "policy accept")
    # Nobody is in @admins4 either, so every IPv4 source is "not an admin" for SSH.
    assert verdict(fw, Hook.INPUT, tcp4(A, B, 22))[0] is DROP
    # The rule names IPv4 addresses: IPv6 packets are not concerned by it.
    assert verdict(fw, Hook.INPUT, tcp6(A6, B6, 22)) == (ACCEPT, "policy accept")
    assert all(o.certain for o in fw.evaluate(Hook.INPUT, PacketSpace.connection_attempts()))


def test_malformed_ranges_are_problems_not_crashes() -> None:
    """Found by the random fuzz profile: ``{"range": []}`` crashed the compiler."""
    bad: object
    for bad in ({"range": []}, {"range": [5]}, "99999999", {"range": ["a", 3]}):
        document = ruleset("order")
        rule = next(o["rule"] for o in document["nftables"] if "rule" in o)
        port = {"payload": {"protocol": "tcp", "field": "sport"}}
        rule["expr"] = [{"match": {"op": "==", "left": port, "right": bad}}, {"accept": None}]
        fw = Firewall.from_nft_json(document)
        assert any("port" in p for p in fw.problems), bad
        assert fw.evaluate(Hook.INPUT, PacketSpace.connection_attempts())


def test_equal_rules_share_their_compiled_arms_but_a_named_set_is_its_own_rule_sets() -> None:
    """Compiled arms are reused by the text of a rule's expressions; a rule naming a set is
    compiled with the elements of that set in its own rule set."""
    first, second = ruleset("order"), ruleset("order")
    first_rules = Firewall.from_nft_json(first).chains_on(Hook.INPUT)[0].rules
    second_rules = Firewall.from_nft_json(second).chains_on(Hook.INPUT)[0].rules
    assert all(a.arms is b.arms for a, b in zip(first_rules, second_rules, strict=True))

    def with_admins(*addresses: str) -> Firewall:
        document = ruleset("order")
        table = next(o["table"] for o in document["nftables"] if "table" in o)
        base = {"family": table["family"], "table": table["name"]}
        admins = {**base, "name": "admins", "type": "ipv4_addr", "elem": list(addresses)}
        rule = next(o["rule"] for o in document["nftables"] if "rule" in o)
        source = {"payload": {"protocol": "ip", "field": "saddr"}}
        rule["expr"] = [
            {"match": {"op": "==", "left": source, "right": "@admins"}},
            {"accept": None},
        ]
        document["nftables"].insert(1, {"set": admins})
        return Firewall.from_nft_json(document)

    # Port 101: no other rule of "order" accepts it, only the set decides.
    assert verdict(with_admins(A), Hook.INPUT, tcp4(A, B, 101))[0] is ACCEPT
    assert verdict(with_admins(B), Hook.INPUT, tcp4(A, B, 101)) == (DROP, "policy drop")
