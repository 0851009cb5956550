"""The SSH host collector ("ssh-host"): one Linux host's facts, or many hosts in parallel.

What is collected is data: ``DEFAULT_PLAN`` is a table of rules, each naming a fact, the
exact commands that produce it and the parser that turns their output into the fact. The
session's allow-list is derived from that table and nothing else, so the list an
organisation's sudoers must allow is ``DEFAULT_PLAN.allow_list()`` (see docs/probes.md).

Every raw output goes to the evidence sink (with host, probe, command, tool version, exit
status and times) before it is parsed. A command that fails, times out or prints something
unparseable leaves its fact ``None`` with the reason in ``HostFacts.errors``; the collection
goes on. A host that cannot be reached yields HostFacts with an error for every fact and a
failed Attempt; it never raises, so one host never stops the others.

Keys of ``HostFacts.evidence`` and ``HostFacts.errors``: the fact name ("routes"), or for
a fact built from several commands the fact name and a part ("routes:v4"); files are
"files:<path>" and other command outputs "commands:<name>". ``evidence_refs(facts, "routes")``
gathers all of a fact's references.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from auditor.domain.attempts import Attempt, ErrorReason
from auditor.domain.errors import AuditorError
from auditor.domain.facts import HostFacts, HostKey, Interface, IptablesListings, IptablesSave
from auditor.domain.inventory import Inventory, SshAccess
from auditor.domain.protocols import EvidenceSink, ScopeCheck
from probes.parsers import (
    ParseError,
    WgOutputs,
    parse_audit_config,
    parse_auditctl_rules,
    parse_auditctl_status,
    parse_dpkg_query,
    parse_flag,
    parse_host_key,
    parse_ip_addr,
    parse_ip_route,
    parse_ip_rule,
    parse_machine_id,
    parse_nft_ruleset,
    parse_os_release,
    parse_pam_directory,
    parse_ps,
    parse_ss,
    parse_wireguard,
)
from probes.parsers.apt import parse_apt_simulation, parse_list_times
from probes.parsers.authentication import (
    parse_fail2ban_status,
    parse_faillock_conf,
    parse_passwd_status,
)
from probes.parsers.detection import parse_cron, parse_ossec_conf, parse_tmout
from probes.parsers.grep import parse_grep_lines
from probes.parsers.hostkey import fingerprint_sha256
from probes.parsers.ipset import parse_ipset_save
from probes.parsers.iptables import iptables_save_fact
from probes.ssh import (
    SAFE_FILE_NAME,
    AllowList,
    AuditSession,
    CommandEnd,
    CommandResult,
    CommandTemplate,
    SshError,
)

PROBE = "ssh-host"

#: The bound for outputs known to be large on real hosts (a kernel's full module aliases).
LARGE_OUTPUT = 64 * 1024 * 1024
#: At most this many files are read from one configuration folder.
MAX_FOLDER_FILES = 200
#: Where the collector records the key the server presented in the handshake.
TRANSPORT_KEY_COMMAND = "[host key presented in the SSH handshake]"

#: How each tool's version is asked for, once per host; the answer goes with each artifact.
TOOL_VERSION_COMMANDS: dict[str, str] = {
    "iproute2": "ip -V",
    "ss": "ss -V",
    "nft": "/usr/sbin/nft --version",
    "iptables": "/usr/sbin/iptables --version",
    "ipset": "/usr/sbin/ipset version",
    "wg": "/usr/bin/wg --version",
    "procps": "ps -V",
    "dpkg": "dpkg-query --version",
    "kmod": "/sbin/modprobe --version",
    "usbguard": "/usr/bin/usbguard --version",
    "lsblk": "lsblk --version",
    "findmnt": "findmnt --version",
}

Outputs = Mapping[str, str | None]
Builder = Callable[[Outputs], object]


# -- the plan: data --------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One command of a rule. ``key`` names its artifact in evidence and errors."""

    key: str
    command: str
    tool: str | None = None  #: a key of TOOL_VERSION_COMMANDS
    max_output: int | None = None  #: None: the session's default bound
    #: A missing file is an answer (None in the outputs), not an error.
    absent_ok: bool = False
    #: Run only when this holds of the rule's earlier outputs and the facts built so far;
    #: otherwise the step's output is None and nothing is sent to the host.
    only_if: Callable[[Outputs, Mapping[str, Any]], bool] | None = None


@dataclass(frozen=True)
class FactRule:
    """A fact, the commands that produce it and how their outputs become the fact.

    ``fact`` is a HostFacts field name, or "files:<path>", or "commands:<name>".
    """

    fact: str
    steps: tuple[Step, ...]
    build: Builder


