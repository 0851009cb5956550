"""The zone matrix: what the model and the probes say for each pair of networks, computed on
the recorded lab scenarios (tests/data/contexts), the synthetic organisation of the benchmarks
and run folders read the way ``auditor report`` reads them."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from auditor.analysis.stored import StoredModel, load_stored_model
from auditor.domain.attempts import Attempt, ErrorReason
from auditor.report.matrix import ProbeCell, ZoneMatrix, build_matrix, zone_matrix
from auditor.report.run import load_run
from bench.synthetic import generate
from policies.empirical import EgressAttempt, EgressObservation, OpenPort, ScanObservation
from policies.snapshot import OBSERVATIONS_FILE, Observations
from tests.data.runs import sample_runs
from topology.graph import Topology

CONTEXTS = Path(__file__).resolve().parents[2] / "data" / "contexts"
EXTERNAL = ("inet", "carrier-in", "carrier-out")
PROTECTED = ("line-recv", "line-send", "term-lan")


def recorded(name: str) -> StoredModel:
    return load_stored_model(CONTEXTS / name)


def matrix_of(model: StoredModel, observations: Observations | None = None) -> ZoneMatrix:
    return build_matrix(
        model.inventory,
        model.context.topology,
        model.observations if observations is None else observations,
    )


@pytest.fixture(scope="module")
def baseline() -> ZoneMatrix:
    return matrix_of(recorded("baseline"))


@pytest.fixture(scope="module")
def recv_egress() -> ZoneMatrix:
    return matrix_of(recorded("recv-egress"))


def model_state(matrix: ZoneMatrix, source: str, destination: str) -> str:
    cell = matrix.model_cell(source, destination)
    assert cell is not None, f"{source} → {destination} was not modelled"
    return cell.state


# -- the model side --------------------------------------------------------------------------


@pytest.mark.parametrize("source", EXTERNAL)
@pytest.mark.parametrize("destination", PROTECTED)
def test_baseline_has_no_path_from_outside_into_the_protected_networks(
    baseline: ZoneMatrix, source: str, destination: str
) -> None:
    assert model_state(baseline, source, destination) == "no"


@pytest.mark.parametrize("source", PROTECTED)
@pytest.mark.parametrize("destination", ("inet", "office", "carrier-in", "carrier-out"))
def test_baseline_has_no_path_from_the_protected_networks_outward(
    baseline: ZoneMatrix, source: str, destination: str
) -> None:
    assert model_state(baseline, source, destination) == "no"


def test_a_router_whose_rules_were_not_collected_makes_its_networks_unknown(
    baseline: ZoneMatrix,
) -> None:
    # office-gw is not reachable over SSH in the lab: it forwards office ↔ inet, rules unknown.
    cell = baseline.model_cell("office", "inet")
    assert cell is not None
    assert cell.state == "unknown"
    assert cell.certain == ()
    assert "tcp/any" in cell.uncertain
    assert model_state(baseline, "inet", "office") == "unknown"


def test_the_diagonal_is_not_asked_of_the_model(baseline: ZoneMatrix) -> None:
    assert baseline.model_cell("line-recv", "line-recv") is None
    assert not baseline.grouped
    names = [line.name for line in baseline.lines]
    # The outside first, then inward, tunnels last.
    assert names.index("inet") < names.index("office") < names.index("term-lan")
    assert names[-2:] == ["wg-in", "wg-out"]
    assert {line.zone for line in baseline.lines if line.kind == "tunnel"} == {"tunnel"}


def test_a_certain_path_is_yes_with_the_ports_that_get_through() -> None:
    org = generate(50)
    inventory = org.inventory()
    matrix = build_matrix(inventory, Topology.build(inventory, org.facts), None)
    office_out = matrix.model_cell("s000-office", "inet")
    assert office_out is not None
    assert office_out.state == "yes"
    assert office_out.certain == ("tcp/any", "udp/any", "ping")
    # The site router answers pings for its own core address from the server LAN, but a
    # packet it accepts for itself never crosses the core network: the cell is the network's.
    lan_to_core = matrix.model_cell("s000-srv-lan", "core")
    assert lan_to_core is not None
    assert (lan_to_core.state, lan_to_core.certain) == ("no", ())
    assert model_state(matrix, "inet", "s000-line-recv") == "no"


def test_without_a_topology_every_row_says_why_instead_of_no(baseline: ZoneMatrix) -> None:
    model = recorded("baseline")
    matrix = build_matrix(model.inventory, None, model.observations)
    assert matrix.model_cell("inet", "term-lan") is None
    assert matrix.unmodelled["inet"] == "the topology could not be rebuilt"
    # The probe side does not depend on the model.
    assert matrix.probe_cell("line-send", "line-send") == baseline.probe_cell(
        "line-send", "line-send"
    )


# -- the probe side --------------------------------------------------------------------------


def test_scans_show_the_open_ports_and_their_hosts(baseline: ZoneMatrix) -> None:
    cell = baseline.probe_cell("line-send", "line-send")
    assert cell.open == (("send-srv", ("tcp/22",)),)
    assert cell.closed == ("proc-srv",)
    terminals = baseline.probe_cell("term-lan", "term-lan")
    assert dict(terminals.open) == {
        "proc-srv": ("tcp/22",),
        "term-1": ("tcp/22",),
        "term-2": ("tcp/22",),
    }


def test_baseline_egress_from_the_receiving_network_sees_nothing(baseline: ZoneMatrix) -> None:
    cell = baseline.probe_cell("line-recv", "inet")
    assert cell.probed
    assert not cell.got_through
    assert set(cell.quiet) == {"recv-srv", "proc-srv"}


def test_recv_egress_shows_the_receiving_network_getting_out(recv_egress: ZoneMatrix) -> None:
    cell = recv_egress.probe_cell("line-recv", "inet")
    assert cell.got_through
    escaped = dict(cell.escaped)
    assert "tcp/443" in escaped["recv-srv"]
    assert cell.quiet == ("proc-srv",)
    # proc-srv's own networks saw nothing leave: the escape is recv-srv's alone.
    assert not recv_egress.probe_cell("term-lan", "inet").got_through


def test_a_cell_nothing_probed_is_blank_not_no(baseline: ZoneMatrix) -> None:
    cell = baseline.probe_cell("inet", "term-lan")
    assert cell == ProbeCell()
    assert not cell.probed


def test_observed_text_that_is_not_an_address_is_ignored_and_a_failure_is_noted() -> None:
    model = recorded("baseline")
    scan = ScanObservation(
        network="inet",
        vantage="ssh inet-canary",
        targets=("<script>alert(1)</script>", "10.98.22.20", "192.0.2.7"),
        open_ports=(
            OpenPort("<b>", "tcp", 1, "open"),
            OpenPort("10.98.22.20", "tcp", 22, "open"),
            OpenPort("10.98.22.20", "tcp", 80, "open"),
        ),
    )
    attempts = (
        EgressAttempt("tcp", "10.98.0.1", 443, executed=True, outcome="timeout"),
        EgressAttempt("udp", "10.98.40.1", 53, executed=False, outcome="not run"),
    )
    egress = EgressObservation("term-1", captured_networks=("inet",), attempts=attempts)
    observations = Observations(
        scans={"inet": Attempt.ok("scan", "inet", scan, [])},
        egress={
            "term-1": Attempt.ok("egress", "term-1", egress, []),
            "term-2": Attempt.failed("egress", "term-2", ErrorReason.TIMEOUT, "no answer", []),
        },
    )
    matrix = matrix_of(model, observations)
    assert matrix.probe_cell("inet", "line-send").open == (("send-srv", ("tcp/22", "tcp/80")),)
    assert matrix.probe_cell("term-lan", "inet").quiet == ("term-1",)
    # Not run (and not captured on office): never "nothing seen".
    assert matrix.probe_cell("term-lan", "office").unobserved == ("term-1",)
    assert any(note.startswith("egress test of term-2 failed") for note in matrix.notes)


# -- grouping by zone ------------------------------------------------------------------------


def test_many_networks_are_grouped_by_zone_and_say_so(baseline: ZoneMatrix) -> None:
    model = recorded("recv-egress")
    grouped = build_matrix(
        model.inventory, model.context.topology, model.observations, group_above=4
    )
    assert grouped.grouped
    assert [line.name for line in grouped.lines] == ["external", "office", "protected", "tunnel"]
    assert [line.members for line in grouped.lines] == [3, 1, 3, 2]
    assert "rows and columns are zones" in grouped.notes[0]
    into = grouped.model_cell("office", "external")
    assert into is not None
    assert (into.state, into.examples, into.pairs) == ("unknown", ("office → inet",), 1)
    assert model_state(grouped, "external", "protected") == "no"
    outward = grouped.probe_cell("protected", "external")
    assert dict(outward.escaped)["recv-srv"]
    # Within a zone the diagonal is a real question (between different networks).
    assert model_state(grouped, "protected", "protected") == "no"


def test_the_two_thousand_host_organisation_is_grouped() -> None:
    org = generate(2000)
    inventory = org.inventory()
    matrix = build_matrix(inventory, Topology.build(inventory, org.facts), None)
    assert matrix.grouped
    assert [line.name for line in matrix.lines] == ["external", "office", "protected", "tunnel"]
    assert model_state(matrix, "office", "external") == "yes"
    assert model_state(matrix, "external", "protected") == "no"
    # Protected networks reach one another only through host-local answers (a site router
    # answering for its core address), which are not network paths.
    assert model_state(matrix, "protected", "protected") == "no"
    tunnels_out = matrix.model_cell("tunnel", "external")
    assert tunnels_out is not None
    assert tunnels_out.state == "unknown"
    assert tunnels_out.pairs > 0
    assert tunnels_out.examples
    assert all(" → " in example for example in tunnels_out.examples)


# -- a run folder, as `auditor report` reads it -------------------------------------------------


def run_folder_from_recording(name: str, target: Path) -> Path:
    """A run folder of a recorded scenario: a sample run's findings and evidence, the
    scenario's inventory and observations."""
    run_dir = sample_runs.make_baseline(target)
    shutil.copyfile(CONTEXTS / name / "inventory.yaml", run_dir / "inventory.yaml")
    packed = (CONTEXTS / name / (OBSERVATIONS_FILE + ".gz")).read_bytes()
    (run_dir / OBSERVATIONS_FILE).write_bytes(gzip.decompress(packed))
    return run_dir


