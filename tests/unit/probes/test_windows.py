"""The Windows collector's commands and parsers, on the fixtures of tests/data/windows/.

The fixtures follow reg.exe's and PowerShell 5.1's output formats byte for byte but were not
captured from a live host (see tests/data/windows/README.md).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditor.domain.facts import HostFacts
from auditor.domain.inventory import load_inventory
from probes.parsers import ParseError
from probes.windows import (
    ABSENT,
    WINDOWS_COMMANDS,
    DeviceClass,
    allowed_commands,
    command_key,
    interpret_output,
    media_facts,
    parse_reg_query,
    parse_removable_storage,
    windows_targets,
)

FIXTURES = Path(__file__).parents[2] / "data" / "windows"
CASES = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())


def recorded_facts(case: str, host: str = "win-term") -> HostFacts:
    """HostFacts as the collector would build them from the recorded outputs."""
    commands: dict[str, str] = {}
    errors: dict[str, str] = {}
    for command in WINDOWS_COMMANDS:
        folder = FIXTURES / case
        stdout = (folder / f"{command.name}.stdout.txt").read_bytes().decode()
        stderr_file = folder / f"{command.name}.stderr.txt"
        stderr = stderr_file.read_bytes().decode() if stderr_file.exists() else ""
        status = int((folder / f"{command.name}.exit").read_text())
        text, error = interpret_output(command, status, stdout, stderr)
        if text is not None:
            commands[command_key(command.name)] = text
        else:
            errors[f"commands:{command_key(command.name)}"] = f"command-failed: {error}"
    return HostFacts(host=host, commands=commands, errors=errors)


def test_every_case_has_every_command() -> None:
    assert set(CASES) == {"compliant", "no-policy", "disks-not-wpd", "usbstor-disabled", "deny-all"}
    for case in CASES:
        facts = recorded_facts(case)
        assert not facts.errors
        assert set(facts.commands) == {command_key(c.name) for c in WINDOWS_COMMANDS}


def test_commands_are_read_only_queries() -> None:
    for command in allowed_commands():
        # net accounts without an option only prints the policy (options like /minpwlen set it).
        if command == "net accounts":
            continue
        assert command.startswith(("reg query ", "powershell.exe -NoProfile -NonInteractive"))
        assert not any(word in command.lower() for word in (" add ", " delete", "set-", "remove-"))


def test_compliant_terminal_denies_writing_to_every_class() -> None:
    media = media_facts(recorded_facts("compliant"))
    policy = media.removable_storage
    assert policy is not None and policy.deny_all is None
    for device_class in (DeviceClass.REMOVABLE_DISKS, DeviceClass.CD_DVD,
                         DeviceClass.WPD_1, DeviceClass.WPD_2):  # fmt: skip
        value = policy.denies_write(device_class)
        assert value is not None and value.name == "Deny_Write" and value.dword == 1
    assert policy.classes[DeviceClass.REMOVABLE_DISKS]["deny_read"].dword == 0
    assert media.usbstor_start is not None and media.usbstor_start.dword == 3
    assert media.rdv_deny_write is not None and media.rdv_deny_write.dword == 1
    assert (media.os_caption, media.os_version) == ("Microsoft Windows 11 Enterprise", "10.0.22631")


def test_no_policy_reads_as_absent_keys_not_as_errors() -> None:
    facts = recorded_facts("no-policy")
    assert facts.commands[command_key("reg-removable-storage")] == ABSENT
    media = media_facts(facts)
    assert media.removable_storage is not None
    assert media.removable_storage.classes == {} and media.removable_storage.deny_all is None
    assert media.rdv_deny_write is None
    assert media.usbstor_start is not None and media.usbstor_start.data == "0x3"


def test_disks_only_policy_leaves_wpd_writable() -> None:
    policy = media_facts(recorded_facts("disks-not-wpd")).removable_storage
    assert policy is not None
    assert policy.denies_write(DeviceClass.REMOVABLE_DISKS) is not None
    assert policy.denies_write(DeviceClass.CD_DVD) is not None
    assert policy.denies_write(DeviceClass.WPD_1) is None
    assert policy.denies_write(DeviceClass.WPD_2) is None


def test_usbstor_disabled_and_deny_all() -> None:
    usbstor = media_facts(recorded_facts("usbstor-disabled")).usbstor_start
    assert usbstor is not None and usbstor.dword == 4 and usbstor.line == 3
    policy = media_facts(recorded_facts("deny-all")).removable_storage
    assert policy is not None and policy.deny_all is not None
    assert all(policy.denies_write(c) is policy.deny_all for c in DeviceClass)


def test_reg_values_keep_their_key_and_output_line() -> None:
    text = (FIXTURES / "compliant" / "reg-removable-storage.stdout.txt").read_text()
    query = parse_reg_query(text)
    first = query.values[0]
    assert first.key.endswith("{53f56308-b6bf-11d0-94f2-00a0c91efb8b}")
    assert (first.name, first.type, first.data, first.line) == ("Deny_Read", "REG_DWORD", "0x0", 3)
    assert "RemovableStorageDevices" in first.describe()


def test_a_failed_command_is_an_error_not_an_absent_key() -> None:
    reg = WINDOWS_COMMANDS[0]
    text, error = interpret_output(reg, 1, "", "ERROR: Access is denied.\r\n")
    assert text == ABSENT and error is None  # exit 1 and nothing printed: the key is absent
    text, error = interpret_output(reg, 5, "", "ERROR: Access is denied.\r\n")
    assert text is None and error is not None and "Access is denied" in error
    os_query = WINDOWS_COMMANDS[-1]
    assert interpret_output(os_query, 1, "", "boom")[0] is None


def test_unexpected_reg_output_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        parse_reg_query("\r\n    Deny_Write    REG_DWORD    0x1\r\n")
    with pytest.raises(ParseError):
        parse_reg_query("HKEY_LOCAL_MACHINE\\X\r\nnot a value line\r\n")


def test_missing_output_is_a_key_error_naming_it() -> None:
    facts = recorded_facts("compliant")
    commands = dict(facts.commands)
    del commands[command_key("reg-usbstor-start")]
    with pytest.raises(KeyError, match="reg-usbstor-start"):
        media_facts(facts.model_copy(update={"commands": commands}))


@given(st.text(max_size=300))
def test_any_text_parses_or_raises_parse_error(text: str) -> None:
    with contextlib.suppress(ParseError):
        parse_removable_storage(text)


def test_windows_targets_are_windows_organisation_hosts_with_ssh(tmp_path: Path) -> None:
    source = Path(__file__).parents[2] / "data" / "inventory" / "lab.yaml"
    text = source.read_text(encoding="utf-8").replace(
        "  term-2:\n    roles: [terminal]\n", "  term-2:\n    roles: [terminal]\n    os: windows\n"
    )
    (tmp_path / "inv.yaml").write_text(text, encoding="utf-8")
    inventory = load_inventory(tmp_path / "inv.yaml")
    assert windows_targets(inventory) == [("term-2", "10.98.30.42")]
