"""A draft inventory as YAML text, in the documented format, with its TODOs explained.

PyYAML cannot write comments, and the comments are half the point of a draft (how to decide
each TODO, where each network was seen, what the sweeps found), so the text is written here
from a plain document and a table of comments, then read back with PyYAML and compared with
the document: a value the writer got wrong (an address YAML would read as a number, host text
with a quote in it) is caught before the file is written.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from auditor.audit.draft import TODO, Draft, DraftError, DraftHost, DraftNetwork, DraftTunnel
from auditor.domain.inventory import TODO_ADVICE

Loc = tuple[str | int, ...]

#: Text YAML reads as itself: names, IPv4 addresses and prefixes. Everything else is quoted.
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9._/-]*|[0-9]+(\.[0-9]+){3}(/[0-9]+)?")
_YAML_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"})
#: Small mappings written on one line, as docs/inventory.md shows them.
_FLOW_KEYS = frozenset({"auditor"})


@dataclass
class Annotated:
    """A document, the comment after each key (by its path) and the lines before it."""

    document: dict[str, Any]
    after: dict[Loc, str] = field(default_factory=dict)
    before: dict[Loc, list[str]] = field(default_factory=dict)


def render_draft(draft: Draft, out: Path) -> str:
    """The draft as the text of ``out`` (paths in it relative to its folder when inside it)."""
    annotated = annotate(draft, out)
    text = _header(draft) + "".join(_mapping(annotated.document, (), 0, annotated))
    if yaml.safe_load(text) != annotated.document:
        raise DraftError(f"{out}: the draft did not read back as written (a bug of the writer)")
    return text


def annotate(draft: Draft, out: Path) -> Annotated:
    doc: dict[str, Any] = {"version": 1, "organisation": TODO}
    result = Annotated(doc)
    result.after[("organisation",)] = _decide("organisation")
    doc["scope"] = {"authorized": [str(p) for p in draft.scope.authorized]}
    doc["ssh"] = {
        "user": draft.access.user,
        "key": _path_for(draft.access.key, out),
        "known_hosts": _path_for(draft.access.known_hosts, out),
        "port": draft.access.port,
    }
    doc["networks"] = {n.name: _network(n, result) for n in draft.networks}
    doc["tunnels"] = {t.name: _tunnel(t, result) for t in draft.tunnels}
    doc["hosts"] = {h.name: _host(h, result, ("hosts", h.name)) for h in draft.hosts}
    if draft.neighbours:
        first = ("hosts", draft.neighbours[0].name)
        result.before[first] = [
            "",
            "Unknown neighbours: they answered a sweep (or end a tunnel) and no host logged in",
            "to holds their address. Decide what each is, or remove it; an unknown device on a",
            "protected network is a finding in itself (inventory-complete).",
        ]
        for host in draft.neighbours:
            doc["hosts"][host.name] = _host(host, result, ("hosts", host.name))
    return result


def _header(draft: Draft) -> str:
    lines = [
        "Drafted by `auditor inventory draft` (format: docs/inventory.md).",
        "Every TODO is a decision no probe can make: the loader refuses this file until none",
        "is left. Check the rest too: services list every network a listener is bound to,",
        "before the host's firewall; narrow `from` to what the organisation intends.",
    ]
    if draft.notes:
        lines += ["", "Not drafted:"] + [f"  - {note}" for note in draft.notes]
    return "".join(_comment_line("", line) for line in lines)


def _decide(key: str) -> str:
    return f"decide {TODO_ADVICE[key]}"


def _path_for(path: Path, out: Path) -> str:
    folder = out.resolve().parent
    target = path.resolve()
    if target.is_relative_to(folder):
        return os.path.relpath(target, folder)
    return str(target)


def _network(network: DraftNetwork, result: Annotated) -> dict[str, Any]:
    loc: Loc = ("networks", network.name)
    body: dict[str, Any] = {"zone": TODO, "medium": TODO}
    result.after[(*loc, "zone")] = _decide("zone")
    result.after[(*loc, "medium")] = _decide("medium")
    for prefix in network.prefixes:
        body.setdefault(f"ipv{prefix.version}", str(prefix))
    own = {f"ipv{a.version}": str(a) for a in reversed(network.auditor)}
    if own:
        body["auditor"] = dict(sorted(own.items()))
    seen = ", ".join(network.seen_on) or "this machine only"
    result.after[loc] = f"seen on {seen}; {network.sweep}"
    return body


def _tunnel(tunnel: DraftTunnel, result: Annotated) -> dict[str, Any]:
    loc: Loc = ("tunnels", tunnel.name)
    body: dict[str, Any] = {"type": tunnel.type, "over": tunnel.over or TODO}
    if tunnel.over is None:
        result.after[(*loc, "over")] = _decide("over")
    for prefix in tunnel.prefixes:
        body.setdefault(f"ipv{prefix.version}", str(prefix))
    # By name, so that the draft does not depend on which end was logged in to first.
    ends = sorted(e.host for e in tunnel.ends[:2] if e.host is not None)
    body["endpoints"] = ends + [TODO] * (2 - len(ends))
    if TODO in body["endpoints"]:
        result.after[(*loc, "endpoints")] = _decide("endpoints")
    if tunnel.notes:
        result.after[loc] = "; ".join(tunnel.notes)
    return body


def _host(host: DraftHost, result: Annotated, loc: Loc) -> dict[str, Any]:
    body: dict[str, Any] = {"roles": [TODO]}
    result.after[(*loc, "roles")] = _decide("roles")
    if host.ssh is not None:
        body["ssh"] = host.ssh
    body["addresses"] = {
        segment: [str(a) for a in addresses]
        for segment, addresses in sorted(host.addresses.items())
    }
    if host.services:
        body["services"] = []
        for service in host.services:
            entry: dict[str, Any] = {"port": service.port, "proto": service.proto}
            entry["from"] = list(service.sources)
            if service.processes:
                entry["purpose"] = ", ".join(service.processes)
            body["services"].append(entry)
    if host.problems or host.notes:
        result.after[loc] = "; ".join(host.problems + host.notes)
    return body


# -- writing ----------------------------------------------------------------------------------


def _mapping(data: dict[str, Any], loc: Loc, indent: int, notes: Annotated) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for key, value in data.items():
        here = (*loc, key)
        lines += [_comment_line(pad, c) for c in notes.before.get(here, [])]
        comment = _comment_suffix(notes.after.get(here))
        if isinstance(value, dict) and value and key not in _FLOW_KEYS:
            lines.append(f"{pad}{_scalar(key)}:{comment}\n")
            lines += _mapping(value, here, indent + 2, notes)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{pad}{_scalar(key)}:{comment}\n")
            for i, item in enumerate(value):
                item_comment = _comment_suffix(notes.after.get((*here, i)))
                lines.append(f"{pad}  - {_flow(item)}{item_comment}\n")
        else:
            lines.append(f"{pad}{_scalar(key)}: {_flow(value)}{comment}\n")
    return lines


def _comment_line(pad: str, text: str) -> str:
    return f"{pad}# {_comment_text(text)}\n" if text else "\n"


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_scalar(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return _scalar(value)


def _scalar(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DraftError(f"the draft writer cannot write {value!r}")
    if isinstance(value, int):
        return str(value)
    if _PLAIN.fullmatch(value) and value.lower() not in _YAML_WORDS:
        return value
    # JSON's double-quoted strings are YAML's; ASCII only, and DEL escaped too, because YAML
    # refuses a file with non-printable characters and host text may hold any.
    return json.dumps(value, ensure_ascii=True).replace("\x7f", "\\u007f")


def _comment_suffix(text: str | None) -> str:
    return f"  # {_comment_text(text)}" if text else ""


def _comment_text(text: str) -> str:
    """One line of printable text: host text must not end a comment and start YAML."""
    return "".join(c if c.isprintable() else "?" for c in text)


def todo_count(value: Any) -> int:
    """How many values of a document are still TODO."""
    if isinstance(value, dict):
        return sum(todo_count(v) for v in value.values())
    if isinstance(value, list):
        return sum(todo_count(v) for v in value)
    return int(value == TODO)


__all__ = ["Annotated", "annotate", "render_draft", "todo_count"]
