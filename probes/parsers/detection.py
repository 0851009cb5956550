"""Parsers for unexpected-operation-detection (第4号ロ): what watches a host and where its
alerts go. Every input comes from an audited (untrusted) host: bounded, and anything not in the
expected form is a ParseError with its line, never a guess.

- ``grep -RHns ^ /etc/crontab /etc/cron.d /etc/cron.hourly /etc/cron.daily /etc/cron.weekly``
  -> the system crontab entries and the periodic scripts (:func:`parse_cron`);
- ``grep -RHns TMOUT /etc/profile /etc/profile.d /etc/bash.bashrc`` -> the shells' idle
  time-out assignments and whether they are made read-only (:func:`parse_tmout`);
- the audit plugins (``/etc/audit/plugins.d/*.conf``, ``audisp-remote.conf``) from the
  ``grep -RHn ^ /etc/audit`` the collector already takes (:func:`parse_audit_plugins`);
- ``grep -Hn ^ /var/ossec/etc/ossec.conf`` -> a Wazuh/OSSEC agent's manager addresses and
  whether its active response is disabled (:func:`parse_ossec_conf`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from probes.parsers.errors import ParseError
from probes.parsers.grep import parse_grep_lines

#: Far above any real configuration (Debian's cron files are a few hundred lines).
MAX_LINES = 100_000
CRONTAB = "/etc/crontab"
CRON_D = "/etc/cron.d"
#: The periodic directories run-parts runs from /etc/crontab, and how often.
PERIODIC_DIRS = ("/etc/cron.hourly", "/etc/cron.daily", "/etc/cron.weekly", "/etc/cron.monthly")
AUDIT_PLUGINS_DIR = "/etc/audit/plugins.d"
AUDISP_REMOTE_CONF = "/etc/audit/audisp-remote.conf"
OSSEC_CONF = "/var/ossec/etc/ossec.conf"

_SCHEDULE_NAMES = frozenset(
    {"@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
_TIME_FIELD = re.compile(r"[0-9A-Za-z*/,\-]{1,64}")
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,31}\$?")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\s*=")


@dataclass(frozen=True)
class CronJob:
    """One system crontab entry (``/etc/crontab`` or ``/etc/cron.d/*``)."""

    path: str
    number: int
    text: str
    schedule: str  #: "17 3 * * *" or "@daily"
    user: str
    command: str


@dataclass(frozen=True)
class CronFiles:
    jobs: list[CronJob] = field(default_factory=list)
    #: Scripts of the periodic directories: path -> line number -> text.
    scripts: dict[str, dict[int, str]] = field(default_factory=dict)
    #: MAILTO= of each crontab file (cron mails a job's output there): path -> (line, value).
    mailto: dict[str, tuple[int, str]] = field(default_factory=dict)


def _grep(text: str, tool: str) -> dict[str, dict[int, str]]:
    if text.count("\n") > MAX_LINES:
        raise ParseError(tool, None, f"more than {MAX_LINES} lines")
    return parse_grep_lines(text, tool)


def parse_cron(text: str) -> CronFiles:
    """System crontab entries (five time fields or an @-name, then the user, then the command;
    ``VAR=value`` lines set the environment) and the periodic scripts, as cron reads them.
    cron ignores files in /etc/cron.d whose names contain a dot: so do we."""
    tool = "grep cron"
    files = _grep(text, tool)
    found = CronFiles()
    for path in sorted(files):
        parent = str(PurePosixPath(path).parent)
        if parent in PERIODIC_DIRS:
            found.scripts[path] = files[path]
        elif path == CRONTAB or (parent == CRON_D and "." not in PurePosixPath(path).name):
            _crontab(path, files[path], found)
    return found


def _crontab(path: str, lines: dict[int, str], found: CronFiles) -> None:
    for number in sorted(lines):
        line = lines[number].strip()
        if not line or line.startswith("#"):
            continue
        if _ENV.match(line):
            name, _, value = line.partition("=")
            if name.strip() == "MAILTO":
                found.mailto[path] = (number, value.strip().strip("\"'"))
            continue
        found.jobs.append(_job(path, number, lines[number], line))


def _job(path: str, number: int, raw: str, line: str) -> CronJob:
    parts = line.split(None, 6)
    if parts[0] in _SCHEDULE_NAMES:
        count = 1
    elif parts[0].startswith("@"):
        raise ParseError("grep cron", number, f"{path}: unknown schedule {parts[0]!r}")
    else:
        count = 5
    if len(parts) < count + 2:
        raise ParseError("grep cron", number, f"{path}: expected a schedule, a user, a command")
    schedule = parts[:count]
    if count == 5 and not all(_TIME_FIELD.fullmatch(x) for x in schedule):
        raise ParseError("grep cron", number, f"{path}: not a crontab time field")
    if not _USER.fullmatch(parts[count]):
        raise ParseError("grep cron", number, f"{path}: not a user name: {parts[count]!r}")
    command = line.split(None, count + 1)[count + 1]
    return CronJob(path, number, raw, " ".join(schedule), parts[count], command)


@dataclass(frozen=True)
class TmoutLine:
    path: str
    number: int
    text: str
    value: int | None  #: the seconds assigned on this line, None when it assigns nothing
    readonly: bool  #: the line makes TMOUT read-only (readonly, declare -r, typeset -r)


_TMOUT_ASSIGN = re.compile(r"\bTMOUT=[\"']?(\d{1,9})[\"']?(?=$|[\s;])")
#: ``readonly [-x] TMOUT``, ``readonly TMOUT=900``, ``declare -r TMOUT``, ``typeset -rx TMOUT=…``.
_TMOUT_READONLY = re.compile(
    r"(?:\breadonly|\b(?:declare|typeset)\s+-[a-zA-Z]*r[a-zA-Z]*)\b[^;|&]*\bTMOUT\b"
)


def parse_tmout(text: str) -> list[TmoutLine]:
    """Lines of the login shells' start-up files that mention TMOUT. Commented lines are left
    out; a line inside an ``if`` is read like any other (the files are not executed)."""
    lines: list[TmoutLine] = []
    files = _grep(text, "grep TMOUT")
    for path in sorted(files):
        for number in sorted(files[path]):
            raw = files[path][number]
            code = raw.split("#", 1)[0]
            if "TMOUT" not in code:
                continue
            assign = _TMOUT_ASSIGN.search(code)
            lines.append(TmoutLine(path, number, raw, int(assign[1]) if assign else None,
                                   bool(_TMOUT_READONLY.search(code))))  # fmt: skip
    return lines


@dataclass(frozen=True)
class PluginSetting:
    path: str
    number: int
    key: str
    value: str


_KEY_VALUE = re.compile(r"\s*(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?P<value>.*?)\s*")


def parse_audit_plugins(text: str) -> dict[str, dict[str, PluginSetting]]:
    """From ``grep -RHn ^ /etc/audit``: each plugin file (``plugins.d/*.conf``) and
    ``audisp-remote.conf`` as key -> setting (the last one wins, as auditd reads them)."""
    files = _grep(text, "grep /etc/audit")
    found: dict[str, dict[str, PluginSetting]] = {}
    for path, lines in files.items():
        in_plugins = str(PurePosixPath(path).parent) == AUDIT_PLUGINS_DIR and path.endswith(".conf")
        if not in_plugins and path != AUDISP_REMOTE_CONF:
            continue
        settings = found.setdefault(path, {})
        for number in sorted(lines):
            raw = lines[number]
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            match = _KEY_VALUE.fullmatch(raw)
            if match is None:
                raise ParseError("grep /etc/audit", number, f"{path}: expected key = value")
            key = match["key"].lower()
            settings[key] = PluginSetting(path, number, key, match["value"])
    return found


@dataclass(frozen=True)
class OssecConf:
    #: Where the agent reports: (line, address) of <client><server><address>, <server-ip>
    #: or <server-hostname>.
    servers: list[tuple[int, str]] = field(default_factory=list)
    #: <active-response><disabled>yes|no</disabled> lines: (line, value).
    active_response_disabled: list[tuple[int, str]] = field(default_factory=list)


_ADDRESS = re.compile(r"<(address|server-ip|server-hostname)>\s*([^<\s]{1,255})\s*</\1>")
_DISABLED = re.compile(r"<disabled>\s*(yes|no)\s*</disabled>", re.I)


def parse_ossec_conf(text: str) -> OssecConf:
    """The manager addresses and active-response switches of ``ossec.conf``, read line by line
    (the agent's file is XML without a root element, so no XML parser reads it as is; each of
    these elements sits on one line in Wazuh's and OSSEC's shipped files)."""
    files = _grep(text, "grep ossec.conf")
    lines = files.get(OSSEC_CONF)
    if lines is None:
        raise ParseError("grep ossec.conf", None, f"no line of {OSSEC_CONF}")
    found = OssecConf()
    section: list[str] = []
    for number in sorted(lines):
        code = re.sub(r"<!--.*?-->", "", lines[number])
        tags = re.findall(r"<(/?)(client|server|active-response)>", code)
        # Opening tags first, then this line's values, then its closing tags: a one-line
        # <active-response><disabled>no</disabled></active-response> is inside its section.
        section += [name for closing, name in tags if not closing]
        address = _ADDRESS.search(code)
        if address and ("client" in section or address[1] != "address"):
            found.servers.append((number, address[2]))
        disabled = _DISABLED.search(code)
        if disabled and "active-response" in section:
            found.active_response_disabled.append((number, disabled[1].lower()))
        for name in (name for closing, name in tags if closing):
            if name in section:
                del section[len(section) - 1 - section[::-1].index(name)]
    return found
