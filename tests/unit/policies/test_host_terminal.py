"""terminal-removable-media-blocked: parsers on outputs recorded from the lab's terminals, and
the verdicts on the lab's facts (baseline and terminal-usb) and on the Windows fixtures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from auditor.domain.attempts import Attempt, ErrorReason
from auditor.domain.facts import HostFacts, Process
from auditor.domain.findings import Status
from auditor.domain.inventory import Inventory, load_inventory
from policies.checks import terminal_removable_media_blocked as terminal
from policies.context import AuditContext
from policies.model import load_controls
from probes.windows import WINDOWS_COMMANDS, command_key, interpret_output

DATA = Path(__file__).parents[2] / "data"
RECORDED = DATA / "recorded"
HOSTCONTROLS = DATA / "hostcontrols"
CONTROL = load_controls()["terminal-removable-media-blocked"]
NOOP = {"/bin/false", "/bin/true"}


def lab_facts(scenario: str, host: str) -> HostFacts:
    return HostFacts.model_validate_json((HOSTCONTROLS / scenario / f"{host}.json").read_text())


def lab_context(scenario: str) -> AuditContext:
    inventory = load_inventory(HOSTCONTROLS / scenario / "inventory.yaml")
    collection = {
        p.stem: Attempt.ok("ssh-host", p.stem, lab_facts(scenario, p.stem), [])
        for p in (HOSTCONTROLS / scenario).glob("*.json")
    }
    return AuditContext(inventory=inventory, collection=collection)


def verdicts(ctx: AuditContext) -> dict[str, Status]:
    return {f.subject: f.status for f in terminal.check(ctx, CONTROL)}


def recorded_term_1() -> HostFacts:
    """term-1 of the baseline as recorded by the collector (tests/data/recorded)."""

    def read(name: str) -> str:
        return (RECORDED / f"lab-term-1.{name}").read_text()

    return HostFacts(
        host="term-1",
        processes=[],
        files={
            "/etc/modprobe.d/usb-storage.conf": read("etc-modprobe.d-usb-storage.conf.txt"),
            "/etc/usbguard/usbguard-daemon.conf": read("etc-usbguard-usbguard-daemon.conf.txt"),
            "/etc/usbguard/rules.conf": read("etc-usbguard-rules.conf.txt"),
        },
        commands={
            "modprobe-usb-storage": read("modprobe-usb-storage.txt"),
            "modprobe-uas": read("modprobe-uas.txt"),
            "modprobe-showconfig": read("modprobe-showconfig.txt"),
            "lsblk": read("lsblk.json"),
            "findmnt": read("findmnt.json"),
            "sys-module-listing": "8250\nblock\nkernel\n",
            "sys-bus-listing": "pci\nplatform\nvirtio\n",
        },
        errors={"commands:proc-modules": "command-failed: 'cat /proc/modules' exited 1: "
                "cat: /proc/modules: No such file or directory"},
    )  # fmt: skip


# -- modprobe -----------------------------------------------------------------------------------


def test_recorded_install_line_blocks_and_names_file_and_line() -> None:
    route = terminal.module_blocked(recorded_term_1(), "usb-storage", NOOP)
    assert route.holds is True
    assert [str(x) for x in route.lines] == [
        "`modprobe -n -v usb-storage` line 1: install /bin/false",
        "/etc/modprobe.d/usb-storage.conf:3: install usb-storage /bin/false",
    ]


def test_insmod_means_loadable_and_blacklist_is_called_out() -> None:
    facts = recorded_term_1().model_copy(
        update={"commands": {**recorded_term_1().commands, "modprobe-uas": (
            "insmod /lib/modules/6.1.0-26-amd64/kernel/drivers/usb/storage/usb-storage.ko \n"
            "insmod /lib/modules/6.1.0-26-amd64/kernel/drivers/usb/storage/uas.ko \n")}}
    )  # fmt: skip
    route = terminal.module_blocked(facts, "uas", NOOP)
    assert route.holds is False
    assert "blacklist uas" in route.detail and "explicit load" in route.detail
    assert route.lines[0].where == "`modprobe -n -v uas` line 2"


def test_install_of_something_else_is_not_a_block() -> None:
    facts = recorded_term_1()
    commands = {
        **facts.commands,
        "modprobe-usb-storage": "install /sbin/modprobe --ignore-install usb-storage \n",
    }
    route = terminal.module_blocked(
        facts.model_copy(update={"commands": commands}), "usb-storage", NOOP
    )
    assert route.holds is False and "not a no-op" in route.detail


def test_module_not_found_is_unknown_when_configured_and_a_fail_when_not() -> None:
    facts = recorded_term_1()
    commands = dict(facts.commands)
    del commands["modprobe-usb-storage"]
    not_found = {"commands:modprobe-usb-storage": "command-failed: '/sbin/modprobe -n -v "
                 "usb-storage' exited 1: modprobe: FATAL: Module usb-storage not found"}  # fmt: skip
    configured = facts.model_copy(update={"commands": commands, "errors": not_found})
    route = terminal.module_blocked(configured, "usb-storage", NOOP)
    assert route.holds is None and "not found" in route.detail
    assert (
        str(route.lines[0]) == "/etc/modprobe.d/usb-storage.conf:3: install usb-storage /bin/false"
    )
    bare = configured.model_copy(update={
        "files": {"/etc/modprobe.d/usb-storage.conf": "blacklist usb-storage\n"},
        "commands": {**commands, "modprobe-showconfig": "blacklist usb_storage\n"},
    })  # fmt: skip
    route = terminal.module_blocked(bare, "usb-storage", NOOP)
    assert route.holds is False
    assert "only stops automatic loading" in route.detail
    assert [str(x) for x in route.lines] == [
        "/etc/modprobe.d/usb-storage.conf:1: blacklist usb-storage"
    ]


def test_first_install_line_in_modprobe_order_decides() -> None:
    facts = HostFacts(host="t", files={
        "/lib/modprobe.d/zz.conf": "install usb_storage /bin/true\n",
        "/etc/modprobe.d/local.conf": "# mine\ninstall usb-storage /bin/false\n",
        "/lib/modprobe.d/local.conf": "install usb-storage /bin/sh -c true\n",  # hidden by /etc
        "/etc/modprobe.d/notes.txt": "install usb-storage /usr/bin/logger\n",  # not *.conf
    })  # fmt: skip
    line = terminal.configured_install(facts, "usb-storage")
    assert (
        line is not None
        and str(line) == "/etc/modprobe.d/local.conf:2: install usb-storage /bin/false"
    )


def test_loaded_and_builtin_modules() -> None:
    base = HostFacts(host="t", commands={"sys-module-listing": "usbcore\n", "sys-bus-listing": "usb\npci\n",
                     "proc-modules": "usb_storage 81920 0 - Live 0x0000000000000000\nuas 32768 0 - Live 0\n"})  # fmt: skip
    loaded = terminal.module_loaded(base, "usb-storage")
    assert loaded.holds is True and str(loaded.lines[0]).startswith(
        "/proc/modules: usb_storage 81920"
    )
    builtin = base.model_copy(update={"commands": {**base.commands, "proc-modules": "",
                                                    "sys-module-listing": "usb_storage\n"}})  # fmt: skip
    assert terminal.module_loaded(builtin, "usb-storage").holds is True
    absent = base.model_copy(update={"commands": {**base.commands, "proc-modules": ""}})
    assert terminal.module_loaded(absent, "usb-storage").holds is False
    recorded = terminal.module_loaded(recorded_term_1(), "usb-storage")
    assert recorded.holds is False and "no USB subsystem" in recorded.detail


# -- USBGuard, udev, mounts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "admits"),
    [
        ("allow with-interface equals { 03:*:* }", False),
        ("allow with-interface 09:00:*", False),
        ("allow with-interface equals { 08:*:* }", True),
        ("allow with-interface one-of { 03:*:* 09:00:* }", True),
        ('allow id 0781:5581 serial "4C530001"', True),
        ("allow", True),
        ("allow with-interface equals { *:*:* }", True),
        ("block with-interface equals { 08:*:* }", False),
        ("reject", False),
        ("5: allow with-interface equals { 08:06:50 }", True),
    ],
)
def test_usbguard_rules_admitting_mass_storage(rule: str, admits: bool) -> None:
    assert terminal.admits_mass_storage(rule) is admits


def test_recorded_usbguard_config_blocks_but_the_daemon_does_not_run() -> None:
    route = terminal.usbguard_route(recorded_term_1())
    assert route.holds is False and "not running" in route.detail
    running = recorded_term_1().model_copy(update={"processes": [
        Process(pid=7, user="root", command="usbguard-daemon", args="usbguard-daemon -k")]})  # fmt: skip
    route = terminal.usbguard_route(running)
    assert route.holds is True
    assert str(route.lines[0]) == "/etc/usbguard/usbguard-daemon.conf:4: ImplicitPolicyTarget=block"


def test_udev_rule_authorising_devices_defeats_usbguard() -> None:
    facts = recorded_term_1().model_copy(update={
        "processes": [Process(pid=7, user="root", command="usbguard-daemon", args="usbguard-daemon")],
        "files": {**recorded_term_1().files,
                  "/etc/udev/rules.d/99-usb.rules": 'ACTION=="add", SUBSYSTEM=="usb", ATTR{authorized}="1"\n'},
    })  # fmt: skip
    route = terminal.usbguard_route(facts)
    assert route.holds is False
    assert route.lines[0].where == "/etc/udev/rules.d/99-usb.rules:1"


def test_writable_removable_mount_is_found_and_read_only_is_not() -> None:
    lsblk = {"blockdevices": [{"name": "sda", "rm": False, "ro": False, "type": "disk", "mountpoint": None, "tran": "sata",
             "children": [{"name": "sda1", "rm": False, "ro": False, "type": "part", "mountpoint": "/", "tran": None}]},
             {"name": "sdb", "rm": True, "ro": False, "type": "disk", "mountpoint": None, "tran": "usb",
              "children": [{"name": "sdb1", "rm": True, "ro": False, "type": "part", "mountpoint": "/media/stick", "tran": None}]}]}  # fmt: skip
    findmnt: dict[str, Any] = {"filesystems": [{"target": "/", "source": "/dev/sda1", "fstype": "ext4", "options": "rw,relatime",
               "children": [{"target": "/media/stick", "source": "/dev/sdb1", "fstype": "vfat", "options": "rw,nosuid"}]}]}  # fmt: skip
    facts = HostFacts(
        host="t", commands={"lsblk": json.dumps(lsblk), "findmnt": json.dumps(findmnt)}
    )
    route = terminal.writable_removable_mounts(facts, {"usb", "mmc"})
    assert route.holds is False and "sdb1 mounted at /media/stick" in str(route.lines[0])
    findmnt["filesystems"][0]["children"][0]["options"] = "ro,nosuid"
    facts = HostFacts(
        host="t", commands={"lsblk": json.dumps(lsblk), "findmnt": json.dumps(findmnt)}
    )
    assert terminal.writable_removable_mounts(facts, {"usb"}).holds is True
    recorded = terminal.writable_removable_mounts(recorded_term_1(), {"usb"})
    assert recorded.holds is True and "removable: none" in recorded.detail


def test_lsblk_nested_past_the_limit_is_undecided_with_the_reason_not_an_internal_error() -> None:
    """A host's lsblk nesting children hundreds deep made the device walk recurse toward the
    stack's limit; the JSON's depth is now bounded as it is read."""
    device: dict[str, Any] = {"name": "sdz", "rm": True, "ro": False, "type": "disk"}
    for level in range(200):
        device = {
            "name": f"d{level}",
            "rm": False,
            "ro": False,
            "type": "part",
            "children": [device],
        }
    findmnt: dict[str, Any] = {"filesystems": []}
    facts = HostFacts(
        host="t", commands={"lsblk": json.dumps({"blockdevices": [device]}), "findmnt": json.dumps(findmnt)}
    )  # fmt: skip
    route = terminal.writable_removable_mounts(facts, {"usb"})
    assert route.holds is None
    assert "nested deeper than" in route.detail


# -- verdicts on the lab's recorded facts -------------------------------------------------------


def test_baseline_terminals_pass_naming_the_deciding_lines() -> None:
    findings = {f.subject: f for f in terminal.check(lab_context("baseline"), CONTROL)}
    assert {h: f.status for h, f in findings.items()} == {
        "term-1": Status.PASS,
        "term-2": Status.PASS,
    }
    summary = findings["term-1"].summary
    assert "/etc/modprobe.d/usb-storage.conf:3: install usb-storage /bin/false" in summary
    assert "/etc/modprobe.d/usb-storage.conf:4: install uas /bin/false" in summary
    assert findings["term-1"].evidence


def test_terminal_usb_fails_term_2_only_naming_what_admits_storage() -> None:
    findings = {f.subject: f for f in terminal.check(lab_context("terminal-usb"), CONTROL)}
    assert {h: f.status for h, f in findings.items()} == {
        "term-1": Status.PASS,
        "term-2": Status.FAIL,
    }
    actual = findings["term-2"].actual
    assert "no install line for usb-storage" in findings["term-2"].summary
    assert "/etc/usbguard/usbguard-daemon.conf:3: ImplicitPolicyTarget=allow" in actual
    assert "/etc/usbguard/rules.conf:1: allow with-interface equals { 08:*:* }" in actual


def test_missing_facts_are_inconclusive() -> None:
    ctx = lab_context("baseline")
    ctx.collection["term-1"] = Attempt.failed(
        "ssh-host", "term-1", ErrorReason.UNREACHABLE, "no route"
    )
    assert verdicts(ctx)["term-1"] is Status.INCONCLUSIVE


# -- Windows ------------------------------------------------------------------------------------


def windows_context(case: str) -> AuditContext:
    inventory = load_inventory(DATA / "inventory" / "lab.yaml")
    windows = _as_windows(inventory, "term-2")
    facts = windows_facts(case, "term-2")
    return AuditContext(
        inventory=windows, collection={"term-2": Attempt.ok("ssh-windows", "term-2", facts, [])}
    )


def windows_facts(case: str, host: str) -> HostFacts:
    """The Windows fixtures as the collector keeps them (see tests/unit/probes/test_windows.py)."""
    commands = {}
    for command in WINDOWS_COMMANDS:
        folder = DATA / "windows" / case
        stderr = folder / f"{command.name}.stderr.txt"
        text, _ = interpret_output(
            command,
            int((folder / f"{command.name}.exit").read_text()),
            (folder / f"{command.name}.stdout.txt").read_bytes().decode(),
            stderr.read_bytes().decode() if stderr.exists() else "",
        )
        assert text is not None
        commands[command_key(command.name)] = text
    return HostFacts(host=host, commands=commands)


def _as_windows(inventory: Inventory, host: str) -> Inventory:
    hosts = dict(inventory.hosts)
    hosts[host] = hosts[host].model_copy(update={"os": "windows"})
    return inventory.model_copy(update={"hosts": hosts})


@pytest.mark.parametrize(
    ("case", "status", "decisive"),
    [
        ("compliant", Status.PASS, "writing denied to every class"),
        ("no-policy", Status.FAIL, "writing not denied to: Removable Disks"),
        ("disks-not-wpd", Status.FAIL, "writing not denied to: WPD Devices {6ac27878"),
        ("usbstor-disabled", Status.PASS, r"Services\USBSTOR\Start = REG_DWORD 0x4"),
        ("deny-all", Status.PASS, r"RemovableStorageDevices\Deny_All = REG_DWORD 0x1"),
    ],
)
def test_windows_verdicts_name_the_registry_value(case: str, status: Status, decisive: str) -> None:
    finding = {f.subject: f for f in terminal.check(windows_context(case), CONTROL)}["term-2"]
    assert finding.status is status
    assert decisive in finding.summary
