"""terminal-removable-media-blocked (第3号ハ): terminals cannot write to removable media.

Linux: the USB mass-storage drivers (``usb-storage``, ``uas``; the control's ``modules``
parameter) cannot be loaded — the effective modprobe configuration runs a no-op instead, as
``modprobe -n -v`` shows — and are not loaded or built in; or USBGuard runs and enforces an
implicit block with no rule (and no udev rule) admitting mass storage (interface class 08).
In both cases no removable device may be mounted writable. A ``blacklist`` line alone stops
automatic loading only, never an explicit ``modprobe``: it does not count. "Module not found"
(no module tree) is unknown, never blocked.

Windows: Removable Storage Access denies writing to removable disks, CD/DVD and WPD devices
(or denies all classes), or the USBSTOR driver is disabled (Start = 4).

Every finding names the line (file and line number, or command and output line, or registry
value) that decided it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from auditor.domain.facts import HostFacts
from auditor.domain.findings import Finding, Status
from policies.context import AuditContext
from policies.model import Control
from policies.support.common import Outcome, facts_or_inconclusive, inconclusive, judge_each
from probes.parsers import ParseError
from probes.parsers.errors import load_json
from probes.windows import (
    CLASS_LABELS,
    WRITE_CLASSES,
    WindowsMediaFacts,
    media_facts,
)

#: Folders modprobe reads, in the order that decides between files of the same name.
MODPROBE_DIRS = (
    "/etc/modprobe.d",
    "/run/modprobe.d",
    "/usr/local/lib/modprobe.d",
    "/lib/modprobe.d",
)
USBGUARD_DAEMON_CONF = "/etc/usbguard/usbguard-daemon.conf"
USBGUARD_RULES = "/etc/usbguard/rules.conf"
UDEV_RULES_DIR = "/etc/udev/rules.d"
MASS_STORAGE_CLASS = "08"
#: The artifacts this control rests on (keys of HostFacts.evidence, by prefix).
EVIDENCE_PREFIXES = (
    "commands:modprobe", "commands:proc-modules", "commands:sys-", "commands:usbguard",
    "commands:lsblk", "commands:findmnt", "commands:lib-modprobe.d", "commands:udev-rules.d",
    "files:/etc/modprobe.d/", "files:/lib/modprobe.d/", "files:/etc/usbguard/",
    "files:/etc/udev/rules.d/", "processes", "windows:",
)  # fmt: skip


def relevant_evidence(facts: HostFacts) -> list[str]:
    return [ref for key, ref in facts.evidence.items() if key.startswith(EVIDENCE_PREFIXES)]


@dataclass(frozen=True)
class Line:
    """A line of a file or of a command's output that decided something."""

    where: str  #: "/etc/modprobe.d/usb-storage.conf:3" or "`modprobe -n -v uas` line 1"
    text: str

    def __str__(self) -> str:
        return f"{self.where}: {self.text.strip()}"


@dataclass
class Route:
    """One way the control can be met (modprobe, USBGuard, a Windows policy), and its state."""

    name: str
    holds: bool | None  #: True met, False not met, None cannot tell
    detail: str
    lines: list[Line] = field(default_factory=list)

    def describe(self) -> str:
        decided = "; ".join(str(x) for x in self.lines)
        return f"{self.name}: {self.detail}" + (f" [{decided}]" if decided else "")


def check(ctx: AuditContext, control: Control) -> list[Finding]:
    return judge_each(ctx, control, lambda host: _judge(ctx, control, host))


def _judge(ctx: AuditContext, control: Control, host: str) -> Outcome:
    facts = facts_or_inconclusive(
        ctx,
        host,
        f"cannot judge {host}'s removable media",
        f"{host} の可搬記録媒体への書込み可否を判定できない",
        with_evidence=True,
    )
    if not isinstance(facts, HostFacts):
        return facts
    if ctx.inventory.hosts[host].os == "windows":
        return _judge_windows(host, facts)
    return _judge_linux(host, facts, control.parameters)


