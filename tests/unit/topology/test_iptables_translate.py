"""iptables-save rule sets translated into nft -j objects, compiled by the nft compiler.

The expected expressions are never written here: they are what ``nft -j`` listed for the rule
``iptables-translate`` wrote (tests/data/iptables/constructs.json, made by record.py there).
The live tests load the same rules through iptables-legacy and iptables-nft in throwaway
namespaces and check both listings translate alike.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.parsers.iptables import parse_iptables_save, split_arguments
from topology.firewall import Firewall, Hook, Verdict
from topology.iptables import (
    BUILTIN_CHAINS,
    ICMP_TYPES,
    ICMPV6_TYPES,
    FamilyError,
    nft_objects,
    rule_exprs,
)
from topology.nftjson import parse_ruleset
from topology.space import Packet

DATA = Path(__file__).resolve().parents[2] / "data" / "iptables"
CASES: list[dict[str, Any]] = json.loads((DATA / "constructs.json").read_text())
LINES = [c for c in CASES if "line" in c]
NATIVE = {c["native"]: c["expr"] for c in CASES if "native" in c}
CHAINS = frozenset({"SUB", "LOGDROP"})


def _uncounted(exprs: list[Any]) -> list[Any]:
    """iptables-nft and iptables-translate add a counter to every rule; the listing has none."""
    return [e for e in exprs if "counter" not in e]


def _translate(line: str, family: str = "ip") -> list[Any]:
    words = split_arguments(line, 1)
    assert words[0] == "-A"
    return rule_exprs(words[2:], family, CHAINS)


def _native(text: str) -> list[Any]:
    return _uncounted(NATIVE[text])


#: Lines the tool translates but whose listing differs from ours on purpose: iptables-translate
#: writes every port of a --ports range as its own element; ours keeps the range (compared by
#: meaning in test_multiport_ports_means_either_port).
DIFFERENT_BY_DESIGN = {"-A INPUT -p udp -m multiport --ports 53,67:68 -j ACCEPT"}
TRANSLATED = [c for c in LINES if c["expr"] is not None and c["line"] not in DIFFERENT_BY_DESIGN]


@pytest.mark.parametrize("case", TRANSLATED, ids=lambda c: f"{c['family']} {c['line']}")
def test_each_construct_is_what_nft_lists_for_its_translation(case: dict[str, Any]) -> None:
    assert _translate(case["line"], case["family"]) == _uncounted(case["expr"])


def test_the_recorded_constructs_cover_the_brief() -> None:
    assert len(TRANSLATED) >= 80
    text = " ".join(c["line"] for c in LINES)
    for word in ("multiport", "conntrack", "addrtype", "icmp6", "-m rt", "-m hl", "-m ttl"):
        assert word in text
    for target in ("DNAT", "SNAT", "MASQUERADE", "REDIRECT", "TCPMSS", "NOTRACK", "NFLOG"):
        assert f"-j {target}" in text


def test_what_the_tool_cannot_translate_is_the_native_form() -> None:
    icmp = _translate("-A INPUT -p icmp -m icmp --icmp-type 3/4 -j ACCEPT")
    assert icmp == _native("icmp type 3 icmp code 4 accept")
    icmp6 = _translate("-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 1/3 -j ACCEPT", "ip6")
    assert icmp6 == _native("icmpv6 type 1 icmpv6 code 3 accept")
    flags = _translate("-A INPUT -p tcp -m tcp --tcp-flags SYN SYN -j ACCEPT")
    assert flags == _native("tcp flags & syn == syn accept")
    none = _translate("-A INPUT -p tcp -m tcp --tcp-flags FIN,SYN NONE -j ACCEPT")
    assert none == _native("tcp flags & (fin|syn) == 0x0 accept")
    some = _translate("-A INPUT -p tcp -m tcp ! --tcp-flags FIN,SYN NONE -j ACCEPT")
    assert some == _native("tcp flags & (fin|syn) != 0x0 accept")
    other = _translate("-A INPUT -p tcp -m tcp ! --tcp-flags FIN,SYN FIN,SYN -j ACCEPT")
    assert other == _native("tcp flags & (fin|syn) != fin|syn accept")
    types = _translate("-A INPUT -m addrtype --dst-type LOCAL,BROADCAST -j ACCEPT")
    assert types == _native("fib daddr type { local, broadcast } accept")
    # iptables-translate 1.8.9 writes only "snat" for SNAT,DNAT (a narrower rule): not copied.
    status = _translate("-A INPUT -m conntrack --ctstate SNAT,DNAT -j ACCEPT")
    assert status == _native("ct status snat,dnat accept")
    states = _translate("-A INPUT -m conntrack ! --ctstate NEW,INVALID -j ACCEPT")
    assert states == _native("ct state ! invalid,new accept")
    assert _translate("-A INPUT -m pkttype --pkt-type unicast -j ACCEPT") == _native(
        "pkttype host accept"
    )
    assert _translate("-A INPUT -m mark ! --mark 0x1 -j ACCEPT") == _native("mark != 0x1 accept")
    assert _translate("-A INPUT -m ttl ! --ttl-eq 5 -j ACCEPT") == _native("ip ttl != 5 accept")


def test_targets_the_tool_cannot_show_are_the_native_form() -> None:
    assert _translate("-A INPUT -j LOG --log-level 6") == _native("log level info accept")[:1]
    assert _translate("-A INPUT -j NFLOG") == _native("log group 0")
    assert _translate("-A PREROUTING -j REDIRECT") == _native("redirect")
    marks = {
        "0x10/0x10": "meta mark set mark or 0x10",
        "0x0/0xff": "meta mark set mark and 0xffffff00",
        "0x5/0xff": "meta mark set mark and 0xffffff00 xor 0x5",
        "0x30/0xf0": "meta mark set mark and 0xffffff0f xor 0x30",
    }
    for value, native in marks.items():
        assert _translate(f"-A PREROUTING -j MARK --set-xmark {value}") == _native(native)


def test_nft_names_of_icmp_types_are_those_nft_lists() -> None:
    for native, names in (
        (
            "icmp type { 0, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 30 } accept",
            ICMP_TYPES,
        ),
        (
            "icmpv6 type { 1, 2, 3, 4, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 138, 141,"
            " 142, 143, 200 } accept",
            ICMPV6_TYPES,
        ),
    ):
        listed = _native(native)[0]["match"]["right"]["set"]
        assert [n for n in listed if isinstance(n, str)] == [names[k] for k in sorted(names)]
        assert all(isinstance(n, int) and n not in names for n in listed if not isinstance(n, str))


def test_builtin_chains_are_registered_as_iptables_nft_does() -> None:
    recorded = json.loads((DATA / "builtin-chains.json").read_text())
    for chain in recorded:
        key = (chain["table"], chain["name"])
        assert BUILTIN_CHAINS[key] == (chain["type"], chain["hook"], chain["prio"]), chain
    assert len(recorded) == 2 * len(BUILTIN_CHAINS)


def _objects(name: str, family: str = "ip") -> list[dict[str, Any]]:
    version = "v4" if family == "ip" else "v6"
    text = (DATA / f"{name}.{version}.nft-save").read_text()
    return nft_objects(parse_iptables_save(text), family)


def test_objects_are_tables_chains_and_rules_in_position() -> None:
    objects = nft_objects(
        parse_iptables_save((DATA / "docker.v4.nft-save").read_text()),
        "ip",
        lambda t: f"iptables-legacy:{t}",
    )
    tables = [o["table"] for o in objects if "table" in o]
    assert tables == [
        {"family": "ip", "name": "iptables-legacy:filter"},
        {"family": "ip", "name": "iptables-legacy:nat"},
    ]
    bodies = [o["chain"] for o in objects if "chain" in o]
    chains = {(c["table"], c["name"]): c for c in bodies}
    forward = chains[("iptables-legacy:filter", "FORWARD")]
    assert (forward["type"], forward["hook"], forward["prio"], forward["policy"]) == (
        "filter", "forward", 0, "drop",
    )  # fmt: skip
    assert "hook" not in chains[("iptables-legacy:filter", "DOCKER-USER")]
    assert chains[("iptables-legacy:nat", "POSTROUTING")]["prio"] == 100
    rules = [o["rule"] for o in objects if "rule" in o and o["rule"]["chain"] == "DOCKER-USER"]
    assert [r["handle"] for r in rules] == [1, 2]
    assert rules[0]["iptables"] == "-A DOCKER-USER ! -s 10.98.20.0/24 -i eth0 -j DROP"
    assert rules[1]["expr"] == [{"return": None}]
    assert parse_ruleset({"nftables": objects}).problems == []


def _by_chain(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[list[Any]]]:
    rules: dict[tuple[str, str, str], list[list[Any]]] = {}
    for obj in objects:
        if "rule" in obj:
            body = obj["rule"]
            key = (body["family"], body["table"], body["chain"])
            rules.setdefault(key, []).append(_uncounted(body["expr"]))
    return rules


#: iptables-nft writes -p as "meta l4proto" where iptables-translate writes "ip protocol".
IP_PROTOCOL = json.dumps({"payload": {"protocol": "ip", "field": "protocol"}})
L4PROTO = json.dumps({"meta": {"key": "l4proto"}})


def _has_xt(exprs: list[Any]) -> bool:
    return any("xt" in e for e in exprs)


@pytest.mark.parametrize("name", ["docker", "ufw-server", "ufw-routed", "legacy-host"])
def test_translation_lines_up_with_the_nft_listing_of_the_same_rules(name: str) -> None:
    """Rule for rule, chain by chain, as ``nft -j`` lists what iptables-nft wrote: where nft
    can open the rule it shows what we translate; where it shows ``xt`` we say more."""
    listing = json.loads((DATA / f"{name}.nft.json").read_text())["nftables"]
    listed = _by_chain(listing)
    ours = _by_chain(_objects(name, "ip") + _objects(name, "ip6"))
    assert {k: len(v) for k, v in listed.items()} == {k: len(ours[k]) for k in listed}
    opened = 0
    for key, rules in listed.items():
        for theirs, mine in zip(rules, ours[key], strict=True):
            if _has_xt(theirs):
                # What nft cannot open we translate, but for what depends on history.
                unknown = [e["xt"]["name"] for e in mine if "xt" in e]
                assert unknown in ([], ["recent"])
                continue
            assert json.dumps(mine).replace(IP_PROTOCOL, L4PROTO) == json.dumps(theirs), key
            opened += 1
    assert opened >= 3


def _firewall(name: str, family: str = "ip") -> Firewall:
    return Firewall.from_nft_json({"nftables": _objects(name, family)})


def _outcomes(firewall: Firewall, hook: Hook, packet: Packet) -> set[tuple[Verdict, bool]]:
    return {(o.verdict, o.certain) for o in firewall.decision_for(hook, packet)}


ACCEPT = {(Verdict.ACCEPT, True)}
DROP = {(Verdict.DROP, True)}


def test_docker_forwarding_means_what_its_rules_say() -> None:
    docker = _firewall("docker")
    published = Packet(4, 6, "10.98.20.5", "172.17.0.2", 40000, 80, iif="eth0", oif="docker0")
    assert _outcomes(docker, Hook.FORWARD, published) == ACCEPT
    # The administrator's DOCKER-USER rule: only 10.98.20.0/24 may reach the containers.
    stranger = Packet(4, 6, "10.98.30.1", "172.17.0.2", 40000, 80, iif="eth0", oif="docker0")
    assert _outcomes(docker, Hook.FORWARD, stranger) == DROP
    closed = Packet(4, 6, "10.98.20.5", "172.17.0.2", 40000, 81, iif="eth0", oif="docker0")
    assert _outcomes(docker, Hook.FORWARD, closed) == DROP
    outgoing = Packet(4, 17, "172.17.0.2", "10.98.20.5", 40000, 53, iif="docker0", oif="eth0")
    assert _outcomes(docker, Hook.FORWARD, outgoing) == ACCEPT
    v6 = _firewall("docker", "ip6")
    reply = Packet(6, 6, "fd98::5", "fd98:0:0:17::2", 40000, 80, iif="eth0", oif="docker0")
    assert _outcomes(v6, Hook.FORWARD, reply) == ACCEPT  # no DOCKER-USER rule for IPv6


def test_ufw_rules_mean_what_ufw_was_told() -> None:
    ufw6 = _firewall("ufw-server", "ip6")
    ssh = Packet(6, 6, "fd98:0:0:10::5", "fd98::1", 40000, 22, iif="eth0")
    assert _outcomes(ufw6, Hook.INPUT, ssh) == ACCEPT
    web = Packet(6, 6, "fd98:0:0:30::5", "fd98::1", 40000, 443, iif="eth0")
    assert _outcomes(ufw6, Hook.INPUT, web) == ACCEPT
    dns = Packet(6, 17, "fd98:0:0:30::5", "fd98::1", 40000, 53, iif="eth0")
    assert _outcomes(ufw6, Hook.INPUT, dns) == DROP
    ufw4 = _firewall("ufw-server")
    closed = Packet(4, 6, "10.98.30.1", "10.98.10.1", 40000, 80, iif="eth0")
    # ufw's IPv4 chains ask the address type (-m addrtype): never accepted, maybe not certain.
    assert {v for v, _ in _outcomes(ufw4, Hook.INPUT, closed)} == {Verdict.DROP}
    web4 = Packet(4, 6, "10.98.30.1", "10.98.10.1", 40000, 443, iif="eth0")
    assert Verdict.ACCEPT in {v for v, _ in _outcomes(ufw4, Hook.INPUT, web4)}
    answer = Packet(4, 6, "10.98.30.1", "10.98.10.1", 40000, 80, iif="eth0", ct="established")
    assert _outcomes(ufw4, Hook.INPUT, answer) == ACCEPT


def test_ufw_limit_depends_on_history() -> None:
    """``ufw limit ssh``: -m recent --update drops the sixth attempt in 30 s: uncertain."""
    ufw4 = _firewall("ufw-server")
    ssh = Packet(4, 6, "10.98.30.1", "10.98.10.1", 40000, 22, iif="eth0")
    assert {v for v, _ in _outcomes(ufw4, Hook.INPUT, ssh)} == {Verdict.ACCEPT, Verdict.DROP}
    assert not any(certain for _, certain in _outcomes(ufw4, Hook.INPUT, ssh))


HOST = """*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:admin - [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -s 10.98.10.0/24 -j admin
-A INPUT -p tcp -m multiport --dports 80,443,8000:8010 -j ACCEPT
-A INPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A INPUT -p udp -m udp ! --dport 1024:65535 -j REJECT --reject-with icmp-port-unreachable
{extra}
-A admin -p tcp -m tcp --dport 22 -j ACCEPT
-A admin -j RETURN
COMMIT
"""


def _host(extra: str = "") -> Firewall:
    return Firewall.from_nft_json(
        {"nftables": nft_objects(parse_iptables_save(HOST.format(extra=extra)), "ip")}
    )


def _to_host(proto: int, src: str, dport: int, **more: Any) -> Packet:
    return Packet(4, proto, src, "10.98.1.1", 40000, dport, iif="eth0", **more)


def test_a_host_firewall_means_what_its_rules_say() -> None:
    host = _host()
    assert _outcomes(host, Hook.INPUT, _to_host(6, "10.98.10.7", 22)) == ACCEPT
    assert _outcomes(host, Hook.INPUT, _to_host(6, "10.98.20.7", 22)) == DROP
    for port in (80, 443, 8005):
        assert _outcomes(host, Hook.INPUT, _to_host(6, "10.98.20.7", port)) == ACCEPT
    assert _outcomes(host, Hook.INPUT, _to_host(6, "10.98.20.7", 8011)) == DROP
    assert _outcomes(host, Hook.INPUT, _to_host(1, "10.98.20.7", 0, icmp_type=8)) == ACCEPT
    assert _outcomes(host, Hook.INPUT, _to_host(1, "10.98.20.7", 0, icmp_type=13)) == DROP
    # REJECT answers but does not let through: a drop for the reachability questions.
    assert _outcomes(host, Hook.INPUT, _to_host(17, "10.98.20.7", 53)) == DROP
    assert _outcomes(host, Hook.INPUT, _to_host(6, "10.98.20.7", 25, ct="established")) == ACCEPT
    loopback = Packet(4, 6, "127.0.0.1", "127.0.0.1", 40000, 25, iif="lo")
    assert _outcomes(host, Hook.INPUT, loopback) == ACCEPT


@pytest.mark.parametrize(
    "rule",
    [
        "-A INPUT -p tcp -m tcp --dport 25 -m recent --update --seconds 60 --name x -j ACCEPT",
        "-A INPUT -p tcp -m tcp --dport 25 -m recent --rcheck --name x -j ACCEPT",
        "-A INPUT -p tcp -m tcp --dport 25 -m set --match-set allowed src -j ACCEPT",
        "-A INPUT -p tcp -m tcp --dport 25 -m hashlimit --hashlimit-upto 5/sec"
        " --hashlimit-name h -j ACCEPT",
        "-A INPUT -p tcp -m tcp --dport 25 -m conntrack --ctorigdst 10.98.1.1 -j ACCEPT",
        "-A INPUT -p tcp -m tcp --dport 25 -m conntrack --ctstate NEW,DNAT -j ACCEPT",
        "-A INPUT -p tcp -m tcp --dport 25 -m policy --dir in --pol ipsec -j ACCEPT",
        "-A INPUT -p tcp -m tcp --dport 25 -m tcp --bogus 1 -j ACCEPT",
        "-A INPUT -p tcp -m tcp --dport 25 -m icmp ! --icmp-type 3/4 -j ACCEPT",
        "-A INPUT -p tcp -m tcp --dport 25 -s 10.98.999.1 -j ACCEPT",
        "-A INPUT -p tcp -m tcp --dport 25 --weird -j ACCEPT",
    ],
)
def test_unknown_conditions_stay_unknown(rule: str) -> None:
    """Before the policy's drop: an unknown condition makes port 25 uncertain."""
    firewall = _host(rule)
    smtp = _outcomes(firewall, Hook.INPUT, _to_host(6, "10.98.20.7", 25))
    assert smtp == {(Verdict.ACCEPT, False), (Verdict.DROP, False)}
    # What the rule does decide stays decided.
    assert _outcomes(firewall, Hook.INPUT, _to_host(6, "10.98.10.7", 22)) == ACCEPT


@pytest.mark.parametrize(
    "rule",
    [
        "-A INPUT -p tcp -m tcp --dport",
        "-A INPUT -p tcp -m tcp --dport 25 -j TEE --gateway 10.98.0.1",
        "-A INPUT -p tcp -m tcp --dport 25 -j REJECT --reject-with icmp-bogus",
        "-A INPUT -p tcp -m tcp --dport 25 -j CONNMARK --save-mark --nfmask 0xff --ctmask 0xff",
    ],
)
def test_unknown_targets_and_rules_without_verdict_are_never_certain(rule: str) -> None:
    firewall = _host(rule)
    smtp = _outcomes(firewall, Hook.INPUT, _to_host(6, "10.98.20.7", 25))
    assert smtp and not any(certain for _, certain in smtp)
    assert _outcomes(firewall, Hook.INPUT, _to_host(6, "10.98.10.7", 22)) == ACCEPT


def test_unparsed_arguments_keep_the_verdict_behind_an_unknown_match() -> None:
    exprs = _translate("-A INPUT -p tcp -m tcp --bogus 1 -j DROP")
    assert exprs == [{"xt": {"type": "match", "name": "unparsed: -m tcp --bogus"}}, {"drop": None}]
    missing = _translate("-A INPUT -p tcp -m tcp --dport -j DROP")
    assert missing[0]["xt"]["name"].startswith("unparsed: ") and missing[-1] == {"drop": None}


def test_recent_set_alone_only_records() -> None:
    assert _translate("-A INPUT -m recent --set --name x --rsource") == []
    assert _translate("-A INPUT -m recent ! --set --name x -j DROP")[0] == {
        "xt": {"type": "match", "name": "recent"}
    }


def test_multiport_ports_means_either_port() -> None:
    (case,) = [c for c in LINES if c["line"] in DIFFERENT_BY_DESIGN]
    ours = _translate(case["line"])
    theirs = _uncounted(case["expr"])

    def firewall(exprs: list[Any]) -> Firewall:
        chain = {"family": "ip", "table": "t", "name": "c", "type": "filter", "hook": "input"}
        rule = {"family": "ip", "table": "t", "chain": "c", "handle": 1, "expr": exprs}
        return Firewall.from_nft_json(
            {"nftables": [{"chain": {**chain, "prio": 0, "policy": "drop"}}, {"rule": rule}]}
        )

    for sport, dport in ((40000, 53), (53, 40000), (67, 9), (9, 68), (69, 40000), (40000, 66)):
        packet = Packet(4, 17, "10.98.1.2", "10.98.1.1", sport, dport, iif="eth0")
        mine = _outcomes(firewall(ours), Hook.INPUT, packet)
        assert mine == _outcomes(firewall(theirs), Hook.INPUT, packet)
        assert mine == (ACCEPT if {sport, dport} & {53, 67, 68} else DROP)


WORDS = [
    "-p", "tcp", "udp", "!", "-m", "tcp", "multiport", "conntrack", "--dport", "--dports",
    "22", "1:2", ",", "--ctstate", "NEW", "-j", "-g", "ACCEPT", "DNAT", "--to-destination",
    "10.98.0.1:80", "[", "-s", "10.98.0.0/16", "-i", "eth+", "--comment", "x", "LOG", "",
    "-m", "icmp", "--icmp-type", "3/4", "REJECT", "--reject-with", "tcp-reset", "--set-xmark",
    "0x1/0x2", "MARK", "addrtype", "--src-type", "LOCAL", "limit", "--limit", "3/min",
    "--bogus", "SUB",
]  # fmt: skip
#: Options followed by a value (a "--bogus" after one of them is that value, not an option).
TAKES_VALUE = {
    "-p", "-m", "-j", "-g", "-s", "-i", "--dport", "--dports", "--ctstate", "--comment",
    "--to-destination", "--icmp-type", "--reject-with", "--set-xmark", "--src-type", "--limit",
}  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=14), st.sampled_from(["ip", "ip6"]))
def test_any_arguments_translate_without_raising_and_compile(words: list[str], family: str) -> None:
    exprs = rule_exprs(words, family, frozenset({"SUB"}))
    rule = {"family": family, "table": "t", "chain": "c", "handle": 1, "expr": exprs}
    chain = {"family": family, "table": "t", "name": "c"}
    ruleset = parse_ruleset({"nftables": [{"chain": chain}, {"rule": rule}]})
    assert ruleset.problems == []
    # Nothing is silently dropped: an option nobody knows leaves an xt object behind.
    bogus = [i for i, w in enumerate(words) if w == "--bogus"]
    if any(i == 0 or words[i - 1] not in TAKES_VALUE for i in bogus):
        assert any("xt" in e for e in exprs), exprs


