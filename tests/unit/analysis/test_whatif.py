"""``auditor whatif`` on the lab's recordings: the baseline changed the way a scenario changes
the lab gives the scenario's model verdicts, without probing anything.

Each recording (tests/data/contexts/NAME) is made a run folder here: its inventory, its
observations, and its judged findings as findings.json (the stored verdicts a what-if compares
with and carries the probe-only ones from).
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditor.analysis.changes import (
    Change,
    ForwardingChange,
    HostDownChange,
    LinkDownChange,
    ListenChange,
    RouteChange,
    RouteSpec,
    RulesetChange,
    parse_listener,
    parse_route_line,
)
from auditor.analysis.stored import load_stored_model
from auditor.analysis.whatif import (
    CARRIED_PREFIX,
    NOT_MEASURED,
    WHATIF_FILE,
    WhatifError,
    run_whatif,
)
from auditor.cli.exitcodes import ExitCode
from auditor.cli.main import app
from auditor.cli.summary import exit_code_for
from auditor.domain.facts import HostFacts, Route
from auditor.domain.findings import Finding, FindingsDocument, RunInfo, Status, write_findings

CONTEXTS = Path(__file__).parents[2] / "data" / "contexts"
SCENARIOS = Path(__file__).parents[3] / "lab" / "scenarios"
Pair = tuple[str, str]


def judged(scenario: str) -> list[Finding]:
    raw = json.loads(gzip.decompress((CONTEXTS / scenario / "judged.json.gz").read_bytes()))
    return [Finding.model_validate(item) for item in raw]


def make_run(scenario: str, into: Path) -> Path:
    """A run folder of the recording, as ``auditor audit`` would have left it."""
    into.mkdir(parents=True)
    for name in ("inventory.yaml", "observations.json.gz"):
        shutil.copyfile(CONTEXTS / scenario / name, into / name)
    document = FindingsDocument(
        run=RunInfo(id=f"recorded-{scenario}", started="2026-01-01T00:00:00+00:00"),
        findings=judged(scenario),
    )
    write_findings(into / "findings.json", document)
    return into


@pytest.fixture
def baseline_run(tmp_path: Path) -> Path:
    return make_run("baseline", tmp_path / "baseline-run")


def recorded_facts(scenario: str) -> dict[str, HostFacts]:
    stored = load_stored_model(CONTEXTS / scenario)
    return {h: f for h, a in stored.observations.collection.items() if (f := a.value) is not None}


def route_line(route: Route) -> str:
    """A recorded route as the ``ip route`` line that adds it."""
    words = [] if route.type == "unicast" else [route.type]
    words.append(route.destination if route.destination != "default" else _any(route.family))
    for word, value in (("via", route.gateway), ("dev", route.device), ("src", route.source)):
        if value is not None:
            words += [word, value]
    if route.table != "main":
        words += ["table", route.table]
    if route.metric is not None:
        words += ["metric", str(route.metric)]
    return " ".join(words)


def _any(family: int) -> str:
    return "0.0.0.0/0" if family == 4 else "::/0"


def scenario_changes(scenario: str, workdir: Path) -> list[Change]:
    """The scenario's difference from the baseline, as what-if changes: rule sets (as the
    recorded nft -j JSON), main-table routes, listeners and forwarding."""
    base, changed = recorded_facts("baseline"), recorded_facts(scenario)
    changes: list[Change] = []
    for host in sorted(changed):
        before, after = base[host], changed[host]
        if _rules(before) != _rules(after):
            path = workdir / f"{scenario}-{host}.json"
            path.write_text(json.dumps(after.nftables))
            changes.append(RulesetChange(host, path))
        changes += _route_changes(host, before, after)
        changes += _listen_changes(host, before, after)
        if (before.forwarding_v4, before.forwarding_v6) != (
            after.forwarding_v4,
            after.forwarding_v6,
        ):
            changes.append(ForwardingChange(host, bool(after.forwarding_v4)))
    return changes


def _rules(facts: HostFacts) -> list[object]:
    """The rule set without what differs between two loads of the same rules."""
    objects = (facts.nftables or {}).get("nftables", [])
    return [
        {kind: {k: v for k, v in body.items() if k != "handle"} for kind, body in obj.items()}
        for obj in objects
        if "metainfo" not in obj
    ]


def _route_changes(host: str, before: HostFacts, after: HostFacts) -> Iterator[RouteChange]:
    old = {r for r in before.routes or [] if r.table == "main"}
    new = {r for r in after.routes or [] if r.table == "main"}
    for route in sorted(old - new, key=repr):
        yield RouteChange(host, parse_route_line(route_line(route)), remove=True)
    for route in sorted(new - old, key=repr):
        spec = parse_route_line(route_line(route))
        assert spec.route == route, "the line must parse back to the recorded route"
        yield RouteChange(host, spec, remove=False)


def _listen_changes(host: str, before: HostFacts, after: HostFacts) -> Iterator[ListenChange]:
    old = {(s.proto, s.address, s.port) for s in before.listeners or []}
    for proto, address, port in sorted(
        {(s.proto, s.address, s.port) for s in after.listeners or []} - old
    ):
        where = address if ":" not in address else f"[{address}]"
        text = f"{where}:{port}/{proto}"
        yield ListenChange(host, parse_listener(text), text)


def _comparable(text: str) -> str:
    """What a what-if cannot reproduce masked: link-local addresses differ between two starts
    of the lab (new MACs on every veth), and a listener added by --listen names no process."""
    text = re.sub(r"fe80::[0-9a-f:]+(/\d+)?", "fe80::…", text)
    return re.sub(r"\(([^()]+) on ", "(… on ", text)


def model_failures(findings: list[Finding]) -> set[Pair]:
    return {
        (f.control, f.subject)
        for f in findings
        if f.model is not None and f.model.status is Status.FAIL
    }


# --- no change ----------------------------------------------------------------------------


def test_no_change_gives_the_stored_model_verdicts(baseline_run: Path, tmp_path: Path) -> None:
    result = run_whatif(baseline_run, tmp_path / "out", [])
    stored = {(f.control, f.subject): f for f in judged("baseline")}
    got = {(f.control, f.subject): f for f in result.findings}
    assert set(got) == set(stored)
    with_model = [pair for pair, f in stored.items() if f.model is not None]
    assert with_model
    for pair in with_model:
        model = stored[pair].model
        assert model is not None
        assert got[pair].model == model, pair
        assert got[pair].status is model.status, pair
    assert result.changed == []
    assert exit_code_for(result.findings) is ExitCode.OK


def test_no_probe_result_is_reused_as_if_measured(baseline_run: Path, tmp_path: Path) -> None:
    result = run_whatif(baseline_run, tmp_path / "out", [])
    not_measured = NOT_MEASURED.format(run="recorded-baseline")
    for finding in result.findings:
        if finding.model is not None:
            assert finding.empirical is not None
            assert finding.empirical.status is Status.INCONCLUSIVE
            assert finding.empirical.detail == not_measured
            assert finding.disagreement is None
    stored = {(f.control, f.subject): f for f in judged("baseline")}
    carried = [f for f in result.findings if f.control == "inventory-complete"]
    assert carried
    for finding in carried:
        before = stored[(finding.control, finding.subject)].empirical
        assert finding.empirical is not None and before is not None
        assert (
            finding.empirical.detail
            == CARRIED_PREFIX.format(run="recorded-baseline") + before.detail
        )
        assert finding.status is stored[(finding.control, finding.subject)].status


def test_the_output_folder_reads_as_a_run(baseline_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    change = RouteChange("recv-srv", parse_route_line("blackhole 10.98.60.0/24"), remove=False)
    result = run_whatif(baseline_run, out, [change])
    whatif = json.loads((out / WHATIF_FILE).read_text())
    assert whatif["of_run"] == "recorded-baseline"
    assert whatif["changes"] == [{"kind": "route", "spec": "recv-srv=blackhole 10.98.60.0/24"}]
    document = json.loads((out / "findings.json").read_text())
    assert document["run"]["id"] == result.run_id
    assert result.run_id.startswith("recorded-baseline.whatif-")
    for name in ("report.en.html", "report.ja.html", "inventory.yaml", "facts.json"):
        assert (out / name).is_file(), name
    again = load_stored_model(out)  # what `auditor query` reads
    facts = again.context.facts("recv-srv")
    assert facts is not None and facts.routes is not None
    assert any(r.type == "blackhole" and r.destination == "10.98.60.0/24" for r in facts.routes)
    assert again.observations.egress == {} and again.observations.scans == {}


def test_a_folder_that_is_no_earlier_whatif_is_refused(baseline_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(WhatifError, match="not empty"):
        run_whatif(baseline_run, out, [])
    earlier = tmp_path / "earlier"
    run_whatif(baseline_run, earlier, [])
    run_whatif(baseline_run, earlier, [])  # an earlier what-if is written over


# --- the scenarios the changes can express -------------------------------------------------

#: Scenarios whose whole difference from the baseline is rule sets, routes, listeners and
#: forwarding. The others change what whatif cannot: interfaces (proc-dual-homed,
#: shared-host), the inventory (plaintext-link, rogue-device), processes and configuration
#: files (remote-control's VNC process, logging-off, terminal-usb, hostile-host).
EXPRESSIBLE = ["recv-egress", "send-inbound", "remote-control", "proc-via-sending"]


@pytest.mark.parametrize("scenario", EXPRESSIBLE)
def test_a_scenarios_change_gives_its_model_verdicts(scenario: str, tmp_path: Path) -> None:
    run = make_run("baseline", tmp_path / "run")
    changes = scenario_changes(scenario, tmp_path)
    assert changes
    result = run_whatif(run, tmp_path / "out", changes)
    recorded = judged(scenario)
    assert model_failures(result.findings) == model_failures(recorded)
    recorded_model = {(f.control, f.subject): f.model for f in recorded if f.model is not None}
    for finding in result.findings:
        if finding.model is not None:
            model = recorded_model[(finding.control, finding.subject)]
            assert finding.model.status is model.status
            assert _comparable(finding.model.detail) == _comparable(model.detail)
    expected = ExitCode.FAIL if model_failures(recorded) else ExitCode.OK
    assert exit_code_for(result.findings) is expected


def test_recv_egress_as_nft_text_and_route_lines(baseline_run: Path, tmp_path: Path) -> None:
    changes: list[Change] = [
        RulesetChange("recv-srv", SCENARIOS / "recv-egress" / "recv-nftables.conf"),
        RouteChange("recv-srv", parse_route_line("default via 10.98.10.1"), remove=False),
        RouteChange("recv-srv", parse_route_line("default via fd98:0:0:10::1"), remove=False),
    ]
    result = run_whatif(baseline_run, tmp_path / "out", changes)
    assert model_failures(result.findings) == model_failures(judged("recv-egress"))
    assert model_failures(result.findings) == {("recv-no-outbound", "recv-srv")}
    (change,) = result.changed
    assert (change.control, change.subject, change.old, change.new) == (
        "recv-no-outbound",
        "recv-srv",
        "pass",
        "fail",
    )
    assert change.new_path[0].startswith("recv-srv(route carrier-in")
    assert change.new_path[1] == "recv-srv(output carrier-in: policy accept)"
    assert change.vanished_path == ()


def _recv_egress(tmp_path: Path) -> list[Change]:
    return [
        RulesetChange("recv-srv", SCENARIOS / "recv-egress" / "recv-nftables.conf"),
        RouteChange("recv-srv", parse_route_line("default via 10.98.10.1"), remove=False),
    ]


def test_a_link_down_closes_the_path_over_it(baseline_run: Path, tmp_path: Path) -> None:
    changes = [*_recv_egress(tmp_path), LinkDownChange("carrier-in")]
    result = run_whatif(baseline_run, tmp_path / "out", changes)
    outbound = next(f for f in result.findings if f.control == "recv-no-outbound")
    assert outbound.status is Status.PASS
    assert outbound.path == []


def test_a_down_hosts_findings_are_not_applicable(baseline_run: Path, tmp_path: Path) -> None:
    changes = [*_recv_egress(tmp_path), HostDownChange("recv-srv")]
    result = run_whatif(baseline_run, tmp_path / "out", changes)
    own = [f for f in result.findings if f.subject == "recv-srv"]
    assert own
    for finding in own:
        assert finding.status is Status.NOT_APPLICABLE
        assert "recv-srv is down in this what-if" in finding.summary
        assert finding.model is None and finding.empirical is None
    assert all(f.status is not Status.FAIL for f in result.findings)


# --- the command --------------------------------------------------------------------------

runner = CliRunner()


def test_the_command_prints_the_changed_verdict_and_exits_1(
    baseline_run: Path, tmp_path: Path
) -> None:
    ruleset = SCENARIOS / "recv-egress" / "recv-nftables.conf"
    result = runner.invoke(
        app,
        [
            "whatif",
            str(baseline_run),
            "--out",
            str(tmp_path / "out"),
            "--ruleset",
            f"recv-srv={ruleset}",
            "--route",
            "recv-srv=default via 10.98.10.1",
        ],
    )
    assert result.exit_code == ExitCode.FAIL, result.output
    assert "recv-no-outbound recv-srv: pass -> fail" in result.output
    assert "new path:" in result.output
    assert "recv-srv(output carrier-in: policy accept)" in result.output


def test_the_command_on_the_baseline_without_change_exits_0(
    baseline_run: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["whatif", str(baseline_run), "--out", str(tmp_path / "out")])
    assert result.exit_code == ExitCode.OK, result.output
    assert "No verdict differs" in result.output


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--route", "recv-svr=default via 10.98.10.1"], "no host 'recv-svr'"),
        (["--link-down", "carrier-inn"], "carrier-inn: no such network"),
        (["--host-down", "nobody"], "no host 'nobody'"),
        (["--route", "recv-srv=default dev carrier-in"], "cannot tell IPv4 from IPv6"),
        (["--listen", "send-srv=8443"], "expected [ADDR:]PORT/tcp"),
        (["--forwarding", "send-srv=yes"], "on or off"),
        (["--route", "recv-srv=-10.98.99.0/24"], "no route matching"),
    ],
)
def test_bad_changes_exit_3_naming_the_problem(
    baseline_run: Path, tmp_path: Path, args: list[str], complaint: str
) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["whatif", str(baseline_run), "--out", str(out), *args])
    assert result.exit_code == ExitCode.CANNOT_RUN, result.output
    assert complaint in " ".join(result.output.split())
    assert not (out / "findings.json").exists()


def test_nft_text_with_a_syntax_error_exits_3_with_file_and_line(
    baseline_run: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.nft"
    bad.write_text("table inet filter {\n  chain output {\n    policy acept;\n  }\n}\n")
    result = runner.invoke(
        app,
        [
            "whatif",
            str(baseline_run),
            "--out",
            str(tmp_path / "out"),
            "--ruleset",
            f"recv-srv={bad}",
        ],
    )
    assert result.exit_code == ExitCode.CANNOT_RUN, result.output
    assert f"{bad}:3:" in result.output
    assert "Error" in result.output


def test_route_spec_objects_match_only_what_they_name() -> None:
    spec: RouteSpec = parse_route_line("default via 10.98.10.1")
    other_gateway = spec.route.model_copy(update={"gateway": "10.98.10.2"})
    other_device = spec.route.model_copy(update={"device": "eth9"})
    assert spec.matches(spec.route)
    assert not spec.matches(other_gateway)
    assert spec.matches(other_device)  # dev not written: any device


def test_the_baseline_rule_set_closes_recv_egress(tmp_path: Path) -> None:
    # The default routes alone are not the problem: carrier-in is on-link, and the output
    # chain accepting everything reaches hospital there. The rule set is.
    run = make_run("recv-egress", tmp_path / "run")
    path = tmp_path / "baseline-recv.json"
    path.write_text(json.dumps(recorded_facts("baseline")["recv-srv"].nftables))
    changes: list[Change] = [
        RulesetChange("recv-srv", path),
        RouteChange("recv-srv", parse_route_line("default via 10.98.10.1"), remove=True),
    ]
    result = run_whatif(run, tmp_path / "out", changes)
    assert model_failures(result.findings) == set()
    (change,) = result.changed
    assert (change.control, change.subject, change.old, change.new) == (
        "recv-no-outbound",
        "recv-srv",
        "fail",
        "pass",
    )
    assert change.new_path == ()
    assert any(hop.startswith("recv-srv(output carrier-in") for hop in change.vanished_path)
    assert exit_code_for(result.findings) is ExitCode.OK