@dataclass(frozen=True)
class FolderRule:
    """Read every file of a configuration folder: list it, then cat each file by name.

    The listing is kept as "commands:<listing name>", each file as "files:<folder>/<name>".
    """

    folder: str
    listing_name: str

    @property
    def listing(self) -> Step:
        return Step(key=f"commands:{self.listing_name}", command=f"ls {self.folder}")

    @property
    def template(self) -> CommandTemplate:
        return CommandTemplate(prefix=f"cat {self.folder}/", argument=SAFE_FILE_NAME)


@dataclass(frozen=True)
class HostPlan:
    rules: tuple[FactRule, ...]
    folders: tuple[FolderRule, ...] = ()

    def commands(self) -> list[str]:
        """Every exact command of the plan (without folder files and tool versions)."""
        steps = [s.command for r in self.rules for s in r.steps]
        return steps + [f.listing.command for f in self.folders]

    def tools(self) -> set[str]:
        return {s.tool for r in self.rules for s in r.steps if s.tool is not None}

    def allow_list(self) -> AllowList:
        versions = [TOOL_VERSION_COMMANDS[t] for t in sorted(self.tools())]
        return AllowList(
            [*self.commands(), *versions], templates=[f.template for f in self.folders]
        )

    def fact_keys(self) -> list[str]:
        return [r.fact for r in self.rules] + [f.listing.key for f in self.folders]

    def extended(
        self, rules: Iterable[FactRule] = (), folders: Iterable[FolderRule] = ()
    ) -> HostPlan:
        return HostPlan(self.rules + tuple(rules), self.folders + tuple(folders))


def single(fact: str, command: str, parse: Callable[[str], object], tool: str | None = None,
           max_output: int | None = None) -> FactRule:  # fmt: skip
    """A fact made by one command (its key is the fact name)."""
    return FactRule(
        fact,
        (Step(fact, command, tool, max_output),),
        lambda outputs: parse(_present(outputs[fact])),
    )


def raw(fact: str, command: str, tool: str | None = None, max_output: int | None = None
        ) -> FactRule:  # fmt: skip
    """A file or command output kept as text, for host checks to read."""
    return single(fact, command, lambda text: text, tool, max_output)


def validated(fact: str, command: str, parse: Callable[[str], object]) -> FactRule:
    """An output kept as text for host checks once its parser has accepted it, so that
    garbage is a parse-error of the collection (with its line), not a surprise in a check."""

    def accept(text: str) -> str:
        parse(text)
        return text

    return single(fact, command, accept)


def _present(text: str | None) -> str:
    if text is None:  # only absent_ok steps give None, and their builders handle it
        raise ParseError("collector", None, "output missing")
    return text


# -- builders for facts made of several outputs -----------------------------------------------


def _build_routes(outputs: Outputs) -> object:
    v4 = parse_ip_route(_present(outputs["routes:v4"]), 4)
    return v4 + parse_ip_route(_present(outputs["routes:v6"]), 6)


def _build_rules(outputs: Outputs) -> object:
    v4 = parse_ip_rule(_present(outputs["policy_rules:v4"]), 4)
    return v4 + parse_ip_rule(_present(outputs["policy_rules:v6"]), 6)


_WG_FIELDS = (
    "public-key",
    "listen-port",
    "peers",
    "endpoints",
    "allowed-ips",
    "latest-handshakes",
    "persistent-keepalive",
)


def _build_wireguard(outputs: Outputs) -> object:
    def text(part: str) -> str:
        return _present(outputs[f"wireguard:{part}"])

    return parse_wireguard(
        WgOutputs(
            interfaces=text("interfaces"),
            public_key=text("public-key"),
            listen_port=text("listen-port"),
            peers=text("peers"),
            endpoints=text("endpoints"),
            allowed_ips=text("allowed-ips"),
            latest_handshakes=text("latest-handshakes"),
            persistent_keepalive=text("persistent-keepalive"),
        )
    )


_HOST_KEY_TYPES = ("ed25519", "ecdsa", "rsa")


def _build_host_keys(outputs: Outputs) -> object:
    # The transport's key is added by the collector; files that do not exist are fine.
    return [parse_host_key(text) for text in outputs.values() if text is not None]


_MODULE_ALIAS = re.compile(r"alias \S+ (usb_storage|uas)$")


