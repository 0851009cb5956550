"""The engine's answer beside the kernel's, per probe and hook, and the corpus on disk.

A comparison is ``agree`` (the engine is certain and the kernel did the same), ``wrong``
(certain, and the kernel did otherwise), ``uncertain`` (the engine gives both verdicts, or is
unsure of its one; ``among`` says whether the kernel's verdict was one of them) or ``error``
(the engine raised). Hooks after a destination NAT the kernel applied are not compared: the
packet there is no longer the probe.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditor.domain.facts import IptablesListings
from probes.parsers import parse_ip_route, parse_ip_rule
from tests.unit.topology.oracle import netlab as nl
from tests.unit.topology.oracle.corpus import Source
from tests.unit.topology.oracle.probes import LINK_BROADCASTS, Probe, probes_for, sample
from topology.addrtypes import AddressTypes
from topology.firewall import Firewall, Hook, Outcome
from topology.hostrules import host_document
from topology.space import Packet

CORPUS = Path(__file__).resolve().parents[3] / "data" / "oracle"
PROTO = {"tcp": 6, "udp": 17}
#: The order a path meets fw's hooks in (a DNAT can only happen on the first).
ORDER = {
    "in": ("prerouting", "input"),
    "fwd": ("prerouting", "forward", "postrouting"),
    "out": ("output", "postrouting"),
    "local": ("output", "postrouting", "prerouting", "input"),
}


@dataclass(frozen=True)
class KernelRecord:
    """One probe and what the kernel did with it (one line of kernel.jsonl.gz)."""

    probe: Probe
    verdicts: dict[str, str]
    dnat: bool
    send: str

    def as_json(self) -> dict[str, Any]:
        return {
            "probe": self.probe.as_dict(),
            "verdicts": self.verdicts,
            "dnat": self.dnat,
            "send": self.send,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> KernelRecord:
        return cls(Probe(**doc["probe"]), dict(doc["verdicts"]), bool(doc["dnat"]), doc["send"])


@dataclass(frozen=True)
class Comparison:
    probe: Probe
    hook: str
    kernel: str
    engine: tuple[tuple[str, bool], ...]
    verdict: str  #: agree | wrong | uncertain | error
    among: bool
    rule: str
    reasons: tuple[str, ...]


@dataclass
class Figures:
    """The counts for one rule set (the figures the benchmark writes)."""

    compared: int = 0
    agree: int = 0
    wrong: int = 0
    uncertain: int = 0
    uncertain_kernel_among_answers: int = 0
    errors: int = 0
    probes: int = 0
    probes_reaching_no_hook: int = 0
    hooks_after_dnat_not_compared: int = 0
    hooks_seen_twice_not_compared: int = 0
    sources_rewritten_not_compared: int = 0
    causes: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        doc = {k: v for k, v in self.__dict__.items() if k != "causes"}
        doc["top_uncertainty_causes"] = dict(self.causes.most_common(8))
        return doc


def engine_packet(probe: Probe, hook: str) -> Packet:
    """The probe as it meets ``hook`` in fw: the devices that hook has, none it has not."""
    _, _, iif, oif, _ = nl.PATHS[probe.path]
    forwarded = probe.path.startswith("fwd")
    devices: dict[str, tuple[str | None, str | None]] = {
        "prerouting": (iif, None),
        "input": (iif, None),
        "forward": (iif, oif),
        "output": (None, oif),
        # A forwarded packet still has its input device on postrouting; a local one has none.
        "postrouting": (iif if forwarded else "", oif),
    }
    packet_iif, packet_oif = devices[hook]
    if forwarded and _is_link_local(probe):
        # The kernel routes a link-local destination strictly: back out of the device it
        # came in on (rt6_need_strict), whatever the path's other link.
        packet_oif = packet_iif if hook in ("forward", "postrouting") else packet_oif
    icmp = probe.kind == "icmp"
    return Packet(
        probe.family,
        PROTO.get(probe.kind, 1 if probe.family == 4 else 58),
        probe.saddr,
        probe.daddr,
        sport=probe.sport,
        dport=probe.dport,
        iif=packet_iif,
        oif=packet_oif,
        icmp_type=(8 if probe.family == 4 else 128) if icmp else 0,
    )


_LINK_LOCAL6 = ipaddress.ip_network("fe80::/10")


def _is_link_local(probe: Probe) -> bool:
    return probe.family == 6 and ipaddress.ip_address(probe.daddr) in _LINK_LOCAL6


_REF = re.compile(r"\b(ip6?|inet|arp|bridge|netdev) [\w.-]+/[\w.-]+/\d+")


def _cause(reason: str) -> str:
    """A reason without its rule reference, so the same construct counts once."""
    return _REF.sub("RULE", reason)


def compare_one(engine: Firewall, probe: Probe, hook: str, kernel: str) -> Comparison:
    try:
        # Hooks after a DNAT the kernel applied are not compared: no compared packet was
        # translated on fw (``ct status dnat`` is false for it).
        packet = engine_packet(probe, hook)
        outcomes: list[Outcome] = engine.decision_for(Hook(hook), packet, dnat=False)
    except Exception as error:
        return Comparison(probe, hook, kernel, (), "error", False, repr(error), ())
    answers = tuple(sorted((str(o.verdict), o.certain) for o in outcomes))
    verdicts = {v for v, _ in answers}
    reasons = tuple(sorted({r for o in outcomes for r in o.reasons}))
    rule = "; ".join(sorted({o.rule for o in outcomes}))
    if len(answers) == 1 and answers[0][1]:
        verdict = "agree" if answers[0][0] == kernel else "wrong"
        return Comparison(probe, hook, kernel, answers, verdict, verdict == "agree", rule, ())
    return Comparison(probe, hook, kernel, answers, "uncertain", kernel in verdicts, rule, reasons)


@dataclass(frozen=True)
class HostView:
    """What the collector would read of fw: nft's listing, the iptables listings beside it,
    and the routes (every table: the local one gives the address types)."""

    doc: dict[str, Any]
    iptables: IptablesListings | None = None
    #: ``ip -j route show table all`` v4 and v6, then ``ip -j rule show`` v4 and v6.
    routes: tuple[str, ...] | None = None

    def document(self) -> dict[str, Any]:
        """The combined rule set, as the topology builds it for a host."""
        return host_document(self.doc, self.iptables)[0]

    def engine(self) -> Firewall:
        types = None
        if self.routes is not None:
            parsed = parse_ip_route(self.routes[0], 4) + parse_ip_route(self.routes[1], 6)
            rules = None
            if len(self.routes) == 4:
                rules = parse_ip_rule(self.routes[2], 4) + parse_ip_rule(self.routes[3], 6)
            types = AddressTypes.from_routes(parsed, rules)
        return Firewall.from_nft_json(self.document(), types=types)


def compare(view: HostView, records: list[KernelRecord]) -> tuple[Figures, list[Comparison]]:
    """Every hook each probe reached, engine beside kernel."""
    figures = Figures(probes=len(records))
    found: list[Comparison] = []
    try:
        engine = view.engine()
    except Exception as error:
        figures.errors = 1
        figures.causes[f"the engine could not read the rule set: {error!r}"] += 1
        return figures, found
    for record in records:
        if record.probe.saddr in LINK_BROADCASTS:
            figures.sources_rewritten_not_compared += 1  # recorded before they were left out
            continue
        if not record.verdicts:
            figures.probes_reaching_no_hook += 1
            continue
        order = ORDER[record.probe.path.split(":")[0]]
        reached = [h for h in order if h in record.verdicts]
        compared = reached[:1] if record.dnat else reached
        figures.hooks_after_dnat_not_compared += len(reached) - len(compared)
        for hook in compared:
            if record.verdicts[hook] == "ambiguous":
                figures.hooks_seen_twice_not_compared += 1
                continue
            one = compare_one(engine, record.probe, hook, record.verdicts[hook])
            found.append(one)
            _count(figures, one)
    return figures, found


def _count(figures: Figures, one: Comparison) -> None:
    figures.compared += 1
    if one.verdict == "agree":
        figures.agree += 1
    elif one.verdict == "wrong":
        figures.wrong += 1
    elif one.verdict == "error":
        figures.errors += 1
    else:
        figures.uncertain += 1
        figures.uncertain_kernel_among_answers += one.among
        for reason in one.reasons or ("(no reason given)",):
            figures.causes[_cause(reason)] += 1


# -- measuring with the kernel ----------------------------------------------------------------
@dataclass(frozen=True)
class Measured:
    source: Source
    view: HostView
    text: str
    records: list[KernelRecord]


def measure(lab: nl.Netlab, source: Source, size: int | None = None, seed: int = 0) -> Measured:
    """Builds the rule set with its tool, lists it, then sends the probes (a sample if sized)."""
    lab.clear()
    source.build(lab)
    doc, text = lab.listing()
    view = HostView(doc, lab.iptables_listings(doc), lab.routes())
    lab.add_sentinels()
    probes = probes_for(view.document())
    if size is not None:
        probes = sample(probes, size, seed)
    records = []
    for probe in probes:
        seen = lab.observe(probe.path, probe.as_dict())
        records.append(KernelRecord(probe, seen.verdicts, seen.dnat, seen.send))
    lab.clear()
    return Measured(source, view, text, records)


# -- the corpus on disk -----------------------------------------------------------------------
def _version(*argv: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=20)
    except OSError:
        return "unknown"
    return (
        (done.stdout or done.stderr).strip().splitlines()[0] if done.stdout or done.stderr else ""
    )


def record(measured: Measured, root: Path = CORPUS) -> Path:
    """Writes the rule set as the kernel listed it and the kernel's verdicts under root/NAME."""
    where = root / measured.source.name
    where.mkdir(parents=True, exist_ok=True)
    view = measured.view
    (where / "ruleset.json").write_text(json.dumps(view.doc, indent=1) + "\n", "utf-8")
    (where / "ruleset.nft").write_text(measured.text, "utf-8")
    if view.iptables is not None:
        (where / "iptables.json").write_text(view.iptables.model_dump_json(indent=1) + "\n")
    if view.routes is not None:
        for name, text in zip(_ROUTING_FILES, view.routes, strict=False):
            (where / name).write_text(text, "utf-8")
    lines = "".join(json.dumps(r.as_json(), sort_keys=True) + "\n" for r in measured.records)
    (where / "kernel.jsonl.gz").write_bytes(gzip.compress(lines.encode(), mtime=0))
    meta = {
        "name": measured.source.name,
        "tool": measured.source.tool,
        "legacy": measured.source.legacy,
        "kernel": _version("uname", "-r"),
        "nft": _version("nft", "--version"),
        "iptables": _version("iptables-nft", "--version"),
        "ufw": _version("ufw", "--version"),
        "probes": len(measured.records),
    }
    (where / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", "utf-8")
    return where


@dataclass(frozen=True)
class Stored:
    name: str
    tool: str
    legacy: bool
    view: HostView
    records: list[KernelRecord]


def _stored_view(where: Path) -> HostView:
    doc = json.loads((where / "ruleset.json").read_text("utf-8"))
    iptables_file = where / "iptables.json"
    iptables = (
        IptablesListings.model_validate_json(iptables_file.read_text("utf-8"))
        if iptables_file.is_file()
        else None
    )
    present = [where / name for name in _ROUTING_FILES if (where / name).is_file()]
    routes = tuple(path.read_text("utf-8") for path in present) if present else None
    return HostView(doc, iptables, routes)


#: fw's routing as recorded beside the rule set (HostView.routes, in this order).
_ROUTING_FILES = ("routes-v4.json", "routes-v6.json", "rules-v4.json", "rules-v6.json")


def stored(root: Path = CORPUS) -> list[Stored]:
    found = []
    for where in sorted(p for p in root.iterdir() if (p / "meta.json").is_file()):
        meta = json.loads((where / "meta.json").read_text("utf-8"))
        lines = gzip.decompress((where / "kernel.jsonl.gz").read_bytes()).decode().splitlines()
        records = [KernelRecord.from_json(json.loads(line)) for line in lines if line]
        view = _stored_view(where)
        found.append(Stored(where.name, meta["tool"], bool(meta["legacy"]), view, records))
    return found
