"""no-remote-control-software (第4号ハ): no remote-control or backdoor software.

The tools are data (``policies/data/remote-control-tools.yaml``, validated strictly). A host
fails when a listed package is installed, a listed process runs (by name, or by a command-line
pattern) or a listening socket belongs to a listed process or port; the finding names each
package, process and socket. A pass needs the package list, the process list and the
listening sockets, all three collected.
"""

from __future__ import annotations

import re
from fnmatch import translate
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from auditor.domain.facts import HostFacts, Listener, Process
from auditor.domain.findings import Finding, Status
from auditor.domain.yamlsource import load_model
from policies.context import AuditContext
from policies.model import Control
from policies.support.common import Outcome, facts_or_inconclusive, inconclusive, judge_each

#: Linux keeps the first 15 characters of an executable's name (TASK_COMM_LEN - 1).
COMM_LENGTH = 15


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PortRange(_Strict):
    proto: Literal["tcp", "udp"]
    start: int = Field(alias="from", ge=1, le=65535)
    end: int = Field(alias="to", ge=1, le=65535)

    @model_validator(mode="after")
    def _ordered(self) -> PortRange:
        if self.start > self.end:
            raise ValueError(f"port range {self.start}-{self.end} is reversed")
        return self

    def covers(self, proto: str, port: int) -> bool:
        return proto == self.proto and self.start <= port <= self.end


