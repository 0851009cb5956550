"""Parsers on real outputs recorded from this machine, throwaway namespaces and the lab."""

from __future__ import annotations

from pathlib import Path

import pytest

from probes.parsers import (
    ParseError,
    WgOutputs,
    parse_dpkg_query,
    parse_flag,
    parse_host_key,
    parse_ip_addr,
    parse_ip_route,
    parse_ip_rule,
    parse_machine_id,
    parse_nft_ruleset,
    parse_os_release,
    parse_ps,
    parse_ss,
    parse_wireguard,
)

RECORDED = Path(__file__).parents[2] / "data" / "recorded"


def recorded(name: str) -> str:
    return (RECORDED / name).read_text()


def recorded_sources(suffix: str) -> list[str]:
    """Every recorded source (host, netns-a, lab-recv-srv, ...) that has the given output."""
    return sorted(p.name[: -len(suffix)] for p in RECORDED.glob(f"*{suffix}"))


@pytest.mark.parametrize("source", recorded_sources(".ip-addr.json"))
def test_every_recorded_ip_addr_parses_with_loopback(source: str) -> None:
    interfaces = parse_ip_addr(recorded(f"{source}.ip-addr.json"))
    lo = next(i for i in interfaces if i.name == "lo")
    assert lo.kind == "loopback"
    assert any(a.address == "127.0.0.1" and a.prefixlen == 8 for a in lo.addresses)


def test_netns_interfaces_carry_both_families_and_the_wireguard_link() -> None:
    interfaces = {i.name: i for i in parse_ip_addr(recorded("netns-a.ip-addr.json"))}
    eth0 = interfaces["eth0"]
    assert eth0.up
    assert eth0.mac is not None
    assert {(a.address, a.prefixlen, a.family) for a in eth0.addresses} >= {
        ("10.98.250.1", 24, 4),
        ("fd98:250::1", 64, 6),
    }
    wg0 = interfaces["wg0"]
    assert wg0.mac is None  # a layer-3 tunnel has no MAC
    assert [a.address for a in wg0.addresses if a.scope == "global"] == [
        "10.98.102.1",
        "fd98:102::1",
    ]


def test_routes_of_every_type_and_table() -> None:
    routes = parse_ip_route(recorded("netns-a.ip-route-v4.json"), 4)
    by_destination = {(r.destination, r.table, r.gateway): r for r in routes}
    assert by_destination[("10.98.252.0/24", "main", None)].type == "blackhole"
    assert by_destination[("10.98.253.0/24", "main", None)].type == "unreachable"
    assert by_destination[("10.98.254.0/24", "main", None)].type == "prohibit"
    assert by_destination[("default", "100", "10.98.250.2")].device == "eth0"
    in_200 = by_destination[("10.98.201.0/24", "200", "10.98.250.2")]
    assert (in_200.metric, in_200.source) == (50, "10.98.250.1")
    assert by_destination[("10.98.250.1/32", "local", None)].type == "local"
    assert by_destination[("10.98.250.255/32", "local", None)].type == "broadcast"
    assert all(r.family == 4 for r in routes)


def test_multipath_route_becomes_one_route_per_next_hop() -> None:
    v4 = parse_ip_route(recorded("netns-a.ip-route-v4.json"), 4)
    hops = {(r.gateway, r.device) for r in v4 if r.destination == "10.98.200.0/24"}
    assert hops == {("10.98.250.2", "eth0"), ("10.98.251.2", "eth1")}
    v6 = parse_ip_route(recorded("netns-a.ip-route-v6.json"), 6)
    hops6 = {r.gateway for r in v6 if r.destination == "fd98:200::/64"}
    assert hops6 == {"fd98:250::2", "fe80::2"}


def test_ipv6_routes_keep_their_family_and_types() -> None:
    routes = parse_ip_route(recorded("netns-a.ip-route-v6.json"), 6)
    types = {r.destination: r.type for r in routes if r.table == "main"}
    assert types["fd98:252::/64"] == "blackhole"
    assert types["fd98:253::/64"] == "unreachable"
    assert {r.type for r in routes if r.table == "local"} >= {"local", "multicast"}
    assert all(r.family == 6 for r in routes)


def test_route_of_the_wrong_family_is_refused() -> None:
    with pytest.raises(ParseError, match="not IPv6"):
        parse_ip_route(recorded("netns-a.ip-route-v4.json"), 6)


def test_policy_rules_keep_selectors_and_actions() -> None:
    rules = {r.priority: r for r in parse_ip_rule(recorded("netns-a.ip-rule-v4.json"), 4)}
    assert rules[100].table == "100"
    assert rules[100].selector == {"src": "10.98.250.0", "srclen": 24}
    assert rules[200].selector["fwmark"] == "0x1"
    assert rules[300].selector["not"] is True
    assert rules[300].selector["iif"] == "eth0"
    assert (rules[400].table, rules[400].selector["action"]) == ("", "prohibit")
    v6 = {r.priority: r for r in parse_ip_rule(recorded("netns-a.ip-rule-v6.json"), 6)}
    assert v6[500].selector == {"src": "all", "oif": "eth0", "action": "unreachable"}


