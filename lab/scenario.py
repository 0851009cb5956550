"""Scenarios: ``lab/scenarios/<name>/scenario.yaml`` (the format of docs/lab.md, strictly checked).

A scenario is rejected before anything starts when a key is unknown, a host or network does
not exist, an address is outside its network, or a file it names is missing; every message
names the file, line and key. The lab's own extensions (docs/lab.md):

- ``inventory:``: a deep-merge patch on the generated inventory (``null`` deletes a key,
  lists and scalars replace);
- per host ``absent: true``: do not create that baseline host;
- per host ``plays: [host, ...]``: this container also does the named (absent) baseline
  hosts' part: their addresses, tunnels, pipeline steps and transfer keys;
- in ``files``, a ``null`` source: do not put the lab's own file at that path.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from auditor.domain.inventory import Inventory
from auditor.domain.yamlsource import LocatedDocument, SourceError, load_located, validate_document
from lab.baseline import baseline_inventory_document, merge_patch
from lab.errors import LabError
from lab.model import HOSTS, NETWORKS
from lab.paths import SCENARIOS_DIR

#: The controls' ids (policies/controls/): an ``expect.fail`` naming another is a typo.
CONTROL_IDS = frozenset(
    {
        "recv-no-outbound",
        "send-no-inbound",
        "send-separate-host",
        "proc-egress-only-via-gateways",
        "external-links-leased-or-vpn",
        "links-encrypted",
        "terminal-removable-media-blocked",
        "unauthorized-access-prevention",
        "operation-logging",
        "no-remote-control-software",
        "inventory-complete",
        "authentication-hardening",
        "security-updates-applied",
        "unexpected-operation-detection",
    }
)
HOST_NAME = r"^[a-z0-9][a-z0-9-]{0,40}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HostSpec(_Strict):
    files: dict[str, str | None] = Field(default_factory=dict)
    sysctls: dict[str, str | int] = Field(default_factory=dict)
    exec: list[str] = Field(default_factory=list)
    networks: dict[str, str] = Field(default_factory=dict)
    absent: bool = False
    plays: list[str] = Field(default_factory=list)


class ExpectedFail(_Strict):
    control: str
    subject: str


class ExpectedInconclusive(_Strict):
    control: str
    subject: str
    reason: str  #: a part of the finding's reason: the cause it must name


class Expect(_Strict):
    fail: list[ExpectedFail] = Field(default_factory=list)
    #: pairs a hostile or broken host must leave undecided, each with the cause its reason names
    inconclusive: list[ExpectedInconclusive] = Field(default_factory=list)
    #: values the scenario plants on its hosts that must appear nowhere in the run or bundle
    secrets: list[str] = Field(default_factory=list)


class ScenarioDocument(_Strict):
    description: str
    hosts: dict[str, HostSpec] = Field(default_factory=dict)
    expect: Expect = Field(default_factory=Expect)
    inventory: dict[str, Any] | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    folder: Path | None  #: None for the built-in empty baseline
    description: str
    hosts: dict[str, HostSpec] = field(default_factory=dict)
    inventory_patch: dict[str, Any] | None = None
    expect_fail: list[tuple[str, str]] = field(default_factory=list)
    #: (control, subject) -> the text its inconclusive finding's reason must contain
    expect_inconclusive: dict[tuple[str, str], str] = field(default_factory=dict)
    planted_secrets: list[str] = field(default_factory=list)

    def spec(self, host: str) -> HostSpec:
        return self.hosts.get(host, HostSpec())

    def is_absent(self, host: str) -> bool:
        return self.spec(host).absent

    @property
    def new_hosts(self) -> list[str]:
        return [h for h in self.hosts if h not in HOSTS]

    def source_file(self, source: str) -> Path:
        assert self.folder is not None
        return self.folder / source


BASELINE = Scenario(name="baseline", folder=None, description="the compliant baseline")


def resolve_scenario_path(name_or_dir: str | Path) -> Path:
    """A folder, a scenario.yaml, or a bare name meaning ``lab/scenarios/NAME``."""
    path = Path(name_or_dir)
    if path.is_file():
        return path
    if path.is_dir():
        return path / "scenario.yaml"
    if "/" not in str(name_or_dir):
        return SCENARIOS_DIR / str(name_or_dir) / "scenario.yaml"
    return path / "scenario.yaml"


def load_scenario(path: Path | str) -> Scenario:
    """Load and fully check a scenario. Raises SourceError (file:line: key: problem)."""
    file = resolve_scenario_path(path)
    if not file.is_file():
        raise SourceError(file, [f"{file}: no such scenario file"])
    doc = load_located(file)
    parsed = validate_document(doc, ScenarioDocument)
    problems = _cross_check(doc, parsed, file.parent)
    if problems:
        raise SourceError(file, problems)
    return Scenario(
        name=file.parent.name,
        folder=file.parent.resolve(),
        description=parsed.description.strip(),
        hosts=dict(parsed.hosts),
        inventory_patch=parsed.inventory,
        expect_fail=[(f.control, f.subject) for f in parsed.expect.fail],
        expect_inconclusive={(i.control, i.subject): i.reason for i in parsed.expect.inconclusive},
        planted_secrets=list(parsed.expect.secrets),
    )


def _cross_check(doc: LocatedDocument, parsed: ScenarioDocument, folder: Path) -> list[str]:
    problems: list[str] = []

    def problem(loc: tuple[str | int, ...], message: str) -> None:
        problems.append(f"{doc.where(loc)}: {'.'.join(map(str, loc))}: {message}")

    for name, spec in parsed.hosts.items():
        _check_host(name, spec, parsed, folder, problem)
    new_names = set(parsed.hosts) - set(HOSTS)
    pairs: list[tuple[str, int, ExpectedFail | ExpectedInconclusive]] = [
        *(("fail", i, e) for i, e in enumerate(parsed.expect.fail)),
        *(("inconclusive", i, e) for i, e in enumerate(parsed.expect.inconclusive)),
    ]
    for kind, i, expected in pairs:
        loc: tuple[str | int, ...] = ("expect", kind, i)
        if expected.control not in CONTROL_IDS:
            problem((*loc, "control"), f"unknown control {expected.control!r}")
        if expected.subject not in {*HOSTS, *NETWORKS, *new_names}:
            problem((*loc, "subject"), f"no host or network named {expected.subject!r}")
    for i, secret in enumerate(parsed.expect.secrets):
        if len(secret) < 8:  # a short one would be found by chance in any run folder
            problem(("expect", "secrets", i), "a planted secret needs at least 8 characters")
    if parsed.inventory is not None:
        _check_inventory_patch(parsed.inventory, problem)
    return problems


def _check_host(
    name: str, spec: HostSpec, parsed: ScenarioDocument, folder: Path, problem: Any
) -> None:
    where = ("hosts", name)
    if not re.match(HOST_NAME, name):
        problem(where, "a host name is lower-case letters, digits and '-'")
    is_new = name not in HOSTS
    if is_new and not spec.networks:
        problem(where, f"no baseline host named {name!r}; a new host needs `networks`")
    if spec.absent and (spec.files or spec.exec or spec.networks or spec.sysctls or spec.plays):
        problem((*where, "absent"), "an absent host cannot also have files, exec, ...")
    if spec.absent and is_new:
        problem((*where, "absent"), f"no baseline host named {name!r}")
    for network, address in spec.networks.items():
        _check_address(network, address, (*where, "networks", network), problem)
    _check_plays(spec, parsed, where, problem)
    _check_files(spec, folder, where, problem)
    for key in spec.sysctls:
        if not key.startswith(("net.", "kernel.")):
            problem(
                (*where, "sysctls", key), "only namespaced sysctls (net.*, kernel.*) can be set"
            )


def _check_plays(
    spec: HostSpec, parsed: ScenarioDocument, where: tuple[str, str], problem: Any
) -> None:
    for played in spec.plays:
        if played not in HOSTS:
            problem((*where, "plays"), f"no baseline host named {played!r}")
        elif not parsed.hosts.get(played, HostSpec()).absent:
            problem((*where, "plays"), f"{played} must be `absent: true` to be played here")


def _check_files(spec: HostSpec, folder: Path, where: tuple[str, str], problem: Any) -> None:
    for target, source in spec.files.items():
        loc = (*where, "files", target)
        if not target.startswith("/"):
            problem(loc, "the destination must be an absolute path")
        if source is not None and not (folder / source).is_file():
            problem(loc, f"no such file {folder / source}")


def _check_address(network: str, address: str, loc: tuple[str | int, ...], problem: Any) -> None:
    if network not in NETWORKS:
        problem(loc, f"no network named {network!r} (known: {', '.join(NETWORKS)})")
        return
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        problem(loc, f"not an IPv4 address: {address!r}")
        return
    if ip not in ipaddress.ip_network(NETWORKS[network].ipv4):
        problem(loc, f"{address} is not inside {network} ({NETWORKS[network].ipv4})")
    elif int(address.rsplit(".", 1)[1]) in (0, 1, 255):
        problem(loc, f"{address} is reserved (network, auditor or broadcast address)")


def _check_inventory_patch(patch: dict[str, Any], problem: Any) -> None:
    patched = merge_patch(baseline_inventory_document(), patch)
    try:
        inventory = Inventory.model_validate(patched)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            problem(("inventory", *err["loc"]), f"the patched inventory is invalid: {err['msg']}")
        return
    except ValueError as exc:
        problem(("inventory",), f"the patched inventory is invalid: {exc}")
        return
    del inventory


def scenario_or_baseline(name_or_dir: str | Path | None) -> Scenario:
    if name_or_dir is None or str(name_or_dir) == "baseline":
        return BASELINE if not (SCENARIOS_DIR / "baseline").is_dir() else load_scenario("baseline")
    try:
        return load_scenario(name_or_dir)
    except SourceError:
        raise
    except OSError as exc:
        raise LabError(f"cannot read scenario {name_or_dir}: {exc}") from exc
