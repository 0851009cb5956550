"""The Windows collector ("ssh-windows"): removable-storage policy of a Windows terminal.

Windows terminals are reached over the OpenSSH server that ships with Windows 10 1809+ and
Windows 11 (default shell cmd.exe). Only the exact read-only commands of ``WINDOWS_COMMANDS``
are run; every output goes to the evidence sink before it is parsed; the raw texts are kept in
``HostFacts.commands`` under ``windows:<name>`` so that the check (and a re-judging run) parses
exactly what was collected.

Parsers read the formats reg.exe and Windows PowerShell 5.1 print (Windows 10 22H2 and
Windows 11 23H2 print them identically). They were written against those documented formats
and tested on recorded fixtures (tests/data/windows/); they have not been run against a live
Windows host.

The policies read (machine policy, HKLM):
- Removable Storage Access (Group Policy: Computer Configuration > Administrative Templates >
  System > Removable Storage Access): ``HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows\\
  RemovableStorageDevices``, value ``Deny_All`` (all classes), and per device-class GUID the
  values ``Deny_Write`` / ``Deny_Read`` / ``Deny_Execute``;
- the USB mass-storage driver's start type, ``HKLM\\SYSTEM\\CurrentControlSet\\Services\\
  USBSTOR`` value ``Start`` (4 = disabled, 3 = on demand, the default);
- BitLocker's ``RDVDenyWriteAccess`` (``HKLM\\SOFTWARE\\Policies\\Microsoft\\FVE``): write access
  denied to removable drives *not protected by BitLocker* (encrypted ones stay writable).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from auditor.domain.attempts import Attempt, ErrorReason
from auditor.domain.facts import HostFacts
from auditor.domain.inventory import Inventory, SshAccess
from auditor.domain.protocols import EvidenceSink
from probes.parsers import ParseError
from probes.parsers.errors import load_json

if TYPE_CHECKING:  # paramiko stays out of the import graph of the checks that read the parsers
    from auditor.domain.protocols import ScopeCheck
    from probes.ssh import AuditSession

PROBE = "ssh-windows"

RSD_KEY = r"HKLM\SOFTWARE\Policies\Microsoft\Windows\RemovableStorageDevices"
USBSTOR_KEY = r"HKLM\SYSTEM\CurrentControlSet\Services\USBSTOR"
FVE_KEY = r"HKLM\SOFTWARE\Policies\Microsoft\FVE"


class DeviceClass(StrEnum):
    """Removable Storage Access device classes, by the GUID Group Policy writes."""

    REMOVABLE_DISKS = "{53f5630d-b6bf-11d0-94f2-00a0c91efb8b}"
    CD_DVD = "{53f56308-b6bf-11d0-94f2-00a0c91efb8b}"
    FLOPPY = "{53f56311-b6bf-11d0-94f2-00a0c91efb8b}"
    TAPE = "{53f5630b-b6bf-11d0-94f2-00a0c91efb8b}"
    WPD_1 = "{6ac27878-a6fa-4155-ba85-f98f491d4f33}"
    WPD_2 = "{f33fdc04-d1ac-4e8e-9a30-19bbd4b108ae}"


CLASS_LABELS: dict[DeviceClass, str] = {
    DeviceClass.REMOVABLE_DISKS: "Removable Disks",
    DeviceClass.CD_DVD: "CD and DVD",
    DeviceClass.FLOPPY: "Floppy Drives",
    DeviceClass.TAPE: "Tape Drives",
    DeviceClass.WPD_1: "WPD Devices",
    DeviceClass.WPD_2: "WPD Devices",
}

#: The classes whose writing must be denied for the policy route to count (media a terminal
#: can write data to: USB and card-reader disks, optical writers, phones and players by MTP).
WRITE_CLASSES = (
    DeviceClass.REMOVABLE_DISKS,
    DeviceClass.CD_DVD,
    DeviceClass.WPD_1,
    DeviceClass.WPD_2,
)


@dataclass(frozen=True)
class WindowsCommand:
    name: str  #: the key in HostFacts.commands is "windows:<name>"
    command: str
    #: reg.exe exits 1 with nothing on stdout when the key or value does not exist: an answer
    absent_is_answer: bool = False


WINDOWS_COMMANDS: tuple[WindowsCommand, ...] = (
    WindowsCommand("reg-removable-storage", f'reg query "{RSD_KEY}" /s', absent_is_answer=True),
    WindowsCommand("reg-usbstor-start", f'reg query "{USBSTOR_KEY}" /v Start', True),
    WindowsCommand("reg-fve-rdv-deny-write", f'reg query "{FVE_KEY}" /v RDVDenyWriteAccess', True),
    WindowsCommand(
        "os",
        'powershell.exe -NoProfile -NonInteractive -Command "Get-CimInstance -ClassName '
        'Win32_OperatingSystem | Select-Object Caption, Version, BuildNumber | ConvertTo-Json"',
    ),
    # The account policy (lockout threshold, minimum password length): authentication-hardening.
    WindowsCommand("net-accounts", "net accounts"),
)

#: What the collector keeps for a registry key or value that does not exist (reg.exe's own
#: message is localised, e.g. Japanese in code page 932, so it is not relied on).
ABSENT = "[auditor: registry key or value not found: reg.exe exited 1 with no output]\n"


# -- typed facts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegValue:
    key: str  #: the full key as reg.exe prints it (HKEY_LOCAL_MACHINE\...)
    name: str
    type: str  #: "REG_DWORD", "REG_SZ", ...
    data: str  #: as printed ("0x1")
    line: int  #: 1-based line of the output

    @property
    def dword(self) -> int | None:
        if self.type != "REG_DWORD":
            return None
        try:
            return int(self.data, 16)
        except ValueError:
            return None

    def describe(self) -> str:
        return f"{self.key}\\{self.name} = {self.type} {self.data}"


@dataclass(frozen=True)
class RegQuery:
    """One ``reg query`` answer: the values under each key, or absent."""

    absent: bool
    values: tuple[RegValue, ...] = ()

    def find(self, name: str, key_suffix: str | None = None) -> RegValue | None:
        for value in self.values:
            if value.name.lower() != name.lower():
                continue
            if key_suffix is None or value.key.lower().endswith(key_suffix.lower()):
                return value
        return None


@dataclass(frozen=True)
class RemovableStoragePolicy:
    deny_all: RegValue | None
    #: per device class present in the policy: value name ("Deny_Write") -> value
    classes: dict[DeviceClass, dict[str, RegValue]] = field(default_factory=dict)

    def denies_write(self, device_class: DeviceClass) -> RegValue | None:
        """The value that denies writing to this class, if any (Deny_All covers all)."""
        if self.deny_all is not None and self.deny_all.dword == 1:
            return self.deny_all
        for name in ("Deny_Write", "Deny_All"):
            value = self.classes.get(device_class, {}).get(name.lower())
            if value is not None and value.dword == 1:
                return value
        return None


@dataclass(frozen=True)
class WindowsMediaFacts:
    removable_storage: RemovableStoragePolicy | None
    usbstor_start: RegValue | None  #: None: the value is absent
    rdv_deny_write: RegValue | None
    os_caption: str | None = None
    os_version: str | None = None


# -- parsers ----------------------------------------------------------------------------------

_VALUE_LINE = re.compile(r"^ {4}(?P<name>.+?) {4}(?P<type>REG_[A-Z_]+)(?: {4}(?P<data>.*))?$")
_KEY_LINE = re.compile(r"^HKEY_[A-Z_]+(\\.*)?$")


def parse_reg_query(text: str) -> RegQuery:
    """``reg query KEY [/s | /v NAME]`` output: key lines, then indented ``name type data``.

    reg.exe separates the three columns by four spaces and prints CRLF line endings; a value
    with no name is printed as ``(Default)``.
    """
    if text == ABSENT:
        return RegQuery(absent=True)
    values: list[RegValue] = []
    key: str | None = None
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.rstrip("\r")
        if not line.strip() or line.startswith("End of search"):
            continue
        if _KEY_LINE.match(line):
            key = line
            continue
        match = _VALUE_LINE.match(line)
        if match is None or key is None:
            raise ParseError("reg", number, f"not a key or value line: {line[:80]!r}")
        values.append(
            RegValue(key, match["name"], match["type"], (match["data"] or "").strip(), number)
        )
    if key is None:
        raise ParseError("reg", None, "no registry key in the output")
    return RegQuery(absent=False, values=tuple(values))


def parse_removable_storage(text: str) -> RemovableStoragePolicy:
    query = parse_reg_query(text)
    if query.absent:
        return RemovableStoragePolicy(deny_all=None)
    deny_all: RegValue | None = None
    classes: dict[DeviceClass, dict[str, RegValue]] = {}
    for value in query.values:
        leaf = value.key.rsplit("\\", 1)[-1].lower()
        if leaf == "removablestoragedevices" and value.name.lower() == "deny_all":
            deny_all = value
            continue
        try:
            device_class = DeviceClass(leaf)
        except ValueError:
            continue  # custom classes and other policy values do not decide this control
        classes.setdefault(device_class, {})[value.name.lower()] = value
    return RemovableStoragePolicy(deny_all=deny_all, classes=classes)


def parse_single_value(text: str, name: str) -> RegValue | None:
    query = parse_reg_query(text)
    return None if query.absent else query.find(name)


def parse_os(text: str) -> tuple[str | None, str | None]:
    """``Get-CimInstance Win32_OperatingSystem | Select-Object ... | ConvertTo-Json``."""
    doc = load_json("powershell", text.lstrip("\ufeff"))  # bounded in depth, ParseError only
    if not isinstance(doc, dict):
        raise ParseError("powershell", None, "expected one object")
    caption, version = doc.get("Caption"), doc.get("Version")
    return (
        caption if isinstance(caption, str) else None,
        version if isinstance(version, str) else None,
    )


def command_key(name: str) -> str:
    return f"windows:{name}"


def media_facts(facts: HostFacts) -> WindowsMediaFacts:
    """Parse what the Windows collector kept. Raises ParseError (or KeyError naming the
    missing output) when something needed was not collected or does not parse."""

    def text(name: str) -> str:
        key = command_key(name)
        if key not in facts.commands:
            why = facts.errors.get(f"commands:{key}", "not collected")
            raise KeyError(f"{key}: {why}")
        return facts.commands[key]

    caption, version = (None, None)
    if command_key("os") in facts.commands:
        caption, version = parse_os(facts.commands[command_key("os")])
    return WindowsMediaFacts(
        removable_storage=parse_removable_storage(text("reg-removable-storage")),
        usbstor_start=parse_single_value(text("reg-usbstor-start"), "Start"),
        rdv_deny_write=parse_single_value(text("reg-fve-rdv-deny-write"), "RDVDenyWriteAccess"),
        os_caption=caption,
        os_version=version,
    )


# -- collection -------------------------------------------------------------------------------


def allowed_commands() -> list[str]:
    return [c.command for c in WINDOWS_COMMANDS]


def collect_windows_host(
    host: str,
    address: str,
    access: SshAccess,
    sink: EvidenceSink,
    check_target: ScopeCheck,
) -> Attempt[HostFacts]:
    """Run the Windows commands on one host. Never raises: failures are in the Attempt."""
    from probes.ssh import AllowList, AuditSession, SshError

    session = AuditSession(host, address, access, AllowList(allowed_commands()), check_target)
    kept = _Kept(host)
    try:
        session.connect()
    except SshError as exc:
        for command in WINDOWS_COMMANDS:
            kept.errors[f"commands:{command_key(command.name)}"] = (
                f"{exc.reason.value}: {exc.message}"
            )
        facts = HostFacts(host=host, errors=kept.errors)
        return Attempt.partial(PROBE, host, facts, exc.reason, exc.message)
    try:
        for command in WINDOWS_COMMANDS:
            _run_one(session, sink, command, kept)
    except Exception as exc:  # a bug must cost this host only
        message = f"{host} ({address}): collector failed: {type(exc).__name__}: {exc}"
        refs = list(kept.evidence.values())
        return Attempt.failed(PROBE, host, ErrorReason.INTERNAL, message, refs)
    finally:
        session.close()
    facts = HostFacts(host=host, commands=kept.commands, errors=kept.errors, evidence=kept.evidence)
    return Attempt.ok(PROBE, host, facts, list(kept.evidence.values()))


@dataclass
class _Kept:
    """What one Windows host's collection has gathered so far."""

    host: str
    commands: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    evidence: dict[str, str] = field(default_factory=dict)