class Tool(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    name: str = Field(min_length=1)
    kind: str = Field(min_length=1)
    packages: list[str] = Field(default_factory=list)
    processes: list[str] = Field(default_factory=list)
    ports: list[PortRange] = Field(default_factory=list)
    arguments: str | None = None

    @field_validator("packages", "processes")
    @classmethod
    def _no_blank_names(cls, names: list[str]) -> list[str]:
        if any(not n.strip() or n != n.strip() for n in names):
            raise ValueError("names must be non-empty, without surrounding spaces")
        return names

    @field_validator("arguments")
    @classmethod
    def _valid_pattern(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:  # pydantic reports ValueError with the location
                raise ValueError(f"not a regular expression: {exc}") from None
        return pattern

    @model_validator(mode="after")
    def _matches_something(self) -> Tool:
        if not (self.packages or self.processes or self.ports or self.arguments):
            raise ValueError(f"tool {self.id} names no package, process, port or arguments")
        return self

    def has_package(self, package: str) -> bool:
        pattern = self._package_pattern
        return pattern is not None and pattern.match(package) is not None

    @cached_property
    def _package_pattern(self) -> re.Pattern[str] | None:
        # The shell patterns as one regular expression, compiled once (what fnmatchcase does
        # per pattern and per call): matching every package of every host against every
        # pattern was most of this check's time on a large organisation.
        if not self.packages:
            return None
        return re.compile("|".join(f"(?:{translate(p)})" for p in self.packages))

    def has_process(self, command: str, args: str) -> bool:
        executable = executable_of(args)
        for name in self.processes:
            if name in (command, executable):
                return True
            if len(command) == COMM_LENGTH and name.startswith(command):
                return True
        return bool(self.arguments and re.search(self.arguments, args))


def executable_of(args: str) -> str:
    """The program's file name from a command line ("" when there is none)."""
    return args.split(None, 1)[0].rsplit("/", 1)[-1] if args.strip() else ""


class ToolList(_Strict):
    version: Literal[1]
    tools: list[Tool] = Field(min_length=1)

    # Most packages, processes and sockets of a host belong to no tool: one test against
    # every tool at once lets them skip the per-tool tests (which name the tools found).
    def may_be_package(self, package: str) -> bool:
        return self._any_package is not None and self._any_package.match(package) is not None

    def may_be_process(self, command: str, args: str) -> bool:
        names = self._process_names
        if command in names or executable_of(args) in names:
            return True
        if len(command) == COMM_LENGTH and any(n.startswith(command) for n in names):
            return True
        return any(re.search(t.arguments, args) for t in self.tools if t.arguments)

    def may_be_port(self, proto: str, port: int) -> bool:
        return any(r.covers(proto, port) for t in self.tools for r in t.ports)

    @cached_property
    def _any_package(self) -> re.Pattern[str] | None:
        patterns = [f"(?:{translate(p)})" for t in self.tools for p in t.packages]
        return re.compile("|".join(patterns)) if patterns else None

    @cached_property
    def _process_names(self) -> frozenset[str]:
        return frozenset(n for t in self.tools for n in t.processes)

    @model_validator(mode="after")
    def _unique_ids(self) -> ToolList:
        ids = [t.id for t in self.tools]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate tool ids: {', '.join(duplicates)}")
        return self


DEFAULT_TOOLS_FILE = "policies/data/remote-control-tools.yaml"


def tools_file(relative: str = DEFAULT_TOOLS_FILE) -> Path:
    """A tools file named relative to the folder holding the ``policies`` package."""
    return Path(str(resources.files("policies"))).parent / relative


@cache
def load_tools(path: Path) -> ToolList:
    return load_model(path, ToolList)


def shipped_tools() -> ToolList:
    return load_tools(tools_file())


# -- matching -----------------------------------------------------------------------------------


def installed_tools(packages: dict[str, str], tools: ToolList) -> list[str]:
    return [
        f"package {name} {version} ({tool.name})"
        for name, version in sorted(packages.items())
        if tools.may_be_package(name)
        for tool in tools.tools
        if tool.has_package(name)
    ]


def running_tools(processes: list[Process], tools: ToolList) -> list[str]:
    return [
        f"process {p.command} (pid {p.pid}, user {p.user}: {p.args[:120]}) ({tool.name})"
        for p in processes
        if tools.may_be_process(p.command, p.args)
        for tool in tools.tools
        if tool.has_process(p.command, p.args)
    ]


def listening_tools(listeners: list[Listener], tools: ToolList) -> list[str]:
    found = []
    for socket in listeners:
        by_name = socket.process is not None and tools.may_be_process(socket.process, "")
        if not by_name and not tools.may_be_port(socket.proto, socket.port):
            continue
        for tool in tools.tools:
            by_process = socket.process is not None and tool.has_process(socket.process, "")
            by_port = any(r.covers(socket.proto, socket.port) for r in tool.ports)
            if by_process or by_port:
                why = "its process" if by_process else "a port typical of it"
                found.append(
                    f"socket {socket.proto} {socket.address}:{socket.port} "
                    f"({socket.process or 'unknown process'}) ({tool.name}, by {why})"
                )
    return found


# -- the check ----------------------------------------------------------------------------------


def check(ctx: AuditContext, control: Control) -> list[Finding]:
    tools = load_tools(tools_file(str(control.parameters.get("tools_file", DEFAULT_TOOLS_FILE))))
    return judge_each(ctx, control, lambda host: _judge(ctx, host, tools))


def _judge(ctx: AuditContext, host: str, tools: ToolList) -> Outcome:
    facts = facts_or_inconclusive(
        ctx,
        host,
        f"cannot look for remote-control software on {host}",
        f"{host} の遠隔操作ソフトウェアの有無を確認できない",
    )
    if not isinstance(facts, HostFacts):
        return facts
    return judge_facts(host, facts, tools)


def judge_facts(host: str, facts: HostFacts, tools: ToolList) -> Outcome:
    found: list[str] = []
    missing: list[str] = []
    if facts.packages is not None:
        found += installed_tools(facts.packages, tools)
    else:
        missing.append(f"packages ({facts.errors.get('packages', 'not collected')})")
    if facts.processes is not None:
        found += running_tools(facts.processes, tools)
    else:
        missing.append(f"processes ({facts.errors.get('processes', 'not collected')})")
    if facts.listeners is not None:
        found += listening_tools(facts.listeners, tools)
    else:
        missing.append(f"listeners ({facts.errors.get('listeners', 'not collected')})")
    evidence = [
        ref
        for key, ref in facts.evidence.items()
        if key.split(":", 1)[0] in ("packages", "processes", "listeners")
    ]
    expected = f"none of the {len(tools.tools)} listed remote-control tools installed, running or listening"
    if found:
        listing = "; ".join(found[:12])
        return Outcome(
            Status.FAIL,
            f"remote-control software on {host}: {listing}",
            f"{host} に遠隔操作ソフトウェアがある: {listing}",
            expected=expected,
            actual=listing,
            evidence=evidence,
        )
    if missing:
        why = ", ".join(missing)
        return inconclusive(
            f"cannot rule out remote-control software on {host}: missing {why}",
            f"{host} の遠隔操作ソフトウェアの不存在を確認できない: {why} が未収集",
            evidence=evidence,
            expected=expected,
        )
    counts = (
        f"{len(facts.packages or {})} packages, {len(facts.processes or [])} processes, "
        f"{len(facts.listeners or [])} listening sockets"
    )
    return Outcome(
        Status.PASS,
        f"no remote-control software on {host} ({counts} checked)",
        f"{host} に遠隔操作ソフトウェアはない({counts} を確認)",
        expected=expected,
        actual=f"none found among {counts}",
        evidence=evidence,
    )
