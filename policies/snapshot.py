"""An audit's observations as a file: everything the checks read, except the topology.

The topology is not stored: it is rebuilt from the collected facts and the inventory (the
builder is deterministic), so a stored run, or a recording of the lab, can be judged again by
the current checks without probing anything. The file is derived data: the raw outputs the
facts and observations come from stay in the evidence store, which alone is the proof.

Failed attempts are kept with their reasons: re-judging must turn them inconclusive again,
never read them as "nothing observed".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import TypeAdapter

from auditor.domain.attempts import Attempt
from auditor.domain.facts import HostFacts
from auditor.domain.files import write_text_atomically
from auditor.domain.inventory import Inventory
from policies.context import AuditContext
from policies.empirical import (
    DiscoveryObservation,
    EgressObservation,
    LinkObservation,
    ScanObservation,
)
from topology.graph import Topology

OBSERVATIONS_FILE = "observations.json"
#: the one format this module writes and reads (mypy checks the constant against the type)
FormatName = Literal["anon-infra-auditor-observations/1"]
FORMAT: FormatName = "anon-infra-auditor-observations/1"


@dataclass
class Observations:
    """The AuditContext's observations, field for field (see AuditContext for their meaning)."""

    collection: dict[str, Attempt[HostFacts]] = field(default_factory=dict)
    egress: dict[str, Attempt[EgressObservation]] = field(default_factory=dict)
    scans: dict[str, Attempt[ScanObservation]] = field(default_factory=dict)
    links: dict[str, Attempt[LinkObservation]] = field(default_factory=dict)
    discovery: dict[str, Attempt[DiscoveryObservation]] = field(default_factory=dict)
    #: a file of another format is refused when read, instead of being misread
    format: FormatName = FORMAT


# Built once: pydantic compiles a validator and a serialiser for the whole nested type.
_ADAPTER: TypeAdapter[Observations] = TypeAdapter(Observations)


def observations_of(ctx: AuditContext) -> Observations:
    # Copies of the dicts, so that a later change to the context does not change the snapshot.
    return Observations(
        collection=dict(ctx.collection),
        egress=dict(ctx.egress),
        scans=dict(ctx.scans),
        links=dict(ctx.links),
        discovery=dict(ctx.discovery),
    )


def to_json(observations: Observations) -> str:
    """Compact JSON (the facts hold whole rule sets and package lists: indenting doubles them)."""
    return _ADAPTER.dump_json(observations).decode("utf-8")


def from_json(text: str | bytes) -> Observations:
    """Raises pydantic.ValidationError on anything that is not an observations file."""
    return _ADAPTER.validate_json(text)


def write_observations(path: Path, ctx: AuditContext) -> None:
    """Atomically, readable by the owner alone (like facts.json: it describes the hosts)."""
    write_text_atomically(path, to_json(observations_of(ctx)) + "\n", mode=0o600)


def read_observations(path: Path) -> Observations:
    return from_json(path.read_bytes())


def restore_context(inventory: Inventory, observations: Observations) -> AuditContext:
    """A context as the audit had it before judging: the observations, and the topology
    rebuilt from the facts (or the reason it could not be, as the audit records it)."""
    ctx = AuditContext(
        inventory=inventory,
        collection=dict(observations.collection),
        egress=dict(observations.egress),
        scans=dict(observations.scans),
        links=dict(observations.links),
        discovery=dict(observations.discovery),
    )
    facts = {host: f for host, a in ctx.collection.items() if (f := a.collected) is not None}
    try:
        ctx.topology = Topology.build(inventory, facts)
    except Exception as exc:  # the checks that need the model say why it is missing
        ctx.topology_error = f"{type(exc).__name__}: {exc}"
    return ctx


__all__ = [
    "FORMAT",
    "OBSERVATIONS_FILE",
    "Observations",
    "from_json",
    "observations_of",
    "read_observations",
    "restore_context",
    "to_json",
    "write_observations",
]