def test_listeners_of_every_address_shape() -> None:
    listeners = {
        (x.proto, x.address, x.port): x for x in parse_ss(recorded("netns-a.ss-tulnp.txt"))
    }
    assert set(listeners) == {
        ("udp", "0.0.0.0", 51820),
        ("udp", "::", 51820),
        ("udp", "10.98.250.1", 5353),
        ("udp", "fd98:250::1", 5354),
        ("tcp", "0.0.0.0", 8080),
        ("tcp", "0.0.0.0", 9090),  # bound to eth0 ("0.0.0.0%eth0")
        ("tcp", "*", 7070),  # dual-stack wildcard
        ("tcp", "::", 2222),
    }
    assert listeners[("udp", "0.0.0.0", 51820)].process == "wireguard-go"
    assert listeners[("tcp", "::", 2222)].pid is not None


def test_ss_without_process_column_gives_unknown_owner() -> None:
    (only,) = parse_ss(recorded("host.ss-tulnp.txt"))
    assert (only.process, only.pid) == (None, None)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('tcp LISTEN 0 128 [::]:22 [::]:* users:(("sshd",pid=1,fd=3))', ("::", 22, "sshd")),
        (
            'tcp LISTEN 0 128 *:22 *:* users:(("sshd",pid=1,fd=3),("sshd",pid=9,fd=3))',
            ("*", 22, "sshd"),
        ),
        (
            'udp UNCONN 0 0 127.0.0.53%lo:53 0.0.0.0:* users:(("systemd-resolve",pid=5,fd=13))',
            ("127.0.0.53", 53, "systemd-resolve"),
        ),
        ("udp UNCONN 0 0 [fe80::1]%eth0:546 [::]:*", ("fe80::1", 546, None)),
        (
            'tcp LISTEN 0 5 0.0.0.0:5900 0.0.0.0:* users:(("Xvnc server",pid=77,fd=4))',
            ("0.0.0.0", 5900, "Xvnc server"),
        ),
    ],
)
def test_ss_line_shapes(line: str, expected: tuple[str, int, str | None]) -> None:
    (listener,) = parse_ss(line + "\n")
    assert (listener.address, listener.port, listener.process) == expected


def test_ss_header_line_is_refused_with_its_line_number() -> None:
    text = "Netid State Recv-Q Send-Q Local Address:Port Peer Address:Port\n"
    with pytest.raises(ParseError) as caught:
        parse_ss("tcp LISTEN 0 1 0.0.0.0:1 0.0.0.0:*\n" + text)
    assert caught.value.line == 2


def test_processes_of_this_host() -> None:
    processes = parse_ps(recorded("host.ps.txt"))
    assert processes[0].pid == 1
    kernel_threads = [p for p in processes if p.args.startswith("[")]
    assert kernel_threads and all(p.user == "root" for p in kernel_threads)
    # comm is cut at 15 characters while args keeps the full name.
    long = [p for p in processes if len(p.command) == 15]
    assert all(p.args.strip("[]").startswith(p.command) or "/" in p.args for p in long)


def test_ps_command_name_with_spaces_is_cut_by_column() -> None:
    text = "  412 alice    Web Content     /usr/lib/firefox/firefox -contentproc\n"
    (process,) = parse_ps(text)
    assert (process.pid, process.user, process.command) == (412, "alice", "Web Content")
    assert process.args == "/usr/lib/firefox/firefox -contentproc"


def test_wireguard_fields_join_into_interfaces_and_peers() -> None:
    def output(field: str) -> str:
        return recorded(f"netns-a.wg-{field}.txt")

    (wg0,) = parse_wireguard(
        WgOutputs(
            interfaces=output("interfaces"),
            public_key=output("public-key"),
            listen_port=output("listen-port"),
            peers=output("peers"),
            endpoints=output("endpoints"),
            allowed_ips=output("allowed-ips"),
            latest_handshakes=output("latest-handshakes"),
            persistent_keepalive=output("persistent-keepalive"),
        )
    )
    assert (wg0.name, wg0.listen_port) == ("wg0", 51820)
    (peer,) = wg0.peers
    assert peer.endpoint == "10.98.250.2:51820"
    assert peer.allowed_ips == ["10.98.102.2/32", "fd98:102::2/128"]
    assert peer.persistent_keepalive == 25
    assert peer.latest_handshake is None  # recorded before any handshake: 0 means never


