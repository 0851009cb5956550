"""``auditor query`` end to end on the recorded lab contexts: the text and --json outputs, the
exit codes, and host text printed as data."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

from auditor.analysis.query import (
    Endpoint,
    EndpointKind,
    Hop,
    PathAnswer,
    QueryAnswer,
)
from auditor.cli.exitcodes import ExitCode
from auditor.cli.main import app
from auditor.cli.query import _print_answer
from topology.intervals import AddressSet
from topology.reach import Reachability

CONTEXTS = Path(__file__).parents[2] / "data" / "contexts"
BASELINE = str(CONTEXTS / "baseline")
RECV_EGRESS = str(CONTEXTS / "recv-egress")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["query", *args])
    return result.exit_code, result.stdout, result.stderr


def test_text_answer_names_the_verdict_and_the_deciding_rule() -> None:
    code, out, _ = run(BASELINE, "--from", "line-recv", "--to", "recv-srv", "--port", "22")
    assert code == ExitCode.OK
    lines = out.splitlines()
    assert "reachable: yes" in lines
    assert "asked: new connections: tcp, udp to port 22" in lines
    assert any(
        line.strip().startswith("2. input")
        and 'iifname "line-recv" tcp dport 22 accept' in line
        and "[inet filter/input/12]" in line
        for line in lines
    )


def test_a_no_is_answered_with_exit_0() -> None:
    code, out, _ = run(BASELINE, "--from", "recv-srv", "--to", "inet")
    assert code == ExitCode.OK
    assert "reachable: no" in out.splitlines()
    assert "path 1" not in out


def test_text_unknown_says_what_could_not_be_decided() -> None:
    code, out, _ = run(RECV_EGRESS, "--from", "recv-srv", "--to", "inet")
    assert code == ExitCode.OK
    lines = out.splitlines()
    assert "reachable: unknown" in lines
    reasons = lines[lines.index("could not decide:") + 1 :]
    assert "  gateway 10.98.10.1 on carrier-in is not in the inventory" in reasons


def test_json_answer_is_one_object() -> None:
    code, out, _ = run(RECV_EGRESS, "--from", "recv-srv", "--to", "carrier-in", "--json")
    assert code == ExitCode.OK
    document = json.loads(out)
    assert document["reachable"] == "yes"
    assert {"from", "to", "packets", "paths", "reasons", "notes"} <= set(document)
    refs = {hop["rule_ref"] for path in document["paths"] for hop in path}
    assert "inet filter/output policy" in refs
    assert document["reasons"] == []


def test_json_inbound_is_a_list_of_those_that_can() -> None:
    code, out, _ = run(BASELINE, "--to", "recv-srv", "--proto", "tcp", "--port", "22", "--json")
    assert code == ExitCode.OK
    answers = json.loads(out)
    assert isinstance(answers, list)
    sources = {a["from"]["name"]: a["reachable"] for a in answers}
    assert sources["line-recv"] == "yes"
    assert "inet" not in sources
    assert set(sources.values()) <= {"yes", "unknown"}
    assert all(a["to"]["name"] == "recv-srv" for a in answers)


def test_text_inbound_counts_the_sources() -> None:
    code, out, _ = run(BASELINE, "--to", "recv-srv", "--proto", "tcp", "--port", "22")
    assert code == ExitCode.OK
    lines = out.splitlines()
    summary = next(line for line in lines if line.startswith("sources that can"))
    blocks = [line for line in lines if line.startswith("from: ")]
    # 9 networks and tunnels, and the 4 collected hosts other than recv-srv, were asked.
    assert summary.startswith(f"sources that can reach it: {len(blocks)} of 13 ")
    assert "from: line-recv (network: 10.98.21.0/24,fd98:0:0:21::/64)" in blocks
    assert not any(line.startswith("from: inet ") for line in blocks)


def test_an_unknown_name_exits_3_with_close_names() -> None:
    code, out, err = run(BASELINE, "--from", "recv-srv", "--to", "procsrv")
    assert code == ExitCode.CANNOT_RUN
    assert out == ""
    assert "cannot query: unknown target 'procsrv'" in err
    assert "close names: proc-srv" in err


def test_a_folder_that_is_not_a_run_exits_3(tmp_path: Path) -> None:
    code, _, err = run(str(tmp_path), "--from", "recv-srv", "--to", "inet")
    assert code == ExitCode.CANNOT_RUN
    assert "no inventory" in err


def test_icmp_with_a_port_exits_3() -> None:
    code, _, err = run(
        BASELINE, "--from", "recv-srv", "--to", "inet", "--proto", "icmp", "--port", "7"
    )
    assert code == ExitCode.CANNOT_RUN
    assert "--port does not apply to icmp" in err


HOSTILE_RULE = 'accept comment "\x1b]0;owned\x07\u202egnp.exe"'


def hostile_answer() -> QueryAnswer:
    """An answer carrying a rule text a hostile host could have written into its rule set."""
    hop = Hop("evil", "office", "input", HOSTILE_RULE, "inet filter/input/3")
    endpoint = Endpoint("evil", EndpointKind.HOST, AddressSet.of("10.98.40.66"))
    path = PathAnswer((hop,), certain=True, packets=("IPv4 tcp",), reasons=())
    return QueryAnswer(
        endpoint, endpoint, "asked", Reachability.YES, ("certain: IPv4 tcp",), (path,), (), ()
    )


def test_host_text_is_printed_as_data() -> None:
    console = Console(record=True, width=200, force_terminal=False)
    _print_answer(console, hostile_answer(), as_json=False)
    text = console.export_text()
    assert "\x1b" not in text and "\u202e" not in text
    assert "\\x1b]0;owned\\x07\\u202egnp.exe" in text


def test_host_text_in_json_is_escaped_and_reads_back_intact() -> None:
    console = Console(record=True, width=80, force_terminal=False)
    _print_answer(console, hostile_answer(), as_json=True)
    text = console.export_text()
    assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text
    assert json.loads(text)["paths"][0][0]["rule"] == HOSTILE_RULE