def keep_needed_module_config(text: str) -> str:
    """``modprobe --showconfig`` minus the thousands of ``alias`` lines of unrelated modules
    (the full output is in the evidence): every install, blacklist, options, softdep line,
    and the aliases that resolve to usb_storage or uas."""
    kept = [
        line
        for line in text.splitlines()
        if not line.startswith("alias ") or _MODULE_ALIAS.search(line)
    ]
    return "\n".join(kept) + ("\n" if kept else "")


def _wireguard_rule() -> FactRule:
    steps = [Step("wireguard:interfaces", "sudo -n /usr/bin/wg show interfaces", "wg")]
    # Field by field, so that the private key is never asked for: "wg show all dump" and
    # "wg show all private-key" would print it.
    steps += [
        Step(f"wireguard:{name}", f"sudo -n /usr/bin/wg show all {name}", "wg")
        for name in _WG_FIELDS
    ]
    return FactRule("wireguard", tuple(steps), _build_wireguard)


def _host_keys_rule() -> FactRule:
    steps = tuple(
        Step(f"host_keys:{t}", f"cat /etc/ssh/ssh_host_{t}_key.pub", absent_ok=True)
        for t in _HOST_KEY_TYPES
    )
    return FactRule("host_keys", steps, _build_host_keys)


#: grep -s: unreadable or absent files are skipped quietly (chrony.keys is root-only and is
#: never printed: no line of it starts with a source keyword).
TIME_SOURCES_COMMAND = (
    "grep -rHns -E '^[[:space:]]*(server|pool|peer|refclock|NTP|FallbackNTP|servers)"
    "([[:space:]]|=)' /etc/chrony /etc/systemd/timesyncd.conf /etc/systemd/timesyncd.conf.d "
    "/etc/ntpsec /etc/ntp.conf /etc/openntpd || true"
)

CRON_FILES_COMMAND = (
    "grep -RHns ^ /etc/crontab /etc/cron.d /etc/cron.hourly /etc/cron.daily /etc/cron.weekly "
    "/etc/cron.monthly || true"
)
TMOUT_COMMAND = "grep -RHns TMOUT /etc/profile /etc/profile.d /etc/bash.bashrc || true"
OSSEC_CONF_COMMAND = "sudo -n /usr/bin/grep -Hn ^ /var/ossec/etc/ossec.conf"
#: Debug::NoLocking: the simulation must not need (or take) apt's lock as a normal user.
APT_SIMULATION_COMMAND = "apt-get -s -o Debug::NoLocking=1 dist-upgrade"
#: The host's clock first, then each Release/InRelease file's modification time.
APT_LISTS_TIMES_COMMAND = (
    "date -u +%s; find /var/lib/apt/lists -maxdepth 1 -name '*Release' -printf '%T@ %p\\n'"
)


#: The tables iptables-legacy has registered in the kernel, one name per line (root-only; the
#: file is absent until the legacy module is loaded). Read first: iptables-legacy-save is run
#: only where a table exists, so that auditing never loads a kernel module on the host.
LEGACY_NAMES = {4: "/proc/net/ip_tables_names", 6: "/proc/net/ip6_tables_names"}
LEGACY_SAVE = {4: "/usr/sbin/iptables-legacy-save", 6: "/usr/sbin/ip6tables-legacy-save"}
NFT_SAVE = {4: "/usr/sbin/iptables-nft-save", 6: "/usr/sbin/ip6tables-nft-save"}
_NFT_FAMILY = {4: "ip", 6: "ip6"}


def _legacy_tables_exist(version: int) -> Callable[[Outputs, Mapping[str, Any]], bool]:
    def check(outputs: Outputs, _facts: Mapping[str, Any]) -> bool:
        names = outputs.get(f"iptables:legacy-names-v{version}")
        return bool(names and names.strip())

    return check


def _nft_holds_xt(version: int) -> Callable[[Outputs, Mapping[str, Any]], bool]:
    """iptables-nft-save is asked only where ``nft -j`` listed xtables expressions (matches
    and targets it cannot open) in that family's tables."""

    def check(_outputs: Outputs, facts: Mapping[str, Any]) -> bool:
        document = facts.get("nftables")
        return isinstance(document, dict) and has_xt_expressions(document, _NFT_FAMILY[version])

    return check


def has_xt_expressions(document: Mapping[str, Any], family: str) -> bool:
    for statement in document.get("nftables", []):
        rule = statement.get("rule") if isinstance(statement, dict) else None
        if isinstance(rule, dict) and rule.get("family") == family:
            exprs = rule.get("expr")
            if isinstance(exprs, list) and any(isinstance(e, dict) and "xt" in e for e in exprs):
                return True
    return False