# -- Linux --------------------------------------------------------------------------------------


def _judge_linux(host: str, facts: HostFacts, parameters: dict[str, Any]) -> Outcome:
    modules = [str(m) for m in parameters.get("modules", ["usb-storage", "uas"])]
    noop = {str(c) for c in parameters.get("noop_install_commands", ["/bin/false", "/bin/true"])}
    transports = {str(t) for t in parameters.get("removable_transports", ["usb", "mmc"])}
    modprobe = modprobe_route(facts, modules, noop)
    usbguard = usbguard_route(facts)
    mounts = writable_removable_mounts(facts, transports)
    evidence = relevant_evidence(facts)
    expected = (
        f"{' and '.join(modules)} cannot be loaded (modprobe runs a no-op) and are not loaded, or "
        "USBGuard enforces an implicit block admitting no class 08; no removable device mounted "
        "writable"
    )
    actual = " | ".join([modprobe.describe(), usbguard.describe(), mounts.describe()])
    frame = _Frame(expected, actual, evidence)
    met = [r for r in (modprobe, usbguard) if r.holds]
    if mounts.holds is False:
        return _verdict(Status.FAIL, host, mounts, frame)
    if met and mounts.holds:
        return _verdict(Status.PASS, host, met[0], frame)
    if modprobe.holds is False and usbguard.holds is False:
        return _verdict(Status.FAIL, host, modprobe, frame)
    unknown = [r for r in (modprobe, usbguard, mounts) if r.holds is None]
    return _verdict(Status.INCONCLUSIVE, host, unknown[0], frame)


@dataclass(frozen=True)
class _Frame:
    """What every verdict on one host shows besides its decisive line."""

    expected: str
    actual: str
    evidence: list[str]


def _verdict(status: Status, host: str, decisive: Route, frame: _Frame) -> Outcome:
    why = decisive.describe()
    if status is Status.PASS:
        en = f"{host} cannot write to removable media: {why}"
        ja = f"端末 {host} は可搬記録媒体へ書き込めない: {why}"
    elif status is Status.FAIL:
        en = f"{host} can write to removable media: {why}"
        ja = f"端末 {host} は可搬記録媒体へ書き込める: {why}"
    else:
        en = f"cannot tell whether {host} can write to removable media: {why}"
        ja = f"端末 {host} の可搬記録媒体への書込み可否を判定できない: {why}"
    return Outcome(
        status,
        en,
        ja,
        expected=frame.expected,
        actual=frame.actual,
        reason=en if status is Status.INCONCLUSIVE else None,
        evidence=frame.evidence,
    )


def kernel_name(module: str) -> str:
    """modprobe treats '-' and '_' alike; the kernel and --showconfig print '_'."""
    return module.replace("-", "_")


def modprobe_route(facts: HostFacts, modules: list[str], noop: set[str]) -> Route:
    states = [module_route(facts, m, noop) for m in modules]
    lines = [line for s in states for line in s.lines]
    detail = "; ".join(s.detail for s in states)
    if all(s.holds for s in states):
        return Route("modprobe", True, detail, lines)
    if any(s.holds is False for s in states):
        return Route("modprobe", False, detail, lines)
    return Route("modprobe", None, detail, lines)


def module_route(facts: HostFacts, module: str, noop: set[str]) -> Route:
    """Whether one module cannot be loaded and is not loaded, with the deciding lines."""
    blocked = module_blocked(facts, module, noop)
    if blocked.holds is not True:
        return blocked
    loaded = module_loaded(facts, module)
    if loaded.holds is None:
        return Route(module, None, f"{blocked.detail}, but {loaded.detail}", blocked.lines)
    if loaded.holds:
        return Route(module, False, loaded.detail, blocked.lines + loaded.lines)
    return Route(module, True, f"{blocked.detail}; {loaded.detail}", blocked.lines + loaded.lines)


