"""The SSH host collector against real OpenSSH servers on loopback (and in a namespace)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from auditor.domain.attempts import Attempt, AttemptStatus, ErrorReason
from auditor.domain.facts import HostFacts, IptablesSave
from probes.host_collector import (
    DEFAULT_PLAN,
    PROBE,
    FactRule,
    HostPlan,
    Step,
    Target,
    collect_host,
    collect_hosts,
    evidence_refs,
    keep_needed_module_config,
    raw,
    single,
)
from probes.parsers import parse_host_key, parse_os_release
from tests.unit.probes.ssh_fixtures import (
    TEST_USER,
    MemorySink,
    Sshd,
    allow_all,
    needs_sshd,
    public_temp_folder,
    sshd,
    start_sshd_in_netns,
)

pytestmark = needs_sshd
__all__ = ["sshd"]  # fixture used by name

RECORDED = Path(__file__).parents[2] / "data" / "recorded"


def fact_present(facts: HostFacts, key: str) -> bool:
    if key.startswith("files:"):
        return key[6:] in facts.files
    if key.startswith("commands:"):
        return key[9:] in facts.commands
    return getattr(facts, key) is not None


def assert_every_fact_accounted_for(facts: HostFacts, plan: HostPlan = DEFAULT_PLAN) -> None:
    """Each fact of the plan is either collected (with its evidence) or explained."""
    for key in plan.fact_keys():
        if fact_present(facts, key):
            assert evidence_refs(facts, key), f"{key} has no evidence"
        else:
            assert key in facts.errors, f"{key} is missing without a reason"


@pytest.fixture(scope="module")
def root_collection(sshd: Sshd) -> tuple[Attempt[HostFacts], MemorySink]:
    """One full collection of this machine as root (slow here: root's shell startup)."""
    sink = MemorySink()
    return collect_host("loop", "127.0.0.1", sshd.access(), sink, allow_all), sink


def test_collects_this_machine_over_loopback(
    sshd: Sshd, root_collection: tuple[Attempt[HostFacts], MemorySink]
) -> None:
    attempt, _ = root_collection
    assert attempt.status is AttemptStatus.COMPLETED, attempt.error
    facts = attempt.value
    assert facts is not None
    assert facts.machine_id == Path("/etc/machine-id").read_text().strip()
    assert facts.forwarding_v4 == (Path("/proc/sys/net/ipv4/ip_forward").read_text() == "1\n")
    assert facts.os_release is not None and facts.os_release["ID"] == "debian"
    assert facts.packages is not None and "openssh-server" in facts.packages
    assert facts.interfaces is not None and "lo" in {i.name for i in facts.interfaces}
    assert facts.routes is not None and {r.family for r in facts.routes} == {4, 6}
    assert facts.policy_rules is not None and {r.family for r in facts.policy_rules} == {4, 6}
    assert facts.nftables is not None and "nftables" in facts.nftables
    assert facts.processes is not None and any(p.command == "sshd" for p in facts.processes)
    # Our own test server, seen listening by ss through sudo.
    assert facts.listeners is not None
    assert any(x.port == sshd.port and x.address == "127.0.0.1" for x in facts.listeners)
    # The host keys: the test server's (presented in the handshake) and this machine's files.
    assert facts.host_keys is not None
    fingerprints = {k.fingerprint for k in facts.host_keys}
    assert parse_host_key(sshd.host_key_pub.read_text()).fingerprint in fingerprints
    for path in Path("/etc/ssh").glob("ssh_host_*_key.pub"):
        assert parse_host_key(path.read_text()).fingerprint in fingerprints
    assert facts.wireguard == []  # wg is installed here, with no interface
    assert "ls /var/log" not in facts.commands and "var-log-listing" in facts.commands
    assert_every_fact_accounted_for(facts)


def test_every_artifact_carries_its_provenance(
    root_collection: tuple[Attempt[HostFacts], MemorySink],
) -> None:
    attempt, sink = root_collection
    facts = attempt.value
    assert facts is not None
    assert set(attempt.evidence) == set(facts.evidence.values())
    for artifact in sink.received:
        assert (artifact.probe, artifact.host) == (PROBE, "loop")
        assert isinstance(artifact.started, datetime) and artifact.started <= artifact.finished
    by_command = {a.command: a for a in sink.received}
    route = by_command["ip -4 -j route show table all"]
    assert route.exit_status == 0
    assert route.tool_version is not None and route.tool_version.startswith("ip utility")
    nft = by_command["sudo -n /usr/sbin/nft -j list ruleset"]
    assert nft.tool_version is not None and nft.tool_version.startswith("nftables v")
    # The fact's reference is the hash of exactly what the sink was given.
    assert sink.artifacts[facts.evidence["routes:v4"]] is not None
    assert sink.artifacts[facts.evidence["routes:v4"]].command == route.command


def test_unprivileged_account_without_sudo_loses_only_the_sudo_facts(sshd: Sshd) -> None:
    sink = MemorySink()
    attempt = collect_host("loop", "127.0.0.1", sshd.access(TEST_USER), sink, allow_all)
    facts = attempt.value
    assert facts is not None
    assert attempt.succeeded
    for fact in ("nftables", "listeners", "wireguard"):
        assert getattr(facts, fact) is None
        assert facts.errors[fact].startswith("command-failed: ")
        assert "sudo" in facts.errors[fact]
    assert "/etc/sudoers" not in facts.files
    # Everything that needs no privilege is there.
    assert facts.interfaces is not None and facts.routes is not None
    assert facts.machine_id is not None and facts.packages is not None
    assert_every_fact_accounted_for(facts)


def test_hung_command_times_out_and_the_collection_goes_on(sshd: Sshd) -> None:
    hang = raw("commands:hang", "echo started; sleep 31.7")
    plan = HostPlan(rules=(hang, *DEFAULT_PLAN.rules[:3]))
    sink = MemorySink()
    began = time.monotonic()
    attempt = collect_host(
        "loop", "127.0.0.1", sshd.access(TEST_USER, command_timeout=1.5), sink, allow_all,
        plan=plan,
    )  # fmt: skip
    assert time.monotonic() - began < 10
    facts = attempt.value
    assert facts is not None
    assert facts.errors["commands:hang"].startswith("timeout: ")
    assert "hang" not in facts.commands
    # What it printed before it was stopped is kept as evidence.
    assert sink.artifacts[facts.evidence["commands:hang"]].content == b"started\n"
    assert facts.interfaces is not None and facts.routes is not None
    assert facts.policy_rules is not None


def test_command_killed_by_a_signal_is_a_failed_fact_with_the_signal(sshd: Sshd) -> None:
    killed = raw("commands:killed", "echo started; kill -KILL $$")
    # An absent_ok step whose stderr says "No such file or directory" and is then killed: read
    # as exit -1, it passed for "no such host key file" and host_keys was built without it.
    host_keys = next(r for r in DEFAULT_PLAN.rules if r.fact == "host_keys")
    absent_then_killed = FactRule(
        "host_keys",
        (Step("host_keys:ed25519", "cat /nonexistent-key.pub; kill -KILL $$", absent_ok=True),),
        host_keys.build,
    )
    plan = HostPlan(rules=(killed, absent_then_killed, DEFAULT_PLAN.rules[0]))
    sink = MemorySink()
    attempt = collect_host("loop", "127.0.0.1", sshd.access(TEST_USER), sink, allow_all, plan=plan)
    facts = attempt.value
    assert facts is not None
    assert attempt.succeeded  # one command's death is that fact's error, not the host's
    assert facts.errors["commands:killed"] == (
        "command-failed: 'echo started; kill -KILL $$' ended without an exit status: "
        "killed by signal KILL"
    )
    assert "killed" not in facts.commands
    assert facts.host_keys is None
    assert "killed by signal KILL" in facts.errors["host_keys"]
    # What it printed is evidence, with no exit status (there was none).
    evidence = sink.artifacts[facts.evidence["commands:killed"]]
    assert (evidence.content, evidence.exit_status) == (b"started\n", None)
    assert facts.interfaces is not None


def test_dropped_connection_mid_command_fails_the_host_as_unreachable(sshd: Sshd) -> None:
    dropped = raw("commands:dropped", "echo started; sleep 0.5; kill -KILL $PPID")
    plan = HostPlan(rules=(dropped, DEFAULT_PLAN.rules[0]))
    sink = MemorySink()
    attempt = collect_host("loop", "127.0.0.1", sshd.access(TEST_USER), sink, allow_all, plan=plan)
    facts = attempt.value
    assert facts is not None
    assert facts.errors["commands:dropped"].endswith(
        "ended without an exit status: connection lost before an exit status"
    )
    assert facts.errors["interfaces"].startswith("unreachable: ")
    assert attempt.status is AttemptStatus.PARTIAL
    assert attempt.error is not None and attempt.error.reason is ErrorReason.UNREACHABLE


def test_unparseable_output_is_a_parse_error_for_that_fact_only(sshd: Sshd) -> None:
    # /proc/version is not an os-release file; this rule parses it as one.
    plan = HostPlan(rules=(DEFAULT_PLAN.rules[0], _os_release_from("cat /proc/version")))
    attempt = collect_host("loop", "127.0.0.1", sshd.access(), MemorySink(), allow_all, plan=plan)
    facts = attempt.value
    assert facts is not None
    assert facts.os_release is None
    assert facts.errors["os_release"].startswith("parse-error: os-release:1: ")
    assert facts.interfaces is not None


def _os_release_from(command: str) -> FactRule:
    return single("os_release", command, parse_os_release)


def test_parallel_collection_survives_an_unreachable_host(sshd: Sshd) -> None:
    # 127.0.0.2 is loopback too, but the test sshd listens on 127.0.0.1 only: refused.
    targets = [Target("a", "127.0.0.1"), Target("down", "127.0.0.2"), Target("b", "127.0.0.1")]
    sink = MemorySink()
    results = collect_hosts(targets, sshd.access(TEST_USER, parallel=2), sink, allow_all)
    assert list(results) == ["a", "down", "b"]
    for name in ("a", "b"):
        assert results[name].succeeded
        facts = results[name].value
        assert facts is not None and facts.host == name and facts.machine_id is not None
    down = results["down"]
    assert down.status is AttemptStatus.PARTIAL
    assert down.error is not None and down.error.reason is ErrorReason.UNREACHABLE
    assert "down (127.0.0.2:" in down.error.message
    facts = down.value
    assert facts is not None
    assert set(facts.errors) == set(DEFAULT_PLAN.fact_keys())
    assert all(e.startswith("unreachable: ") for e in facts.errors.values())
    assert len(sink.threads) <= 2


def test_out_of_scope_target_is_refused_per_host(sshd: Sshd) -> None:
    def loopback_one_only(address: str) -> None:
        if address != "127.0.0.1":
            raise ValueError("outside the authorized scope")

    results = collect_hosts(
        [Target("in", "127.0.0.1"), Target("out", "127.0.0.3")],
        sshd.access(TEST_USER),
        MemorySink(),
        loopback_one_only,
    )
    assert results["in"].succeeded
    error = results["out"].error
    assert error is not None and error.reason is ErrorReason.OUT_OF_SCOPE


def test_allow_list_is_exactly_the_plan_and_never_asks_for_secrets() -> None:
    allow = DEFAULT_PLAN.allow_list()
    assert set(DEFAULT_PLAN.commands()) <= allow.exact
    for command in allow.exact:
        assert "private" not in command
        assert "preshared" not in command
        assert " dump" not in command
        assert "wg showconf" not in command
        assert "shadow" not in command
    wg = sorted(c for c in allow.exact if "/usr/bin/wg show" in c)
    assert wg == sorted(
        f"sudo -n /usr/bin/wg show {what}"
        for what in [
            "interfaces",
            "all public-key",
            "all listen-port",
            "all peers",
            "all endpoints",
            "all allowed-ips",
            "all latest-handshakes",
            "all persistent-keepalive",
        ]
    )
    # Folder files are read by name only, and no name can smuggle shell syntax.
    assert allow.permits("cat /etc/modprobe.d/usb-storage.conf")
    for sneaky in ("../shadow", "a;id", "a b", "$(id)", "-n", ".hidden", "x\nid"):
        assert not allow.permits(f"cat /etc/modprobe.d/{sneaky}")


def test_module_config_keeps_what_the_terminal_check_needs() -> None:
    text = (
        "blacklist usb_storage\n"
        "install usb_storage /bin/false\n"
        "alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* usb_storage\n"
        "alias pci:v00008086d* e1000e\n"
        "options snd slots=1\n"
    )
    kept = keep_needed_module_config(text)
    assert "e1000e" not in kept
    for line in text.splitlines():
        if "e1000e" not in line:
            assert line in kept


@pytest.fixture
def wireguard_netns() -> Iterator[tuple[str, str, str]]:
    """A namespace with a real userspace WireGuard interface and an nftables rule set.
    Yields (namespace, private key, public key). The peer has no endpoint: nothing is sent."""
    netns = "audssh-wg"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    daemon: subprocess.Popen[bytes] | None = None
    try:
        run = ["ip", "netns", "exec", netns]
        subprocess.run([*run, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run([*run, "nft", "-f", str(RECORDED / "netns-nftables.conf")], check=True)
        daemon = subprocess.Popen(
            [*run, "env", "WG_PROCESS_FOREGROUND=1", "wireguard-go", "audwg0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        private = subprocess.run(["wg", "genkey"], capture_output=True, check=True, text=True)
        public = subprocess.run(
            ["wg", "pubkey"], input=private.stdout, capture_output=True, check=True, text=True
        )
        peer = subprocess.run(["wg", "genkey"], capture_output=True, check=True, text=True)
        peer_public = subprocess.run(
            ["wg", "pubkey"], input=peer.stdout, capture_output=True, check=True, text=True
        )
        deadline = time.monotonic() + 10
        while not Path("/var/run/wireguard/audwg0.sock").exists():
            assert time.monotonic() < deadline, "wireguard-go did not start"
            time.sleep(0.05)
        with public_temp_folder() as folder:
            key_file = folder / "wg.key"
            key_file.write_text(private.stdout)
            subprocess.run(
                [*run, "wg", "set", "audwg0", "listen-port", "51999", "private-key",
                 str(key_file), "peer", peer_public.stdout.strip(), "allowed-ips",
                 "10.98.103.2/32"],
                check=True,
            )  # fmt: skip
        subprocess.run([*run, "ip", "addr", "add", "10.98.103.1/24", "dev", "audwg0"], check=True)
        subprocess.run([*run, "ip", "link", "set", "audwg0", "up"], check=True)
        yield netns, private.stdout.strip(), public.stdout.strip()
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(10)
        subprocess.run(["ip", "netns", "del", netns], check=False)


def collect_in_netns(name: str, netns: str) -> tuple[Attempt[HostFacts], MemorySink, bytes]:
    """One collection, as root, of a host that is network namespace ``netns``; with the
    auditor's client key, to check it never reaches the evidence."""
    with public_temp_folder() as folder:
        server = start_sshd_in_netns(folder, netns)
        try:
            sink = MemorySink()
            attempt = collect_host(name, "127.0.0.1", server.access(), sink, allow_all)
        finally:
            server.stop()
        return attempt, sink, server.client_key.read_bytes()


@pytest.mark.skipif(not Path("/usr/bin/wireguard-go").exists(), reason="needs wireguard-go")
def test_wireguard_host_in_a_namespace_and_the_private_key_never_reaches_the_sink(
    wireguard_netns: tuple[str, str, str],
) -> None:
    netns, private_key, public_key = wireguard_netns
    attempt, sink, client_key = collect_in_netns("wg-host", netns)
    facts = attempt.value
    assert attempt.succeeded and facts is not None, attempt.error
    (tunnel,) = facts.wireguard or []
    assert (tunnel.name, tunnel.public_key, tunnel.listen_port) == ("audwg0", public_key, 51999)
    assert tunnel.peers[0].allowed_ips == ["10.98.103.2/32"]
    assert tunnel.peers[0].endpoint is None
    kinds = {i.name: i.kind for i in facts.interfaces or []}
    assert kinds["audwg0"] == "wireguard"
    assert facts.nftables is not None
    chains = [s["chain"] for s in facts.nftables["nftables"] if "chain" in s]
    assert {c["name"]: c["policy"] for c in chains if "policy" in c}["input"] == "drop"
    stored = sink.everything()
    assert private_key.encode() not in stored
    # Nor the auditor's own SSH key, in any line of it.
    for line in client_key.splitlines()[1:-1]:
        assert line not in stored


@pytest.fixture
def iptables_netns() -> Iterator[str]:
    """A namespace with legacy rules (IPv4 only) and an iptables-nft rule using an xt match."""
    netns = f"aud-ipt-{int(time.time() * 1000) % 100000}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        for command in (
            "ip link set lo up",
            "iptables-legacy -A INPUT -p tcp --dport 2222 -j DROP",
            "iptables-nft -A INPUT -m conntrack --ctstate INVALID -j DROP",
            "ipset create aud-blocked hash:net",
            "ipset add aud-blocked 10.98.1.0/24",
            "iptables-legacy -A INPUT -m set --match-set aud-blocked src -j DROP",
        ):
            subprocess.run(["ip", "netns", "exec", netns, *command.split()], check=True)
        yield netns
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)


@pytest.mark.skipif(
    not Path("/usr/sbin/iptables-legacy-save").exists() or not Path("/usr/sbin/ipset").exists(),
    reason="needs iptables and ipset (make setup)",
)
def test_iptables_listings_are_read_only_where_there_is_something_to_read(
    iptables_netns: str,
) -> None:
    attempt, sink, _ = collect_in_netns("ipt-host", iptables_netns)
    facts = attempt.value
    assert attempt.succeeded and facts is not None, attempt.error
    assert facts.iptables is not None, facts.errors.get("iptables")
    assert _lines(facts.iptables.legacy_v4) == [
        "-A INPUT -p tcp -m tcp --dport 2222 -j DROP",
        "-A INPUT -m set --match-set aud-blocked src -j DROP",
    ]
    # A listing looks a set up: the sets were read too.
    assert facts.iptables.ipsets is not None
    assert [(s.name, s.members) for s in facts.iptables.ipsets] == [
        ("aud-blocked", ("10.98.1.0/24",))
    ]
    assert _lines(facts.iptables.nft_v4) == ["-A INPUT -m conntrack --ctstate INVALID -j DROP"]
    # No IPv6 legacy table, no ip6 xt rule: those two listings were never asked for.
    assert facts.iptables.legacy_v6 is None and facts.iptables.nft_v6 is None
    sent = {artifact.command for artifact in sink.received}
    assert "sudo -n /usr/sbin/iptables-legacy-save" in sent
    assert "sudo -n /usr/sbin/ip6tables-legacy-save" not in sent
    assert "sudo -n /usr/sbin/ip6tables-nft-save" not in sent
    assert_every_fact_accounted_for(facts)


def _lines(listing: IptablesSave | None) -> list[str]:
    assert listing is not None
    return [rule.text for table in listing.tables for rule in table.rules]