def _iptables_rule() -> FactRule:
    steps: list[Step] = []
    for version in (4, 6):
        names = f"iptables:legacy-names-v{version}"
        steps.append(Step(names, f"sudo -n /usr/bin/cat {LEGACY_NAMES[version]}", absent_ok=True))
        steps.append(
            Step(
                f"iptables:legacy-v{version}",
                f"sudo -n {LEGACY_SAVE[version]}",
                "iptables",
                only_if=_legacy_tables_exist(version),
            )
        )
        steps.append(
            Step(
                f"iptables:nft-v{version}",
                f"sudo -n {NFT_SAVE[version]}",
                "iptables",
                only_if=_nft_holds_xt(version),
            )
        )
    # Last: the sets are asked for only when a listing looks one up.
    steps.append(Step("iptables:ipsets", f"sudo -n {IPSET_SAVE}", "ipset", only_if=_matches_a_set))
    return FactRule("iptables", tuple(steps), _build_iptables)


IPSET_SAVE = "/usr/sbin/ipset save"


def _matches_a_set(outputs: Outputs, _facts: Mapping[str, Any]) -> bool:
    return any(
        key.startswith("iptables:") and text is not None and "--match-set" in text
        for key, text in outputs.items()
    )


def _build_iptables(outputs: Outputs) -> object:
    def listing(key: str) -> IptablesSave | None:
        text = outputs[f"iptables:{key}"]
        # Garbage is a parse error of the whole fact, with its line: the firewall is then
        # uncertain wherever iptables rules could drop (topology/hostrules.py).
        return None if text is None else iptables_save_fact(text)

    sets = outputs["iptables:ipsets"]
    return IptablesListings(
        legacy_v4=listing("legacy-v4"),
        legacy_v6=listing("legacy-v6"),
        nft_v4=listing("nft-v4"),
        nft_v6=listing("nft-v6"),
        ipsets=None if sets is None else parse_ipset_save(sets),
    )