def module_blocked(facts: HostFacts, module: str, noop: set[str]) -> Route:
    """Read ``modprobe -n -v MODULE``: its last line is what an explicit load would do."""
    dry_run = facts.commands.get(f"modprobe-{module}")
    if dry_run is None:
        return _without_dry_run(facts, module)
    command = f"modprobe -n -v {module}"
    steps = [(n, line.strip()) for n, line in enumerate(dry_run.splitlines(), 1) if line.strip()]
    if not steps:
        return Route(module, None, f"`{command}` printed nothing")
    number, last = steps[-1]
    return _interpret_dry_run(facts, module, noop, Line(f"`{command}` line {number}", last))


def _interpret_dry_run(facts: HostFacts, module: str, noop: set[str], said: Line) -> Route:
    last = said.text
    if last.startswith("install "):
        run = last.removeprefix("install ").strip()
        configured = configured_install(facts, module)
        sources = [said] + ([configured] if configured is not None else [])
        if run in noop:
            return Route(module, True, f"an explicit load runs {run} instead", sources)
        return Route(module, False, f"the install command runs {run!r}, not a no-op", sources)
    if last.startswith("insmod "):
        note = _blacklist_note(facts.commands.get("modprobe-showconfig", ""), module)
        return Route(module, False, f"an explicit load inserts the module{note}", [said])
    if last.startswith("builtin "):
        return Route(module, False, "built into the kernel: modprobe cannot block it", [said])
    return Route(module, None, "modprobe printed an unknown line", [said])


def _without_dry_run(facts: HostFacts, module: str) -> Route:
    """``modprobe -n -v`` failed (typically "Module not found": no module tree). Unknown,
    never blocked; but with no install line configured at all, nothing would block it."""
    command = f"modprobe -n -v {module}"
    error = facts.errors.get(f"commands:modprobe-{module}", "not collected")
    showconfig = facts.commands.get("modprobe-showconfig")
    if showconfig is None:
        return Route(module, None, f"neither `{command}` ({error}) nor the configuration")
    configured = configured_install(facts, module)
    if configured is None:
        return Route(
            module,
            False,
            f"no install line for {module} in the effective configuration "
            f"(`modprobe --showconfig`){_blacklist_note(showconfig, module)}; `{command}`: "
            f"{error}",
            _blacklist_lines(facts, module),
        )
    return Route(
        module,
        None,
        f"configured, but `{command}` could not confirm it (a module that is not found is "
        f"unknown, not blocked): {error}",
        [configured],
    )


_INSTALL = re.compile(r"^\s*install\s+(\S+)\s+(.+?)\s*$")
_BLACKLIST = re.compile(r"^\s*blacklist\s+(\S+)\s*$")


def modprobe_files(facts: HostFacts) -> list[tuple[str, str]]:
    """The collected modprobe.d files in the order modprobe reads them: ``*.conf`` only, sorted
    by file name, a name in an earlier folder hiding the same name in a later one."""
    chosen: dict[str, str] = {}
    for folder in MODPROBE_DIRS:
        for path in facts.files:
            pure = PurePosixPath(path)
            if str(pure.parent) == folder and pure.suffix == ".conf":
                chosen.setdefault(pure.name, path)
    return [(chosen[name], facts.files[chosen[name]]) for name in sorted(chosen)]


def configured_install(facts: HostFacts, module: str) -> Line | None:
    """The install line modprobe uses for the module: the first one it reads (kmod keeps the
    first), in the files if collected, else in ``--showconfig``."""
    wanted = kernel_name(module)
    for path, text in modprobe_files(facts):
        for number, line in enumerate(text.splitlines(), 1):
            match = _INSTALL.match(line)
            if match and kernel_name(match[1]) == wanted:
                return Line(f"{path}:{number}", line)
    for number, line in enumerate(facts.commands.get("modprobe-showconfig", "").splitlines(), 1):
        match = _INSTALL.match(line)
        if match and kernel_name(match[1]) == wanted:
            return Line(f"`modprobe --showconfig` line {number} (file not collected)", line)
    return None