def test_a_stored_run_loads_its_observations_into_the_matrix(tmp_path: Path) -> None:
    run = load_run(run_folder_from_recording("recv-egress", tmp_path / "run"))
    assert run.observations is not None
    matrix = zone_matrix(run)
    assert matrix is not None
    assert matrix.probe_cell("line-recv", "carrier-in").got_through


def test_a_missing_observations_file_is_a_note(tmp_path: Path) -> None:
    run_dir = run_folder_from_recording("baseline", tmp_path / "run")
    (run_dir / OBSERVATIONS_FILE).unlink()
    run = load_run(run_dir)
    assert run.observations is None
    assert f"no {OBSERVATIONS_FILE}: the zone matrix shows no probe results" in run.notes
    matrix = zone_matrix(run)
    assert matrix is not None
    assert not matrix.probes
    assert model_state(matrix, "inet", "term-lan") == "no"


@pytest.mark.parametrize("content", [b"{not json", b'{"format": "something-else/9"}', b"\xff\xfe"])
def test_a_bad_observations_file_is_a_note_never_a_crash(tmp_path: Path, content: bytes) -> None:
    run_dir = run_folder_from_recording("baseline", tmp_path / "run")
    (run_dir / OBSERVATIONS_FILE).write_bytes(content)
    run = load_run(run_dir)
    assert run.observations is None
    assert any(note.startswith(f"{OBSERVATIONS_FILE} could not be read") for note in run.notes)
    assert zone_matrix(run) is not None


def test_a_run_without_an_inventory_has_no_matrix(tmp_path: Path) -> None:
    run_dir = sample_runs.make_baseline(tmp_path / "run")
    (run_dir / "inventory.yaml").unlink()
    run = load_run(run_dir, keep_inventory_copy=False)
    run.inventory = None
    assert zone_matrix(run) is None