def _run_one(
    session: AuditSession, sink: EvidenceSink, command: WindowsCommand, kept: _Kept
) -> None:
    from probes.ssh import SshError

    key = command_key(command.name)
    try:
        result = session.run(command.command)
    except SshError as exc:
        kept.errors[f"commands:{key}"] = f"{exc.reason.value}: {exc.message}"
        return
    host = kept.host
    kept.evidence[key] = sink.add(
        result.stdout,
        probe=PROBE,
        command=command.command,
        host=host,
        started=result.started,
        finished=result.finished,
        exit_status=result.exit_status,
    )
    if result.stderr:
        kept.evidence[f"{key}:stderr"] = sink.add(
            result.stderr,
            probe=PROBE,
            command=f"{command.command} (stderr)",
            host=host,
            started=result.started,
            finished=result.finished,
            exit_status=result.exit_status,
        )
    text, error = interpret_output(command, result.exit_status, result.text(), result.stderr_text())
    if text is not None:
        kept.commands[key] = text
    else:
        kept.errors[f"commands:{key}"] = f"{ErrorReason.COMMAND_FAILED.value}: {error}"


def interpret_output(
    command: WindowsCommand, exit_status: int | None, stdout: str, stderr: str
) -> tuple[str | None, str | None]:
    """The text to keep for a command's result, or None and why it failed.

    reg.exe exits 1 with an empty stdout when the key or value does not exist; its message is
    localised, so the exit status and the empty stdout decide, not the text.
    """
    if exit_status == 0:
        return stdout, None
    if command.absent_is_answer and exit_status == 1 and not stdout.strip():
        return ABSENT, None
    return None, f"{command.command!r} exited {exit_status}: {stderr.strip()[:300]}"


def windows_targets(inventory: Inventory) -> list[tuple[str, str]]:
    """Organisation hosts declared ``os: windows`` with an SSH address: (host, address)."""
    return [
        (name, str(definition.ssh))
        for name in inventory.organisation_hosts()
        if (definition := inventory.hosts[name]).os == "windows" and definition.ssh is not None
    ]


def collect_windows_inventory(
    inventory: Inventory,
    sink: EvidenceSink,
    check_target: ScopeCheck,
) -> dict[str, Attempt[HostFacts]]:
    """Every Windows organisation host, one after the other (few terminals, short commands)."""
    return {
        host: collect_windows_host(host, address, inventory.ssh, sink, check_target)
        for host, address in windows_targets(inventory)
    }