def _blacklist_lines(facts: HostFacts, module: str) -> list[Line]:
    wanted = kernel_name(module)
    return [
        Line(f"{path}:{number}", line)
        for path, text in modprobe_files(facts)
        for number, line in enumerate(text.splitlines(), 1)
        if (match := _BLACKLIST.match(line)) and kernel_name(match[1]) == wanted
    ]


def _blacklist_note(showconfig: str, module: str) -> str:
    wanted = kernel_name(module)
    for line in showconfig.splitlines():
        match = _BLACKLIST.match(line)
        if match and kernel_name(match[1]) == wanted:
            return f" (`{line.strip()}` only stops automatic loading, not an explicit load)"
    return ""


def module_loaded(facts: HostFacts, module: str) -> Route:
    """Loaded as a module (/proc/modules) or built in (/sys/module without /proc/modules)."""
    name = kernel_name(module)
    proc = facts.commands.get("proc-modules")
    proc_error = facts.errors.get("commands:proc-modules", "")
    sys_module = facts.commands.get("sys-module-listing")
    buses = facts.commands.get("sys-bus-listing")
    if buses is not None and "usb" not in buses.split():
        return Route(module, False, "the kernel has no USB subsystem (no usb in /sys/bus)",
                     [Line("`ls /sys/bus`", " ".join(buses.split()))])  # fmt: skip
    if proc is not None:
        loaded = [line for line in proc.splitlines() if line.split()[:1] == [name]]
        if loaded:
            return Route(module, True, f"{name} is loaded", [Line("/proc/modules", loaded[0])])
    elif "No such file or directory" not in proc_error:
        return Route(module, None, f"/proc/modules was not read ({proc_error or 'not collected'})")
    if sys_module is None:
        return Route(module, None, "/sys/module was not listed, so built-in drivers are unknown")
    if name in sys_module.split():
        return Route(
            module, True, f"{name} is built into the kernel (in /sys/module)",
            [Line("`ls /sys/module`", name)],
        )  # fmt: skip
    where = "/proc/modules" if proc is not None else "the kernel (no loadable-module support)"
    return Route(module, False, f"{name} is neither in {where} nor built in (not in /sys/module)")


# -- USBGuard -----------------------------------------------------------------------------------


def usbguard_route(facts: HostFacts) -> Route:
    """USBGuard enforces a block: the daemon runs, implicit policy block, present devices not
    simply allowed, no rule admitting class 08, no udev rule authorising devices."""
    config = facts.files.get(USBGUARD_DAEMON_CONF)
    running = _daemon_running(facts)
    if config is None:
        if running is False:
            return Route("USBGuard", False, "not running and no configuration read")
        return Route("USBGuard", None, "its daemon configuration was not read")
    settings = _key_values(config, USBGUARD_DAEMON_CONF)
    problems: list[Line] = []
    implicit = settings.get("ImplicitPolicyTarget")
    if implicit is not None and implicit.text.split("=", 1)[1].strip() != "block":
        problems.append(implicit)
    present = settings.get("PresentDevicePolicy")
    if present is not None and present.text.split("=", 1)[1].strip() in ("allow", "keep"):
        problems.append(present)
    rules, rules_known = _usbguard_rules(facts, settings)
    problems += [rule for rule in rules if admits_mass_storage(rule.text)]
    problems += udev_authorising_lines(facts)
    if problems:
        return Route("USBGuard", False, "admits mass storage", problems)
    if running is not True:
        state = "not running" if running is False else "its running state is unknown"
        holds = False if running is False else None
        return Route("USBGuard", holds, f"configured to block, but the daemon is {state}")
    if not rules_known:
        return Route("USBGuard", None, "its rules were not all read")
    return Route(
        "USBGuard", True, "the daemon runs with an implicit block and no rule admits class 08",
        [implicit or Line(USBGUARD_DAEMON_CONF, "ImplicitPolicyTarget (default block)")],
    )  # fmt: skip


def _daemon_running(facts: HostFacts) -> bool | None:
    if facts.processes is None:
        return None
    return any(p.command == "usbguard-daemon" for p in facts.processes)