DEFAULT_PLAN = HostPlan(
    rules=(
        single("interfaces", "ip -j addr show", parse_ip_addr, "iproute2"),
        FactRule(
            "routes",
            (
                Step("routes:v4", "ip -4 -j route show table all", "iproute2"),
                Step("routes:v6", "ip -6 -j route show table all", "iproute2"),
            ),
            _build_routes,
        ),
        FactRule(
            "policy_rules",
            (
                Step("policy_rules:v4", "ip -j rule show", "iproute2"),
                Step("policy_rules:v6", "ip -6 -j rule show", "iproute2"),
            ),
            _build_rules,
        ),
        single(
            "forwarding_v4",
            "cat /proc/sys/net/ipv4/ip_forward",
            lambda t: parse_flag(t, "ip_forward"),
        ),
        single(
            "forwarding_v6",
            "cat /proc/sys/net/ipv6/conf/all/forwarding",
            lambda t: parse_flag(t, "ipv6 forwarding"),
        ),
        single("nftables", "sudo -n /usr/sbin/nft -j list ruleset", parse_nft_ruleset, "nft"),
        # After nftables: whether iptables-nft-save is needed depends on what nft listed.
        _iptables_rule(),
        single("listeners", "sudo -n /usr/bin/ss -H -t -u -l -n -p", parse_ss, "ss"),
        single("processes", "ps -eo pid=,user=,comm=,args=", parse_ps, "procps"),
        _wireguard_rule(),
        single("machine_id", "cat /etc/machine-id", parse_machine_id),
        _host_keys_rule(),
        single("os_release", "cat /etc/os-release", parse_os_release),
        single(
            "packages",
            "dpkg-query -W -f='${db:Status-Abbrev}\\t${Package}\\t${Version}\\n'",
            parse_dpkg_query,
            "dpkg",
        ),
        raw("commands:modprobe-usb-storage", "/sbin/modprobe -n -v usb-storage", "kmod"),
        raw("commands:modprobe-uas", "/sbin/modprobe -n -v uas", "kmod"),
        single(
            "commands:modprobe-showconfig",
            "/sbin/modprobe --showconfig",
            keep_needed_module_config,
            "kmod",
            LARGE_OUTPUT,
        ),
        raw("commands:proc-modules", "cat /proc/modules"),
        # Built-in modules with parameters appear here and not in /proc/modules; a kernel
        # without loadable-module support has no /proc/modules at all.
        raw("commands:sys-module-listing", "ls /sys/module"),
        # No "usb" bus here: the kernel has no USB subsystem.
        raw("commands:sys-bus-listing", "ls /sys/bus"),
        raw("commands:usbguard-rules", "sudo -n /usr/bin/usbguard list-rules", "usbguard"),
        raw(
            "files:/etc/usbguard/usbguard-daemon.conf",
            "sudo -n /usr/bin/cat /etc/usbguard/usbguard-daemon.conf",
        ),
        raw("files:/etc/usbguard/rules.conf", "sudo -n /usr/bin/cat /etc/usbguard/rules.conf"),
        raw("files:/etc/systemd/journald.conf", "cat /etc/systemd/journald.conf"),
        raw("files:/etc/rsyslog.conf", "cat /etc/rsyslog.conf"),
        raw("files:/etc/sudoers", "sudo -n /usr/bin/cat /etc/sudoers"),
        raw("commands:sudoers.d-listing", "sudo -n /usr/bin/ls -la /etc/sudoers.d"),
        raw("commands:lsblk", "lsblk -J -o NAME,RM,RO,TYPE,MOUNTPOINT,TRAN", "lsblk"),
        raw("commands:findmnt", "findmnt -J", "findmnt"),
        raw("commands:var-log-listing", "ls /var/log"),
        # sshd's effective configuration (LogLevel, SyslogFacility): root reads the host keys.
        raw("commands:sshd-effective-config", "sudo -n /usr/sbin/sshd -T"),
        # Every sudoers Defaults line with its file and line number (sudo logging); the
        # sudoers.d files are readable by root only.
        raw(
            "commands:sudoers-defaults",
            "sudo -n /usr/bin/grep -rHn Defaults /etc/sudoers /etc/sudoers.d",
        ),
        # Time sources configured for chrony, systemd-timesyncd, ntpd/ntpsec or OpenNTPD, with
        # file and line. Absent files are normal (one client is installed, not all of them), so
        # a missing path must not fail the command: "|| true", and an empty answer means none.
        raw("commands:time-sources", TIME_SOURCES_COMMAND),
        # Privileged-command logging by the audit system: the kernel's state and the loaded
        # rules (root only), then auditd.conf and the rules files with file:line (/etc/audit
        # is root-only; one exact grep needs no wildcard in sudoers; -R follows symlinks).
        validated(
            "commands:auditctl-status", "sudo -n /usr/sbin/auditctl -s", parse_auditctl_status
        ),
        validated("commands:auditctl-rules", "sudo -n /usr/sbin/auditctl -l", parse_auditctl_rules),
        validated(
            "commands:audit-config", "sudo -n /usr/bin/grep -RHn ^ /etc/audit", parse_audit_config
        ),
        # The PAM services' session stacks (pam_tty_audit), with file:line; world-readable.
        validated("commands:pam.d", "grep -RHn ^ /etc/pam.d", parse_pam_directory),
        # authentication-hardening: sshd's configuration files with file:line (which settings
        # a Match block changes, since `sshd -T` alone shows a connection matching none); each
        # account's password status, never the hashes (root reads /etc/shadow); pam_faillock's
        # settings; fail2ban's sshd jail.
        validated(
            "commands:sshd-config",
            "grep -RHn ^ /etc/ssh/sshd_config /etc/ssh/sshd_config.d",
            lambda text: parse_grep_lines(text, "grep sshd_config"),
        ),
        validated("commands:passwd-status", "sudo -n /usr/bin/passwd -S -a", parse_passwd_status),
        validated(
            "files:/etc/security/faillock.conf",
            "cat /etc/security/faillock.conf",
            parse_faillock_conf,
        ),
        validated(
            "commands:fail2ban-sshd",
            "sudo -n /usr/bin/fail2ban-client status sshd",
            parse_fail2ban_status,
        ),
        # security-updates-applied, read-only and without network: what an upgrade would
        # install from the lists the host already has (never `apt update`), and their age.
        validated(
            "commands:apt-upgrade-simulation",
            APT_SIMULATION_COMMAND,
            parse_apt_simulation,
        ),
        validated("commands:apt-lists-times", APT_LISTS_TIMES_COMMAND, parse_list_times),
        # unexpected-operation-detection: the system crontabs and periodic scripts (a scheduled
        # AIDE check and where its report goes), the shells' TMOUT, and a Wazuh/OSSEC agent's
        # configuration (root-only; absent on hosts without an agent, which the check reads
        # only when an agent runs). Absent cron or profile files are normal: "|| true".
        validated("commands:cron-files", CRON_FILES_COMMAND, parse_cron),
        validated("commands:tmout", TMOUT_COMMAND, parse_tmout),
        validated("commands:ossec-conf", OSSEC_CONF_COMMAND, parse_ossec_conf),
    ),
    folders=(
        FolderRule("/etc/modprobe.d", "modprobe.d-listing"),
        # modprobe also reads the distribution's defaults; a line there may decide a module.
        FolderRule("/lib/modprobe.d", "lib-modprobe.d-listing"),
        # udev rules can authorise USB devices behind USBGuard's back (ATTR{authorized}="1").
        FolderRule("/etc/udev/rules.d", "udev-rules.d-listing"),
        FolderRule("/etc/systemd/journald.conf.d", "journald.conf.d-listing"),
        FolderRule("/etc/rsyslog.d", "rsyslog.d-listing"),
    ),
)


