"""The inventory: a complete valid one loads; each kind of mistake is named with file and line."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from netaddr import IPAddress

from auditor.domain.inventory import Inventory, Medium, Role, SourceError, Zone, load_inventory

DATA = Path(__file__).parents[1] / "data" / "inventory"
LAB = DATA / "lab.yaml"
BAD = DATA / "bad"


def line_of(path: Path, text: str) -> int:
    """1-based number of the first line of ``path`` containing ``text``."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


def load_error(path: Path) -> SourceError:
    with pytest.raises(SourceError) as caught:
        load_inventory(path)
    return caught.value


# -- the valid inventories ------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab() -> Inventory:
    return load_inventory(LAB)


def test_the_reference_lab_inventory_loads_with_every_part(lab: Inventory) -> None:
    assert lab.organisation == "Reference Lab Anonymisation Co."
    assert set(lab.networks) == {
        "inet",
        "carrier-in",
        "carrier-out",
        "line-recv",
        "line-send",
        "term-lan",
        "office",
    }
    assert set(lab.tunnels) == {"wg-in", "wg-out"}
    assert lab.organisation_hosts() == ["proc-srv", "recv-srv", "send-srv", "term-1", "term-2"]
    assert lab.hosts_with(Role.EXTERNAL_PARTY) == ["hospital", "recipient"]
    assert lab.hosts_with(Role.VANTAGE) == ["inet-canary"]


def test_zones_media_and_vantage_addresses_are_typed(lab: Inventory) -> None:
    assert lab.networks_in(Zone.EXTERNAL) == ["carrier-in", "carrier-out", "inet"]
    assert lab.networks_in(Zone.PROTECTED) == ["line-recv", "line-send", "term-lan"]
    assert lab.networks["line-recv"].medium is Medium.LEASED_LINE
    vantage = lab.networks["line-recv"].auditor
    assert vantage is not None
    assert vantage.ipv4 == IPAddress("10.98.21.1")
    assert vantage.ipv6 == IPAddress("fd98:0:0:21::1")


def test_hosts_services_and_tunnels_are_read(lab: Inventory) -> None:
    recv = lab.hosts["recv-srv"]
    assert recv.ssh == IPAddress("10.98.21.20")
    assert [(s.port, s.proto, s.sources) for s in recv.services] == [
        (51820, "udp", ["carrier-in"]),
        (22, "tcp", ["wg-in", "line-recv"]),
    ]
    assert lab.tunnels["wg-out"].endpoints == ["recipient", "send-srv"]
    assert lab.network_of(IPAddress("10.98.100.20")) == "wg-in"
    assert lab.network_of(IPAddress("fd98:0:0:22::20")) == "line-send"
    assert lab.network_of(IPAddress("192.0.2.1")) is None


def test_ssh_paths_are_made_relative_to_the_inventory_file(lab: Inventory) -> None:
    assert lab.ssh.key == (DATA / "keys" / "auditor_ed25519").resolve()
    assert lab.ssh.known_hosts == (DATA / "known_hosts").resolve()
    assert lab.ssh.parallel == 4


def test_scope_permits_the_lab_and_refuses_the_rest(lab: Inventory) -> None:
    assert lab.scope.permits("10.98.30.41")
    assert lab.scope.permits("fd98:0:0:30::/64")
    assert lab.scope.permits("127.0.0.1")
    assert not lab.scope.permits("10.99.0.1")
    assert not lab.scope.permits("10.0.0.0/8")


def test_the_minimal_inventory_loads() -> None:
    inventory = load_inventory(DATA / "minimal.yaml")
    assert inventory.organisation_hosts() == ["recv-srv"]
    assert inventory.ssh.user == "auditor"  # the default


# -- the bad inventories --------------------------------------------------------------------

# (file, the line that is wrong, what the message must say)
BAD_CASES = [
    ("unknown-key", "owner: alice", "hosts.recv-srv.owner: unknown key"),
    ("wrong-type", "twenty-two", "hosts.recv-srv.services.0.port: Input should be a valid integer"),
    ("bad-cidr", "10.98.321.0/24", "networks.line-recv.ipv4: Value error, not an IP network"),
    ("host-bits", "10.98.21.1/24", "has host bits set; write 10.98.21.0/24"),
    (
        "overlapping-networks",
        "10.98.21.128/25",
        "networks.line-recv-b.ipv4: 10.98.21.128/25 overlaps line-recv (10.98.21.0/24)",
    ),
    (
        "address-outside-network",
        "10.98.22.20",
        "hosts.recv-srv.addresses.line-recv.0: 10.98.22.20 is not inside line-recv",
    ),
    (
        "service-unknown-network",
        "term-lan",
        "hosts.recv-srv.services.0.from: no network or tunnel named 'term-lan'",
    ),
    (
        "ssh-outside-scope",
        "192.0.2.20",
        "hosts.recv-srv.ssh: 192.0.2.20 is outside the authorized scope",
    ),
    (
        "network-outside-scope",
        "10.99.10.0/24",
        "networks.carrier-in.ipv4: 10.99.10.0/24 is outside the authorized scope",
    ),
    ("tunnel-missing-network", "carrier-x", "tunnels.wg-in.over: no network named 'carrier-x'"),
    (
        "organisation-host-without-ssh",
        "roles: [receiving]",
        "hosts.recv-srv.roles: an organisation host needs an ssh address",
    ),
    ("duplicate-keys", "    zone: protected", "duplicate key 'zone'"),
]