def _key_values(text: str, path: str) -> dict[str, Line]:
    found: dict[str, Line] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and "=" in stripped:
            found[stripped.split("=", 1)[0].strip()] = Line(f"{path}:{number}", stripped)
    return found


def _usbguard_rules(facts: HostFacts, settings: dict[str, Line]) -> tuple[list[Line], bool]:
    """The rules in force: ``usbguard list-rules`` when the daemon answered, else the rule file
    (and whether every rule source was read)."""
    listed = facts.commands.get("usbguard-rules")
    if listed is not None:
        return _rule_lines(listed, "`usbguard list-rules` line"), True
    rule_file = settings.get("RuleFile")
    path = rule_file.text.split("=", 1)[1].strip() if rule_file else USBGUARD_RULES
    text = facts.files.get(path)
    complete = text is not None and "RuleFolder" not in settings
    return (_rule_lines(text, f"{path}:") if text is not None else []), complete


def _rule_lines(text: str, where: str) -> list[Line]:
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            lines.append(Line(f"{where}{'' if where.endswith(':') else ' '}{number}", stripped))
    return lines


_RULE_TARGET = re.compile(r"^(?:\d+:\s*)?(allow|block|reject)\b(.*)$")
_WITH_INTERFACE = re.compile(
    r"with-interface\s+(?:(all-of|one-of|none-of|equals|equals-ordered|match-all)\s+)?"
    r"(\{[^}]*\}|\S+)"
)


def admits_mass_storage(rule: str) -> bool:
    """Could this USBGuard rule authorise a device with a mass-storage interface (class 08)?

    Only an allow rule admits. It is safe only when its with-interface condition lists
    interface types exactly (``equals`` or a single type) and none of them can be class 08.
    Device ids and names do not make a rule safe: they are chosen by the device and can be
    spoofed by a storage device.
    """
    match = _RULE_TARGET.match(rule.strip())
    if match is None or match[1] != "allow":
        return False
    condition = _WITH_INTERFACE.search(match[2])
    if condition is None:
        return True
    operator, value = condition[1], condition[2]
    types = value.strip("{}").split()
    if operator not in (None, "equals", "equals-ordered"):
        return True
    return any(t.split(":")[0] in (MASS_STORAGE_CLASS, "*") for t in types)


_UDEV_AUTHORISE = re.compile(r"ATTRS?\{authorized(?:_default)?\}\s*=\s*\"?1")


def udev_authorising_lines(facts: HostFacts) -> list[Line]:
    """udev rules that authorise USB devices themselves, behind USBGuard's back."""
    return [
        Line(f"{path}:{number}", line)
        for path, text in sorted(facts.files.items())
        if path.startswith(UDEV_RULES_DIR + "/") and path.endswith(".rules")
        for number, line in enumerate(text.splitlines(), 1)
        if not line.lstrip().startswith("#") and _UDEV_AUTHORISE.search(line)
    ]


# -- removable devices --------------------------------------------------------------------------


def writable_removable_mounts(facts: HostFacts, transports: set[str]) -> Route:
    """Removable devices (RM, a removable transport, or optical) mounted read-write."""
    lsblk = facts.commands.get("lsblk")
    findmnt = facts.commands.get("findmnt")
    if lsblk is None or findmnt is None:
        missing = [
            f"{n} not collected ({facts.errors.get(f'commands:{n}', 'no error recorded')})"
            for n, t in (("lsblk", lsblk), ("findmnt", findmnt))
            if t is None
        ]
        return Route("mounts", None, "; ".join(missing))
    try:
        # load_json: host output, bounded in depth before the walks below recurse into it
        devices = list(_block_devices(load_json("lsblk", lsblk).get("blockdevices") or []))
        options = {
            fs.get("target"): str(fs.get("options") or "")
            for fs in _filesystems(load_json("findmnt", findmnt).get("filesystems") or [])
        }
    except (ParseError, AttributeError, TypeError) as exc:
        return Route("mounts", None, f"lsblk/findmnt output not understood: {exc}")
    removable = [d for d in devices if _is_removable(d, transports)]
    writable = [
        d for d in removable
        if d.get("mountpoint") and _mounted_rw(d, options.get(d.get("mountpoint")))
    ]  # fmt: skip
    if writable:
        lines = [
            Line("`lsblk`", f"{d.get('name')} mounted at {d.get('mountpoint')} read-write")
            for d in writable
        ]
        return Route("mounts", False, "a removable device is mounted writable", lines)
    names = ", ".join(str(d.get("name")) for d in removable) or "none"
    return Route("mounts", True, f"no removable device mounted writable (removable: {names})")


