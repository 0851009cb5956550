"""no-remote-control-software: the tools data file (strict), the matching rules, and the
verdicts on the packages, processes and sockets recorded from the lab."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.domain.attempts import Attempt
from auditor.domain.facts import HostFacts, Listener, Process
from auditor.domain.findings import Status
from auditor.domain.inventory import load_inventory
from auditor.domain.yamlsource import SourceError
from policies.checks import no_remote_control_software as remote
from policies.context import AuditContext
from policies.model import load_controls

DATA = Path(__file__).parents[2] / "data"
HOSTCONTROLS = DATA / "hostcontrols"
CONTROL = load_controls()["no-remote-control-software"]
TOOLS = remote.shipped_tools()


def lab_facts(scenario: str, host: str) -> HostFacts:
    return HostFacts.model_validate_json((HOSTCONTROLS / scenario / f"{host}.json").read_text())


def lab_findings(scenario: str) -> dict[str, tuple[Status, str]]:
    inventory = load_inventory(HOSTCONTROLS / scenario / "inventory.yaml")
    collection = {
        p.stem: Attempt.ok("ssh-host", p.stem, lab_facts(scenario, p.stem), [])
        for p in (HOSTCONTROLS / scenario).glob("*.json")
    }
    ctx = AuditContext(inventory=inventory, collection=collection)
    return {f.subject: (f.status, f.summary) for f in remote.check(ctx, CONTROL)}


# -- the data file ------------------------------------------------------------------------------


def test_the_shipped_list_covers_the_tools_the_control_names() -> None:
    ids = {t.id for t in TOOLS.tools}
    assert {"tigervnc", "x11vnc", "xrdp", "teamviewer", "anydesk", "rustdesk", "chrome-remote-desktop",
            "nomachine", "ngrok", "cloudflared", "frp", "telnetd"} <= ids  # fmt: skip
    assert CONTROL.parameters["tools_file"] == remote.DEFAULT_TOOLS_FILE


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("  - {id: vnc2, name: x, kind: vnc, packages: [a], colour: red}\n", "colour: unknown key"),
        ("  - {id: tigervnc, name: x, kind: vnc, packages: [a]}\n", "duplicate tool ids: tigervnc"),
        ("  - {id: empty, name: x, kind: vnc}\n", "names no package, process, port or arguments"),
        ("  - {id: badre, name: x, kind: vnc, arguments: '(unclosed'}\n", "arguments"),
        (
            "  - {id: ports, name: x, kind: vnc, ports: [{proto: tcp, from: 10, to: 5}]}\n",
            "reversed",
        ),
        ("  - {id: blank, name: x, kind: vnc, processes: [' x11vnc']}\n", "surrounding spaces"),
    ],
)
def test_the_data_file_is_validated_strictly(tmp_path: Path, extra: str, message: str) -> None:
    bad = tmp_path / "tools.yaml"
    bad.write_text(remote.tools_file().read_text(encoding="utf-8") + extra, encoding="utf-8")
    with pytest.raises(SourceError, match=message):
        remote.load_tools(bad)


# -- matching -----------------------------------------------------------------------------------


def proc(command: str, args: str, pid: int = 100) -> Process:
    return Process(pid=pid, user="root", command=command, args=args)


def test_process_names_truncated_by_the_kernel_still_match() -> None:
    found = remote.running_tools([proc("chrome-remote-d", "/opt/google/chrome-remote-desktop/chrome-remote-desktop-host")], TOOLS)  # fmt: skip
    assert len(found) == 1 and "Chrome Remote Desktop" in found[0]


def test_ssh_reverse_tunnels_are_found_and_ordinary_ssh_is_not() -> None:
    reverse = [proc("ssh", "ssh -fNR 2222:localhost:22 jump@198.51.100.7"),
               proc("ssh", "/usr/bin/ssh -o RemoteForward=9000:localhost:22 x@y"),
               proc("autossh", "autossh -M 0 -N tunnel")]  # fmt: skip
    assert len(remote.running_tools(reverse, TOOLS)) == 3
    ordinary = [proc("ssh", "ssh -oBatchMode=yes -oStrictHostKeyChecking=yes -i /etc/lab/keys/xfer xfer@10.98.21.20 -s sftp"),
                proc("sshd", "sshd: /usr/sbin/sshd [listener] 0 of 10-100 startups"),
                proc("ssh", "ssh -o RemoteCommand=none host")]  # fmt: skip
    assert remote.running_tools(ordinary, TOOLS) == []


def test_sockets_match_by_process_or_by_typical_port() -> None:
    sockets = [Listener(proto="tcp", address="0.0.0.0", port=3389, process="java", pid=9),
               Listener(proto="tcp", address="::", port=5938, process="teamviewerd", pid=10),
               Listener(proto="tcp", address="0.0.0.0", port=22, process="sshd", pid=11)]  # fmt: skip
    found = remote.listening_tools(sockets, TOOLS)
    assert found == [
        "socket tcp 0.0.0.0:3389 (java) (xrdp, by a port typical of it)",
        "socket tcp :::5938 (teamviewerd) (TeamViewer, by its process)",
    ]


def test_package_patterns() -> None:
    found = remote.installed_tools(
        {"rustdesk-server-hbbs": "1.1.8", "openssh-server": "1:9.2"}, TOOLS
    )
    assert found == ["package rustdesk-server-hbbs 1.1.8 (RustDesk (client or self-hosted server))"]


def test_missing_facts_are_inconclusive_unless_something_was_found() -> None:
    nothing = HostFacts(
        host="h", packages={}, processes=[], listeners=None, errors={"listeners": "timeout"}
    )
    outcome = remote.judge_facts("h", nothing, TOOLS)
    assert outcome.status is Status.INCONCLUSIVE and "listeners (timeout)" in outcome.en
    found = nothing.model_copy(update={"packages": {"x11vnc": "0.9.16"}})
    assert remote.judge_facts("h", found, TOOLS).status is Status.FAIL


# -- the lab ------------------------------------------------------------------------------------


def test_lab_baseline_hosts_are_clean() -> None:
    findings = lab_findings("baseline")
    assert {h: st for h, (st, _) in findings.items()} == dict.fromkeys(
        ["recv-srv", "proc-srv", "send-srv", "term-1", "term-2"], Status.PASS
    )
    assert "listening sockets checked" in findings["proc-srv"][1]


def test_remote_control_names_the_package_process_and_socket_on_proc_srv() -> None:
    findings = lab_findings("remote-control")
    status, summary = findings["proc-srv"]
    assert status is Status.FAIL
    assert "package tigervnc-standalone-server" in summary
    assert "process Xtigervnc" in summary and "(TigerVNC server)" in summary
    assert "socket tcp 0.0.0.0:5900 (Xtigervnc)" in summary
    assert all(st is Status.PASS for h, (st, _) in findings.items() if h != "proc-srv")