@pytest.mark.parametrize(("name", "wrong_line", "message"), BAD_CASES)
def test_each_mistake_is_reported_with_file_line_and_key(
    name: str, wrong_line: str, message: str
) -> None:
    path = BAD / f"{name}.yaml"
    error = load_error(path)
    expected_line = line_of(path, wrong_line)
    if name == "duplicate-keys":  # the second occurrence is the wrong one
        expected_line = [
            n for n, line in enumerate(path.read_text().splitlines(), 1) if line == wrong_line
        ][-1]
    matching = [p for p in error.problems if message in p]
    assert matching, error.problems
    assert matching[0].startswith(f"{path}:{expected_line}:"), matching[0]
    assert error.path == path


def test_invalid_yaml_names_the_position_the_parser_stopped_at() -> None:
    path = BAD / "invalid-yaml.yaml"
    error = load_error(path)
    assert error.problems == [f"{path}:24:6: invalid YAML: expected ',' or ']', but got ':'"]


@pytest.mark.parametrize("name", ["empty", "comments-only"])
def test_an_empty_file_is_reported_as_such(name: str) -> None:
    path = BAD / f"{name}.yaml"
    assert load_error(path).problems == [f"{path}: the file is empty"]


def test_a_list_at_the_top_level_is_refused() -> None:
    path = BAD / "top-level-list.yaml"
    [problem] = load_error(path).problems
    assert problem.startswith(f"{path}:1:1: (top level): Input should be a valid dictionary")


def test_a_missing_file_and_a_non_utf8_file_are_source_errors(tmp_path: Path) -> None:
    assert "cannot read" in str(load_error(tmp_path / "absent.yaml"))
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("organisation: Café\n".encode("latin-1"))
    assert "not UTF-8" in str(load_error(latin1))


def test_recursive_aliases_are_refused_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("hosts: &h\n  a: *h\n")
    # An alias is the anchored node itself, so the position is that of the anchored value.
    assert load_error(path).problems == [f"{path}:1:8: an alias refers to a value that contains it"]


def test_alias_expansion_bombs_are_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 8)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert "aliases expand to more than" in str(load_error(path))


def test_deep_nesting_is_refused_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("[" * 3000 + "]" * 3000 + "\n")
    assert "nested too deeply" in str(load_error(path))


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    text = (BAD / "ssh-outside-scope.yaml").read_text()
    text = text.replace("over: carrier-in", "over: carrier-x")
    path = tmp_path / "two.yaml"
    path.write_text(text)
    problems = load_error(path).problems
    assert any("tunnels.wg-in.over" in p for p in problems)
    assert any("hosts.recv-srv.ssh" in p for p in problems)


# -- anything at all ------------------------------------------------------------------------

YAML_PIECES = [
    "version: 1\n",
    "organisation: x\n",
    "scope:\n  authorized: [10.98.0.0/16]\n",
    "ssh: {key: k, known_hosts: h}\n",
    "networks:\n  n:\n    zone: protected\n    medium: lan\n    ipv4: 10.98.1.0/24\n",
    "hosts:\n  h:\n    roles: [receiving]\n    ssh: 10.98.1.5\n",
    "  - ",
    "- ",
    ": ",
    "? ",
    "&a ",
    "*a ",
    "!!binary ",
    "!!python/object:os.system ",
    "{",
    "}",
    "[",
    "]",
    '"',
    "'",
    "\t",
    "\n",
    "  ",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "~",
    "null",
    "1e999",
    "0x1F",
    "2026-11-26",
    "\ufeff",
    "é",
]
yamlish = st.one_of(
    st.lists(st.sampled_from(YAML_PIECES), max_size=30).map("".join),
    st.text(alphabet=string.printable + "é\ufeff\x00", max_size=200),
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(text=yamlish)
def test_any_text_either_loads_or_raises_source_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_inventory(path)
    except SourceError as error:
        assert error.problems
        assert all(problem.startswith(str(path)) for problem in error.problems)


TRICKY_VALUES = [
    "~",
    "[]",
    "{}",
    "-1",
    "0",
    "99999",
    "1.5",
    "true",
    "x",
    "[a, b]",
    "[hospital]",
    "{port: 1}",
    "!!binary aGk=",
    "2026-01-01",
    "10.98.21.0/33",
    "fd98::/200",
    "'::'",
    "0.0.0.0/0",
    "'::/0'",
    "10.98.21.20",
    "'fd98::20'",
    "[10.98.21.20, 'fd98::1']",
    "255.255.255.255",
    "carrier-in",
    "wg-in",
    "recv-srv",
]


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_a_valid_inventory_with_any_value_swapped_loads_or_raises_source_error(
    tmp_path: Path, data: st.DataObject
) -> None:
    """Mutations of a valid file reach the cross-reference checks with odd but typed values."""
    lines = (DATA / "minimal.yaml").read_text().splitlines()
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        index = data.draw(st.sampled_from([i for i, ln in enumerate(lines) if ": " in ln]))
        key = lines[index].split(": ", 1)[0]
        lines[index] = f"{key}: {data.draw(st.sampled_from(TRICKY_VALUES))}"
    path = tmp_path / "mutated.yaml"
    path.write_text("\n".join(lines) + "\n")
    try:
        load_inventory(path)
    except SourceError as error:
        assert all(problem.startswith(str(path)) for problem in error.problems)


def test_the_annotated_example_in_the_docs_loads(tmp_path: Path) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "inventory.md").read_text()
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "inventory.yaml"
    path.write_text(example)
    inventory = load_inventory(path)
    assert inventory.hosts["recv-srv"].services[1].sources == ["wg-in", "line-recv"]