def _block_devices(devices: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for device in devices:
        yield device
        yield from _block_devices(device.get("children") or [])


def _filesystems(filesystems: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for fs in filesystems:
        yield fs
        yield from _filesystems(fs.get("children") or [])


def _flag(value: Any) -> bool:
    """lsblk prints RM/RO as JSON booleans (util-linux 2.38) or as "0"/"1" (older)."""
    return value is True or str(value) == "1"


def _is_removable(device: dict[str, Any], transports: set[str]) -> bool:
    return (
        _flag(device.get("rm")) or device.get("tran") in transports or device.get("type") == "rom"
    )


def _mounted_rw(device: dict[str, Any], options: str | None) -> bool:
    if options is not None:
        return options.split(",")[0] == "rw"
    return not _flag(device.get("ro"))


# -- Windows ------------------------------------------------------------------------------------


def _judge_windows(host: str, facts: HostFacts) -> Outcome:
    evidence = relevant_evidence(facts)
    try:
        media = media_facts(facts)
    except (KeyError, ParseError) as exc:
        return inconclusive(
            f"cannot judge {host}'s removable media: {exc}",
            f"{host} の可搬記録媒体への書込み可否を判定できない: {exc}",
            evidence=evidence,
        )
    policy = windows_policy_route(media)
    usbstor = usbstor_route(media)
    expected = (
        "Removable Storage Access denies writing to removable disks, CD/DVD and WPD devices "
        "(or all classes), or the USBSTOR driver is disabled (Start = 4)"
    )
    actual = " | ".join([policy.describe(), usbstor.describe(), _bitlocker_note(media)])
    frame = _Frame(expected, actual, evidence)
    met = [r for r in (policy, usbstor) if r.holds]
    if met:
        return _verdict(Status.PASS, host, met[0], frame)
    return _verdict(Status.FAIL, host, policy, frame)


def windows_policy_route(media: WindowsMediaFacts) -> Route:
    policy = media.removable_storage
    if policy is None:
        return Route("Removable Storage Access", None, "not read")
    denied, open_classes = [], []
    for device_class in WRITE_CLASSES:
        value = policy.denies_write(device_class)
        if value is None:
            open_classes.append(f"{CLASS_LABELS[device_class]} {device_class.value}")
        else:
            denied.append(Line(f"registry (reg query output line {value.line})", value.describe()))
    if not open_classes:
        return Route("Removable Storage Access", True, "writing denied to every class", denied)
    return Route(
        "Removable Storage Access",
        False,
        f"writing not denied to: {', '.join(open_classes)}",
        denied,
    )


def usbstor_route(media: WindowsMediaFacts) -> Route:
    value = media.usbstor_start
    if value is None:
        return Route("USBSTOR", False, "the Start value is absent (the driver loads on demand)")
    line = Line(f"registry (reg query output line {value.line})", value.describe())
    if value.dword == 4:
        return Route("USBSTOR", True, "the USB mass-storage driver is disabled", [line])
    return Route("USBSTOR", False, f"the driver is not disabled (Start = {value.data})", [line])


def _bitlocker_note(media: WindowsMediaFacts) -> str:
    value = media.rdv_deny_write
    if value is None or value.dword != 1:
        return "BitLocker RDVDenyWriteAccess: not set"
    return (
        f"BitLocker: {value.describe()} (denies writing only to drives not protected by "
        "BitLocker; not sufficient alone)"
    )