def test_only_iptables_families_are_asked() -> None:
    with pytest.raises(FamilyError):
        nft_objects((), "inet")


def test_a_chain_with_a_policy_outside_the_known_tables_has_no_hook() -> None:
    text = "*broute\n:BROUTING ACCEPT [0:0]\nCOMMIT\n"
    (chain,) = [o["chain"] for o in nft_objects(parse_iptables_save(text), "ip") if "chain" in o]
    assert "hook" not in chain


# -- live: both backends read alike ---------------------------------------------------------

LIVE_TOOLS = ("ip", "nft", "iptables-legacy", "iptables-nft", "ip6tables-legacy", "ip6tables-nft")
live = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in LIVE_TOOLS),
    reason="needs root, iproute2, nftables and both iptables backends",
)

#: Representative rule sets, as commands for one backend ({ipt} / {ip6t}).
RULE_SETS = {
    "host": """
{ipt} -N admin
{ipt} -A INPUT -i lo -j ACCEPT
{ipt} -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
{ipt} -A INPUT -s 10.98.10.0/24 -j admin
{ipt} -A INPUT -p tcp -m multiport --dports 80,443,8000:8010 -j ACCEPT
{ipt} -A INPUT -p icmp --icmp-type echo-request -m limit --limit 5/sec -j ACCEPT
{ipt} -A INPUT -m recent --update --seconds 60 --hitcount 4 --name bad -j DROP
{ipt} -A INPUT -j LOG --log-prefix "in: " --log-level 6
{ipt} -A admin -p tcp --dport 22 -m comment --comment "ssh from the admin net" -j ACCEPT
{ipt} -A admin -j RETURN
{ipt} -P INPUT DROP
{ip6t} -A INPUT -p ipv6-icmp --icmpv6-type 135 -m hl --hl-eq 255 -j ACCEPT
{ip6t} -A INPUT -m rt --rt-type 0 -j DROP
{ip6t} -A INPUT -p tcp --dport 22 -s fd98:0:0:10::/64 -j ACCEPT
{ip6t} -A INPUT -j REJECT --reject-with icmp6-adm-prohibited
""",
    "gateway": """
{ipt} -t nat -A PREROUTING -i eth0 -p tcp --dport 8080 -j DNAT --to-destination 10.98.250.2:80
{ipt} -t nat -A POSTROUTING -o eth0 -s 10.98.250.0/24 -j MASQUERADE
{ipt} -t nat -A OUTPUT -m addrtype --dst-type LOCAL -p tcp --dport 81 -j REDIRECT --to-ports 80
{ipt} -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu
{ipt} -t mangle -A PREROUTING -i eth1 -j MARK --set-mark 0x2
{ipt} -t raw -A PREROUTING -p udp --dport 123 -j CT --notrack
{ipt} -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
{ipt} -A FORWARD -i eth0 -o eth1+ -p tcp -d 10.98.250.2 --dport 80 -j ACCEPT
{ipt} -A FORWARD -i eth1+ -j ACCEPT
{ipt} -P FORWARD DROP
{ip6t} -A FORWARD -i eth0 -p tcp --syn -j DROP
""",
}


