"""Scenarios are rejected before anything starts, with messages naming file, line and key.
Offline: no lab, no podman needed (except the CLI test, which only needs root)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditor.cli.main import app
from auditor.domain.inventory import Inventory
from auditor.domain.yamlsource import SourceError
from lab.baseline import merge_patch
from lab.labinventory import inventory_document
from lab.paths import SCENARIOS_DIR
from lab.plan import make_plan
from lab.scenario import load_scenario


def _scenario(tmp_path: Path, text: str, files: dict[str, str] | None = None) -> Path:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "scenario.yaml").write_text(text, encoding="utf-8")
    for name, content in (files or {}).items():
        (folder / name).write_text(content, encoding="utf-8")
    return folder


def _rejection(folder: Path) -> str:
    with pytest.raises(SourceError) as caught:
        load_scenario(folder)
    return str(caught.value)


def test_every_shipped_scenario_loads() -> None:
    names = sorted(p.name for p in SCENARIOS_DIR.iterdir() if (p / "scenario.yaml").is_file())
    assert len(names) == 19 and "baseline" in names and "hostile-host" in names
    assert load_scenario("baseline").expect_fail == []
    for name in names:
        assert load_scenario(name).name == name


def test_unknown_key_is_rejected_with_its_line(tmp_path: Path) -> None:
    folder = _scenario(tmp_path, "description: x\nhosts:\n  recv-srv:\n    filez: {}\n")
    message = _rejection(folder)
    assert "scenario.yaml:4:5: hosts.recv-srv.filez: unknown key" in message


def test_unknown_network_of_a_host_is_rejected(tmp_path: Path) -> None:
    folder = _scenario(
        tmp_path, "description: x\nhosts:\n  proc-srv:\n    networks: {dmz: 10.98.77.5}\n"
    )
    assert "hosts.proc-srv.networks.dmz: no network named 'dmz'" in _rejection(folder)


def test_unknown_host_without_networks_is_rejected(tmp_path: Path) -> None:
    folder = _scenario(tmp_path, "description: x\nhosts:\n  recv-svr:\n    exec: ['true']\n")
    assert "no baseline host named 'recv-svr'" in _rejection(folder)


def test_missing_file_is_rejected(tmp_path: Path) -> None:
    folder = _scenario(
        tmp_path,
        "description: x\nhosts:\n  recv-srv:\n    files:\n      /etc/nftables.conf: missing.conf\n",
    )
    message = _rejection(folder)
    assert "scenario.yaml:5:7: hosts.recv-srv.files./etc/nftables.conf: no such file" in message
    assert "missing.conf" in message


def test_address_outside_its_network_and_unknown_control_are_rejected(tmp_path: Path) -> None:
    folder = _scenario(
        tmp_path,
        "description: x\nhosts:\n  rogue-1:\n    networks: {line-recv: 10.98.22.9}\n"
        "expect:\n  fail:\n    - {control: recv-no-outbund, subject: recv-srv}\n",
    )
    message = _rejection(folder)
    assert "10.98.22.9 is not inside line-recv" in message
    assert "unknown control 'recv-no-outbund'" in message


def test_inventory_patch_must_keep_the_inventory_valid(tmp_path: Path) -> None:
    folder = _scenario(
        tmp_path, "description: x\ninventory:\n  hosts:\n    recv-srv:\n      roles: [receiver]\n"
    )
    assert "inventory.hosts.recv-srv.roles" in _rejection(folder)


def test_merge_patch_merges_deletes_and_replaces() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 4}
    assert merge_patch(base, {"a": {"b": None, "c": [3]}, "e": 5}) == {
        "a": {"c": [3]},
        "d": 4,
        "e": 5,
    }
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 4}


def test_plaintext_link_inventory_and_plan_drop_wg_in() -> None:
    scenario = load_scenario("plaintext-link")
    inventory = Inventory.model_validate(inventory_document(scenario))
    assert list(inventory.tunnels) == ["wg-out"]
    plan = make_plan(scenario)
    assert plan.containers["recv-srv"].tunnels == []
    assert plan.containers["send-srv"].tunnels == ["wg-out"]


def test_shared_host_plan_puts_send_srv_on_recv_srv_machine() -> None:
    plan = make_plan(load_scenario("shared-host"))
    assert "send-srv" not in plan.containers
    recv = plan.containers["recv-srv"]
    assert {"line-send": 20, "carrier-out": 20}.items() <= recv.networks.items()
    assert sorted(recv.tunnels) == ["wg-in", "wg-out"]
    known = "\n".join(plan.known_hosts_lines())
    assert any("10.98.22.20" in line and "10.98.21.20" in line for line in known.splitlines())


def test_cli_rejects_an_invalid_scenario_with_exit_code_3(tmp_path: Path) -> None:
    folder = _scenario(tmp_path, "description: x\nhostz: {}\n")
    result = CliRunner().invoke(app, ["lab", "up", "--scenario", str(folder)])
    assert result.exit_code == 3
    assert "hostz: unknown key" in result.output
    assert "Traceback" not in result.output


def test_expected_inconclusive_pairs_and_planted_secrets_are_checked(tmp_path: Path) -> None:
    folder = _scenario(
        tmp_path,
        "description: x\nexpect:\n  inconclusive:\n"
        "    - {control: recv-no-outbond, subject: recv-srv, reason: x}\n"
        "  secrets: [short]\n",
    )
    message = _rejection(folder)
    assert "expect.inconclusive.0.control: unknown control 'recv-no-outbond'" in message
    assert "expect.secrets.0: a planted secret needs at least 8 characters" in message
    hostile = load_scenario("hostile-host")
    assert hostile.expect_inconclusive == {
        ("unauthorized-access-prevention", "term-2"): "nested deeper than"
    }
    assert "Pl4nted-MySQL-9f3e" in hostile.planted_secrets