def test_wireguard_peer_without_endpoint_and_no_interfaces() -> None:
    key_a = "Q1zlbMXM0r8Yx6OeLu+JaqFXN+IQD0Ybtof8leRc4xo="
    key_b = "6SmSvGcFXw40oLX3sdE8NDcXBkuvU8xYKmtJfDYztSk="
    (wg,) = parse_wireguard(
        WgOutputs(
            interfaces="wg-out\n",
            public_key=f"wg-out\t{key_b}\n",
            listen_port="wg-out\t0\n",
            peers=f"wg-out\t{key_a}\n",
            endpoints=f"wg-out\t{key_a}\t(none)\n",
            allowed_ips=f"wg-out\t{key_a}\t(none)\n",
            latest_handshakes=f"wg-out\t{key_a}\t1732650000\n",
            persistent_keepalive=f"wg-out\t{key_a}\toff\n",
        )
    )
    assert wg.listen_port is None
    assert wg.peers[0].endpoint is None
    assert wg.peers[0].allowed_ips == []
    assert wg.peers[0].latest_handshake == 1732650000
    empty = WgOutputs("\n", "", "", "", "", "", "", "")
    assert parse_wireguard(empty) == []


def test_wireguard_peer_not_listed_is_refused() -> None:
    key = "Q1zlbMXM0r8Yx6OeLu+JaqFXN+IQD0Ybtof8leRc4xo="
    outputs = WgOutputs(
        "wg0\n", f"wg0\t{key}\n", "wg0\t1\n", "", f"wg0\t{key}\t(none)\n", "", "", ""
    )
    with pytest.raises(ParseError, match="not listed"):
        parse_wireguard(outputs)


def test_os_release_and_packages_of_this_host() -> None:
    release = parse_os_release(recorded("host.os-release.txt"))
    assert release["ID"] == "debian"
    assert release["PRETTY_NAME"].startswith("Debian GNU/Linux")
    packages = parse_dpkg_query(recorded("host.dpkg-query.txt"))
    assert "openssh-server" in packages
    assert packages["bash"][0].isdigit()


def test_dpkg_removed_packages_are_not_installed() -> None:
    text = "ii \tbash\t5.2.15-2+b7\nrc \tx11vnc\t0.9.16-9\nun \tfoo\t\n"
    assert parse_dpkg_query(text) == {"bash": "5.2.15-2+b7"}


def test_os_release_quoting() -> None:
    text = '# comment\nNAME=\'A B\'\nID=x\nVERSION="1 \\"q\\""\n\n'
    assert parse_os_release(text) == {"NAME": "A B", "ID": "x", "VERSION": '1 "q"'}
    with pytest.raises(ParseError) as caught:
        parse_os_release('ID=x\nNAME="unclosed\n')
    assert caught.value.line == 2


@pytest.mark.parametrize(
    ("key_type", "fingerprint"),
    [
        ("ed25519", "SHA256:Oz+6zQcjaaaToTn1D7I0GiyKsrb/wEeLz4uxWiZX5Sg"),
        ("ecdsa", "SHA256:T77aqK4rT3Fk+SoZNl92iprznoNuTPdbHvnEw6u5Ic0"),
        ("rsa", "SHA256:0ZiVd+RmcK1qh+me1KZ3x5vVIDt3KViDzKmDC+ADkAA"),
    ],
)
def test_host_key_fingerprint_matches_ssh_keygen(key_type: str, fingerprint: str) -> None:
    # The expected values are what `ssh-keygen -lf` printed for the recorded files.
    key = parse_host_key(recorded(f"host.ssh_host_{key_type}_key.pub"))
    assert key.fingerprint == fingerprint


def test_host_key_with_a_lying_label_is_refused() -> None:
    _, blob, *_ = recorded("host.ssh_host_ed25519_key.pub").split()
    with pytest.raises(ParseError, match="does not match"):
        parse_host_key(f"ssh-rsa {blob}\n")


@pytest.mark.parametrize("source", recorded_sources(".nft-ruleset.json"))
def test_recorded_nft_rulesets_validate(source: str) -> None:
    document = parse_nft_ruleset(recorded(f"{source}.nft-ruleset.json"))
    assert "metainfo" in document["nftables"][0]


def test_netns_ruleset_has_the_drop_policies_it_was_loaded_with() -> None:
    document = parse_nft_ruleset(recorded("netns-a.nft-ruleset.json"))
    chains = {s["chain"]["name"]: s["chain"] for s in document["nftables"] if "chain" in s}
    assert chains["input"]["policy"] == "drop"
    assert chains["output"]["policy"] == "drop"


@pytest.mark.parametrize(
    "text", ['{"nftables": {}}', "[]", '{"nftables": [], "x": 1}', '{"nftables": [1]}', "{"]
)
def test_nft_other_documents_are_refused(text: str) -> None:
    with pytest.raises(ParseError):
        parse_nft_ruleset(text)


def test_flags_and_machine_id_of_this_host() -> None:
    assert isinstance(parse_flag(recorded("host.ip_forward.txt"), "ip_forward"), bool)
    assert len(parse_machine_id(recorded("host.machine-id.txt"))) == 32
    with pytest.raises(ParseError):
        parse_flag("2\n", "ip_forward")


def test_a_null_required_field_is_a_parse_error_naming_it() -> None:
    with pytest.raises(ParseError, match="ifname"):
        parse_ip_addr('[{"ifname": null}]')
