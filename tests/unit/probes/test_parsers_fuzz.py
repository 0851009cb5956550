"""Every parser, on arbitrary text, either parses or raises ParseError: nothing else."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probes.parsers import (
    ParseError,
    WgOutputs,
    parse_audit_config,
    parse_auditctl_rules,
    parse_auditctl_status,
    parse_dpkg_query,
    parse_flag,
    parse_host_key,
    parse_ip_addr,
    parse_ip_route,
    parse_ip_rule,
    parse_machine_id,
    parse_nft_ruleset,
    parse_os_release,
    parse_pam_directory,
    parse_ps,
    parse_ss,
    parse_wireguard,
)

DATA = Path(__file__).parents[2] / "data"
RECORDED = DATA / "recorded"

PARSERS: dict[str, Callable[[str], Any]] = {
    "ip-addr": parse_ip_addr,
    "ip-route-v4": lambda t: parse_ip_route(t, 4),
    "ip-route-v6": lambda t: parse_ip_route(t, 6),
    "ip-rule-v4": lambda t: parse_ip_rule(t, 4),
    "ip-rule-v6": lambda t: parse_ip_rule(t, 6),
    "ss": parse_ss,
    "ps": parse_ps,
    "os-release": parse_os_release,
    "dpkg-query": parse_dpkg_query,
    "host-key": parse_host_key,
    "nft": parse_nft_ruleset,
    "flag": lambda t: parse_flag(t, "ip_forward"),
    "machine-id": parse_machine_id,
    "wg": lambda t: parse_wireguard(WgOutputs(t, t, t, t, t, t, t, t)),
    "auditctl-s": parse_auditctl_status,
    "auditctl-l": parse_auditctl_rules,
    "grep-etc-audit": parse_audit_config,
    "grep-pam.d": parse_pam_directory,
}

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parses_or_raises_parse_error(parser: Callable[[str], Any], text: str) -> None:
    try:
        parser(text)
    except ParseError as exc:
        assert exc.tool and str(exc)


# Text made of the characters these outputs are built from, so that the fuzzer gets deep.
TOOLISH = st.text(alphabet=st.sampled_from(list('{}[]":,0123456789abcdef ./\t\n=%*()_-')))
# Audit rules, auditctl's status and grep -RHn lines: options, operators, paths and numbers.
RULEISH = st.lists(
    st.sampled_from(
        [
            "-a",
            "-A",
            "-w",
            "-W",
            "-d",
            "-D",
            "-e",
            "-F",
            "-S",
            "-C",
            "-k",
            "-p",
            "-b",
            "always,exit",
            "never,task",
            "exit,always",
            "always,exclude",
            "arch=b64",
            "euid=0",
            "auid!=-1",
            "auid>=1000",
            "msgtype=EXECVE",
            "execve,execveat",
            "all",
            "uid!=euid",
            "wa",
            "x",
            "/etc/audit/audit.rules:1:",
            "/etc/audit/rules.d/a.rules:2:",
            "/etc/audit/auditd.conf:3:",
            "/etc/pam.d/sshd:4:",
            "session",
            "required",
            "[success=1 default=ignore]",
            "@include",
            "pam_tty_audit.so",
            "enable=root",
            "\\",
            "#",
            "enabled",
            "pid",
            "0",
            "1",
            "f200=3",
            " ",
            " ",
            "\n",
            "\n",
            "\t",
            "=",
            "[",
        ]
    ),
    max_size=40,
).map("".join)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "dst",
                    "gateway",
                    "dev",
                    "table",
                    "type",
                    "metric",
                    "prefsrc",
                    "nexthops",
                    "ifname",
                    "flags",
                    "addr_info",
                    "family",
                    "local",
                    "prefixlen",
                    "priority",
                    "action",
                    "nftables",
                    "link_type",
                    "linkinfo",
                    "info_kind",
                    "scope",
                    "via",
                    "host",
                    "not",
                ]
            ),
            inner,
            max_size=6,
        )
    ),
    max_leaves=20,
)


@pytest.mark.parametrize("name", sorted(PARSERS))
@SETTINGS
@given(text=st.text())
def test_any_text(name: str, text: str) -> None:
    parses_or_raises_parse_error(PARSERS[name], text)


@pytest.mark.parametrize("name", sorted(PARSERS))
@SETTINGS
@given(text=TOOLISH)
def test_tool_shaped_text(name: str, text: str) -> None:
    parses_or_raises_parse_error(PARSERS[name], text)


@pytest.mark.parametrize("name", ["auditctl-s", "auditctl-l", "grep-etc-audit", "grep-pam.d"])
@SETTINGS
@given(text=RULEISH)
def test_rule_shaped_text(name: str, text: str) -> None:
    parses_or_raises_parse_error(PARSERS[name], text)


@pytest.mark.parametrize("name", ["ip-addr", "ip-route-v4", "ip-route-v6", "ip-rule-v4", "nft"])
@SETTINGS
@given(document=JSONISH)
def test_json_shaped_documents(name: str, document: Any) -> None:
    parses_or_raises_parse_error(PARSERS[name], json.dumps(document))


@pytest.mark.parametrize(
    ("name", "recorded"),
    [
        ("ip-addr", "netns-a.ip-addr.json"),
        ("ip-route-v4", "netns-a.ip-route-v4.json"),
        ("ss", "netns-a.ss-tulnp.txt"),
        ("ps", "host.ps.txt"),
        ("dpkg-query", "host.dpkg-query.txt"),
        ("nft", "netns-a.nft-ruleset.json"),
        ("auditctl-s", "../audit/auditctl-s.enabled.txt"),
        ("auditctl-l", "../audit/auditctl-l.setuid-only.txt"),
        ("grep-etc-audit", "../audit/etc-audit.root-commands.grep.txt"),
        ("grep-pam.d", "lab-image.grep-pam.d.txt"),
    ],
)
@SETTINGS
@given(data=st.data())
def test_mutated_real_outputs(name: str, recorded: str, data: st.DataObject) -> None:
    # Real output with one slice deleted or replaced: the nearest thing to a garbled reply.
    text = (RECORDED / recorded).read_text()
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, min(len(text), start + 40)))
    insert = data.draw(TOOLISH)
    parses_or_raises_parse_error(PARSERS[name], text[:start] + insert[:10] + text[end:])


def test_deep_nesting_is_a_parse_error_not_a_recursion_error() -> None:
    with pytest.raises(ParseError):
        parse_nft_ruleset("[" * 100_000 + "]" * 100_000)


def test_huge_integer_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        parse_ip_addr("[" + "9" * 10_000 + "]")


@pytest.mark.parametrize("depth", [100, 300])
def test_json_nested_past_the_limit_is_refused_before_it_reaches_the_facts(depth: int) -> None:
    """Nested 260 deep, a rule set parsed fine but made facts.json and observations.json
    unwritable for every host (pydantic stops serialising at about 255 levels)."""
    from auditor.domain.facts import HostFacts
    from probes.parsers.errors import MAX_JSON_DEPTH

    nested = "[" * depth + "]" * depth
    text = '{"nftables": [{"rule": {"expr": ' + nested + "}}]}"
    with pytest.raises(ParseError, match=f"nested deeper than {MAX_JSON_DEPTH}"):
        parse_nft_ruleset(text)
    shallow = "[" * 8 + "]" * 8
    document = parse_nft_ruleset('{"nftables": [{"rule": {"expr": ' + shallow + "}}]}")
    assert HostFacts(host="h", nftables=document).model_dump_json()