# -- collecting one host ----------------------------------------------------------------------


@dataclass
class _Collected:
    """What one host's collection has gathered so far (HostFacts is frozen: built last)."""

    host: str
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    evidence: dict[str, str] = field(default_factory=dict)

    def fail(self, key: str, reason: ErrorReason, message: str) -> None:
        self.errors[key] = f"{reason.value}: {message}"

    def facts(self) -> HostFacts:
        top = {k: v for k, v in self.values.items() if ":" not in k}
        files = {k[6:]: v for k, v in self.values.items() if k.startswith("files:")}
        commands = {k[9:]: v for k, v in self.values.items() if k.startswith("commands:")}
        return HostFacts(
            host=self.host,
            **top,
            files=files,
            commands=commands,
            errors=self.errors,
            evidence=self.evidence,
        )


class _StepError(AuditorError):
    def __init__(self, reason: ErrorReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class _HostRun:
    """Runs a plan's steps on one session: stores every output, remembers tool versions."""

    def __init__(
        self, session: AuditSession, sink: EvidenceSink, collected: _Collected, budget: int
    ) -> None:
        self.session = session
        self.sink = sink
        self.collected = collected
        self.versions: dict[str, str | None] = {}
        self.lost: SshError | None = None  #: set once the connection is gone
        self.budget = budget  #: bytes the host may still send (stdout and stderr together)
        self.over_budget: str | None = None  #: why collection stopped, once the budget is spent

    def output(self, step: Step) -> str | None:
        """The step's stdout, or None for an absent file of an absent_ok step; otherwise
        raises _StepError with the reason."""
        result = self._run(step.command, step.max_output)
        self._store(step.key, result, self.version(step.tool))
        if result.end is CommandEnd.TIMED_OUT:
            raise _StepError(
                ErrorReason.TIMEOUT,
                f"{self.session.where}: {step.command!r} did not finish within "
                f"{self.session.timeouts.command:g}s; stopped",
            )
        if result.end is CommandEnd.TRUNCATED:
            raise _StepError(
                ErrorReason.COMMAND_FAILED, f"{step.command!r}: output over the bound; cut"
            )
        if result.end is CommandEnd.LOST:
            # Killed by a signal or cut off: no status to judge by, and what it printed may be
            # partial, so the fact is not built from it (the output is kept as evidence).
            raise _StepError(
                ErrorReason.COMMAND_FAILED,
                f"{step.command!r} ended without an exit status: {result.lost_reason}",
            )
        if result.exit_status != 0:
            stderr = result.stderr_text().strip()
            if step.absent_ok and "No such file or directory" in stderr:
                return None
            raise _StepError(
                ErrorReason.COMMAND_FAILED,
                f"{step.command!r} exited {result.exit_status}: {stderr[:300]}",
            )
        return result.text()

    def _run(self, command: str, max_output: int | None) -> CommandResult:
        if self.lost is not None:
            raise _StepError(self.lost.reason, f"not run: {self.lost.message}")
        if self.over_budget is not None:
            raise _StepError(ErrorReason.OVER_BUDGET, f"not run: {self.over_budget}")
        # Never ask for more than the budget has left: one huge output cannot overshoot it.
        bound = min(self.session.max_output if max_output is None else max_output, self.budget)
        try:
            result = self.session.run(command, max_output=bound)
        except SshError as exc:
            if exc.reason is ErrorReason.UNREACHABLE:
                self.lost = exc
            raise _StepError(exc.reason, exc.message) from None
        self._spend(result)
        return result

    def _spend(self, result: CommandResult) -> None:
        self.budget -= len(result.stdout) + len(result.stderr)
        if self.budget <= 0 or (result.end is CommandEnd.TRUNCATED and self.budget < 1024):
            self.over_budget = (
                f"{self.session.where} sent more than its collection budget "
                "(ssh.host_budget_mib in the inventory); the rest was not collected"
            )

    def _store(self, key: str, result: CommandResult, version: str | None) -> None:
        ref = self.sink.add(
            result.stdout,
            probe=PROBE,
            command=result.command,
            host=self.collected.host,
            started=result.started,
            finished=result.finished,
            tool_version=version,
            exit_status=result.exit_status,
        )
        self.collected.evidence[key] = ref
        if result.stderr:
            self.collected.evidence[f"{key}:stderr"] = self.sink.add(
                result.stderr,
                probe=PROBE,
                command=f"{result.command} (stderr)",
                host=self.collected.host,
                started=result.started,
                finished=result.finished,
                tool_version=version,
                exit_status=result.exit_status,
            )

    def version(self, tool: str | None) -> str | None:
        """The tool's version line, asked once per host; None when it cannot be told."""
        if tool is None or self.lost is not None:
            return None
        if tool not in self.versions:
            self.versions[tool] = None  # asked once even if it fails
            command = TOOL_VERSION_COMMANDS[tool]
            try:
                result = self._run(command, None)
            except _StepError:
                return None
            self._store(f"tool-version:{tool}", result, None)
            lines = (result.text() or result.stderr_text()).strip().splitlines()
            if result.succeeded and lines:
                self.versions[tool] = lines[0][:200]
        return self.versions[tool]


def _apply_rule(rule: FactRule, run: _HostRun, collected: _Collected) -> None:
    outputs: dict[str, str | None] = {}
    failures: list[_StepError] = []
    for step in rule.steps:
        if step.only_if is not None and not step.only_if(outputs, collected.values):
            outputs[step.key] = None
            continue
        try:
            outputs[step.key] = run.output(step)
        except _StepError as exc:
            failures.append(exc)
    if failures:
        # A fact made of several outputs is all or nothing: half the routes would read as
        # "these are all the routes". Its error keeps the reason of each failed part.
        collected.errors[rule.fact] = "; ".join(f"{f.reason.value}: {f.message}" for f in failures)
        return
    try:
        collected.values[rule.fact] = rule.build(outputs)
    except ParseError as exc:
        collected.fail(rule.fact, ErrorReason.PARSE_ERROR, str(exc))


def _apply_folder(folder: FolderRule, run: _HostRun, collected: _Collected) -> None:
    listing_key = folder.listing.key
    try:
        listing = _present(run.output(folder.listing))
    except _StepError as exc:
        collected.fail(listing_key, exc.reason, exc.message)
        return
    collected.values[listing_key] = listing
    names = [n for n in listing.splitlines() if n.strip()]
    for name in names[:MAX_FOLDER_FILES]:
        key = f"files:{folder.folder}/{name}"
        if not SAFE_FILE_NAME.fullmatch(name):
            collected.fail(key, ErrorReason.NOT_PERMITTED, "not read: unusual file name")
            continue
        step = Step(key=key, command=folder.template.render(name))
        try:
            collected.values[key] = _present(run.output(step))
        except _StepError as exc:
            collected.fail(key, exc.reason, exc.message)
    if len(names) > MAX_FOLDER_FILES:
        collected.fail(
            listing_key, ErrorReason.INTERNAL, f"only the first {MAX_FOLDER_FILES} files read"
        )


def _record_transport_key(session: AuditSession, sink: EvidenceSink, collected: _Collected,
                          connected_at: datetime) -> HostKey | None:  # fmt: skip
    if session.host_key is None or session.host_key_line is None:
        return None
    collected.evidence["host_keys:transport"] = sink.add(
        (session.host_key_line + "\n").encode(),
        probe=PROBE,
        command=TRANSPORT_KEY_COMMAND,
        host=collected.host,
        started=connected_at,
        finished=connected_at,
    )
    return HostKey(
        type=session.host_key.get_name(),
        fingerprint=fingerprint_sha256(session.host_key.asbytes()),
    )


def _merge_transport_key(collected: _Collected, transport_key: HostKey | None) -> None:
    keys = collected.values.get("host_keys")
    if transport_key is not None and isinstance(keys, list) and transport_key not in keys:
        keys.insert(0, transport_key)


def _mark_wireguard_interfaces(collected: _Collected) -> None:
    # `ip -j addr` cannot tell a WireGuard link from another tunnel; `wg` itself can.
    interfaces = collected.values.get("interfaces")
    tunnels = collected.values.get("wireguard")
    if not isinstance(interfaces, list) or not isinstance(tunnels, list):
        return
    names = {t.name for t in tunnels}
    collected.values["interfaces"] = [
        i.model_copy(update={"kind": "wireguard"})
        if isinstance(i, Interface) and i.name in names and i.kind is None
        else i
        for i in interfaces
    ]


def collect_host(
    host: str,
    address: str,
    access: SshAccess,
    sink: EvidenceSink,
    check_target: ScopeCheck,
    *,
    plan: HostPlan = DEFAULT_PLAN,
) -> Attempt[HostFacts]:
    """Collect one host. Never raises: every failure is in the Attempt and in the facts."""
    collected = _Collected(host)
    session = AuditSession(host, address, access, plan.allow_list(), check_target)
    try:
        return _collect(session, sink, plan, collected, access.host_budget_bytes)
    except Exception as exc:  # a bug here must cost this host only, never the others
        message = f"{host} ({address}): collector failed: {type(exc).__name__}: {exc}"
        return _failed(collected, plan, ErrorReason.INTERNAL, message)


def _collect(
    session: AuditSession, sink: EvidenceSink, plan: HostPlan, collected: _Collected, budget: int
) -> Attempt[HostFacts]:
    try:
        session.connect()
    except SshError as exc:
        return _failed(collected, plan, exc.reason, exc.message)
    try:
        transport_key = _record_transport_key(session, sink, collected, _now())
        run = _HostRun(session, sink, collected, budget)
        for rule in plan.rules:
            _apply_rule(rule, run, collected)
        for folder in plan.folders:
            _apply_folder(folder, run, collected)
    finally:
        session.close()
    _merge_transport_key(collected, transport_key)
    _mark_wireguard_interfaces(collected)
    facts = collected.facts()
    refs = list(collected.evidence.values())
    if run.lost is not None:
        return Attempt.partial(
            PROBE, collected.host, facts, run.lost.reason, run.lost.message, evidence=refs
        )
    if run.over_budget is not None:
        return Attempt.partial(
            PROBE, collected.host, facts, ErrorReason.OVER_BUDGET, run.over_budget, evidence=refs
        )
    return Attempt.ok(PROBE, collected.host, facts, refs)


def _failed(
    collected: _Collected, plan: HostPlan, reason: ErrorReason, message: str
) -> Attempt[HostFacts]:
    """Every fact not collected gets the reason; the partial facts are kept."""
    for key in plan.fact_keys():
        if key not in collected.values and key not in collected.errors:
            collected.fail(key, reason, message)
    try:
        facts = collected.facts()
    except Exception:  # the partial values themselves were the problem
        facts = HostFacts(host=collected.host, errors=collected.errors)
    return Attempt.partial(
        PROBE, collected.host, facts, reason, message, evidence=list(collected.evidence.values())
    )


# -- many hosts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    host: str  #: inventory name
    address: str  #: where to connect


def collect_hosts(
    targets: Sequence[Target],
    access: SshAccess,
    sink: EvidenceSink,
    check_target: ScopeCheck,
    *,
    plan: HostPlan = DEFAULT_PLAN,
) -> dict[str, Attempt[HostFacts]]:
    """Collect every target, at most ``access.parallel`` at a time, each independently.

    The result has one Attempt per target, in the targets' order, whatever happened.
    """
    if not targets:
        return {}
    workers = max(1, min(access.parallel, len(targets)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ssh-host") as pool:
        futures = [
            pool.submit(collect_host, t.host, t.address, access, sink, check_target, plan=plan)
            for t in targets
        ]
        return {t.host: f.result() for t, f in zip(targets, futures, strict=True)}


def targets_from_inventory(inventory: Inventory) -> list[Target]:
    """The organisation's Linux hosts that have an SSH address."""
    return [
        Target(name, str(host.ssh))
        for name in inventory.organisation_hosts()
        if (host := inventory.hosts[name]).os == "linux" and host.ssh is not None
    ]


def collect_inventory(
    inventory: Inventory,
    sink: EvidenceSink,
    check_target: ScopeCheck,
    *,
    plan: HostPlan = DEFAULT_PLAN,
) -> dict[str, Attempt[HostFacts]]:
    targets = targets_from_inventory(inventory)
    return collect_hosts(targets, inventory.ssh, sink, check_target, plan=plan)


def evidence_refs(facts: HostFacts, fact: str) -> list[str]:
    """All artifact references behind a fact (its parts and stderr included)."""
    return [ref for key, ref in facts.evidence.items() if key == fact or key.startswith(f"{fact}:")]


def _now() -> datetime:
    return datetime.now(UTC)