def _run(*argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


@pytest.fixture
def namespaces() -> Iterator[dict[str, str]]:
    made: list[str] = []
    try:
        for backend in ("legacy", "nft"):
            name = f"t-ipt-{os.getpid()}-{backend}"
            _run("ip", "netns", "add", name)
            made.append(name)
        yield dict(zip(("legacy", "nft"), made, strict=True))
    finally:
        for name in made:
            subprocess.run(
                ["ip", "netns", "del", name], capture_output=True, timeout=60, check=False
            )


def _load(namespace: str, backend: str, commands: str) -> None:
    script = "set -e\n" + commands.format(ipt=f"iptables-{backend}", ip6t=f"ip6tables-{backend}")
    _run("ip", "netns", "exec", namespace, "sh", "-c", script)


def _translated(namespace: str, backend: str) -> dict[str, list[dict[str, Any]]]:
    by_family: dict[str, list[dict[str, Any]]] = {}
    for family, tool in (("ip", "iptables"), ("ip6", "ip6tables")):
        text = _run("ip", "netns", "exec", namespace, f"{tool}-{backend}-save")
        tables = sorted(parse_iptables_save(text), key=lambda t: t.name)
        by_family[family] = nft_objects(tables, family)
    return by_family


def _rules_per_chain(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str], int]:
    counts: dict[tuple[str, str, str], int] = {}
    for obj in objects:
        if "chain" in obj:
            body = obj["chain"]
            counts.setdefault((body["family"], body["table"], body["name"]), 0)
        if "rule" in obj:
            key = (obj["rule"]["family"], obj["rule"]["table"], obj["rule"]["chain"])
            counts[key] = counts.get(key, 0) + 1
    return counts


@live
@pytest.mark.parametrize("name", sorted(RULE_SETS))
def test_both_backends_translate_alike(name: str, namespaces: dict[str, str]) -> None:
    for backend, namespace in namespaces.items():
        _load(namespace, backend, RULE_SETS[name])
    legacy = _translated(namespaces["legacy"], "legacy")
    nft = _translated(namespaces["nft"], "nft")
    assert legacy == nft
    # The nft listing holds the same rules, chain by chain, in the same positions (iptables-nft
    # creates only the chains it used: the others hold no rule here).
    listing = json.loads(
        _run("ip", "netns", "exec", namespaces["nft"], "nft", "-j", "list", "ruleset")
    )
    listed = _rules_per_chain(listing["nftables"])
    ours = _rules_per_chain(nft["ip"] + nft["ip6"])
    assert {k: v for k, v in ours.items() if k in listed} == listed
    assert all(v == 0 for k, v in ours.items() if k not in listed)
    assert sum(listed.values()) == len(RULE_SETS[name].strip().splitlines()) - sum(
        1 for line in RULE_SETS[name].splitlines() if " -N " in line or " -P " in line
    )
