"""The topology diagram: an inline SVG drawn from the networkx graph, with failing paths on it.

Layout, deterministic (no randomness, no force simulation, so the same run always gives the
same picture and tests can point at elements):

* columns are the distance from the outside: other organisations' and vantage hosts in column
  0, external segments in column 1, then a breadth-first walk inward (hosts and segments
  alternate), so the certified area's depth reads left to right;
* zones are horizontal bands (external, protected, office, unknown), each drawn as a region;
  a node sits in the band of its zone (a host in the zone of its role);
* inside a band, a node is placed at the average height of its already placed neighbours
  (then pushed down to avoid overlap), which keeps chains such as receiving server → dedicated
  line → processing server on one line.

Segments are drawn by medium: tunnels dashed, dedicated lines thick, IP-VPN dash-dotted. Each
failing finding's path (its hops) is an overlay polyline of class ``path-highlight``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

import networkx as nx

from auditor.domain.findings import Finding, Hop
from auditor.domain.inventory import ORGANISATION_ROLES, Role, Zone
from topology.graph import Topology, host_node, segment_node

COLUMN_WIDTH = 170
ROW_HEIGHT = 62
BAND_PADDING = 34
MARGIN = 16
BAND_LABEL_WIDTH = 26
HOST_W, HOST_H = 128, 40
SEGMENT_W, SEGMENT_H = 138, 34
LEGEND_HEIGHT = 46

#: Bands from top to bottom; "unknown" holds segments nobody declared.
BANDS: tuple[str, ...] = ("external", "protected", "office", "unknown")
#: Distinct, print-safe colours for up to this many highlighted paths (then they repeat).
PATH_COLOURS = ("#d62728", "#ff7f0e", "#9467bd", "#e377c2", "#8c564b", "#bcbd22")

BAND_LABELS = {
    "en": {
        "external": "External (Internet, carriers, other organisations)",
        "protected": "Protected area (certified)",
        "office": "Office",
        "unknown": "Undeclared",
    },
    "ja": {
        "external": "外部(インターネット・通信事業者・他組織)",
        "protected": "保護区画(認定範囲)",
        "office": "事務系",
        "unknown": "未登録",
    },
}
LEGEND_LABELS = {
    "en": {
        "lan": "LAN",
        "leased-line": "dedicated line",
        "ip-vpn": "IP-VPN",
        "internet": "Internet",
        "tunnel": "tunnel (encrypted)",
        "underlay": "tunnel runs over",
        "path": "failing path",
    },
    "ja": {
        "lan": "LAN",
        "leased-line": "専用線",
        "ip-vpn": "IP-VPN",
        "internet": "インターネット",
        "tunnel": "トンネル(暗号化)",
        "underlay": "トンネルの下位網",
        "path": "不適合の経路",
    },
}


@dataclass(frozen=True)
class PathOverlay:
    """One failing finding's path to draw: its anchor in the report and its hops."""

    finding_id: str  #: the id of the finding's section in the report (for the link)
    label: str  #: "recv-no-outbound / recv-srv"
    hops: tuple[Hop, ...]


@dataclass
class Placement:
    node: str
    column: int
    band: str
    row: float = 0.0
    x: float = 0.0
    y: float = 0.0


@dataclass
class Layout:
    placements: dict[str, Placement] = field(default_factory=dict)
    band_top: dict[str, float] = field(default_factory=dict)
    band_height: dict[str, float] = field(default_factory=dict)
    width: float = 0.0
    height: float = 0.0
    legend_top: float = 0.0


def overlays_for(
    findings: Iterable[Finding], anchor: Mapping[tuple[str, str], str]
) -> list[PathOverlay]:
    """The overlays of the findings that carry a path, in the order given."""
    return [
        PathOverlay(anchor[(f.control, f.subject)], f"{f.control} / {f.subject}", tuple(f.path))
        for f in findings
        if f.path
    ]


# -- classification -----------------------------------------------------------------------


def _roles(graph: nx.Graph, node: str) -> tuple[Role, ...]:
    model = graph.nodes[node].get("model")
    return tuple(model.roles) if model is not None else ()


def home_band(graph: nx.Graph, node: str) -> str:
    """The band a node is drawn in: a segment's zone, or the zone a host's role belongs to."""
    data = graph.nodes[node]
    if data.get("kind") != "host":
        zone = data.get("zone")
        return str(zone.value if isinstance(zone, Zone) else zone) if zone else "unknown"
    roles = set(_roles(graph, node))
    if roles & ORGANISATION_ROLES:
        return "protected"
    if roles & {Role.ROUTER, Role.OFFICE}:
        return "office"
    return "external"


def _is_outside_host(graph: nx.Graph, node: str) -> bool:
    return graph.nodes[node].get("kind") == "host" and home_band(graph, node) == "external"


def _attachments(graph: nx.Graph) -> nx.Graph:
    """The host–segment edges only (a tunnel's underlay edge is drawn, not walked)."""
    view = nx.Graph()
    view.add_nodes_from(sorted(graph.nodes))
    view.add_edges_from(
        sorted((u, v) for u, v, kind in graph.edges(data="kind") if kind == "attachment")
    )
    return view


# -- columns --------------------------------------------------------------------------------


def assign_columns(graph: nx.Graph) -> dict[str, int]:
    """Distance from the outside, as described in the module docstring."""
    walk = _attachments(graph)
    columns: dict[str, int] = {n: 0 for n in sorted(walk.nodes) if _is_outside_host(graph, n)}
    seeds = [
        n for n in sorted(walk.nodes) if n not in columns and home_band(graph, n) == "external"
    ]
    _breadth_first(walk, [(s, 1) for s in seeds if graph.nodes[s].get("kind") != "host"], columns)
    # Parts that no external segment reaches (an isolated protected island) start on their own.
    for node in sorted(walk.nodes):
        if node not in columns:
            start = 1 if graph.nodes[node].get("kind") != "host" else 2
            _breadth_first(walk, [(node, start)], columns)
    return columns


def _breadth_first(walk: nx.Graph, seeds: list[tuple[str, int]], columns: dict[str, int]) -> None:
    queue: deque[str] = deque()
    for node, column in seeds:
        if node not in columns:
            columns[node] = column
            queue.append(node)
    while queue:
        node = queue.popleft()
        for neighbour in sorted(walk.neighbors(node)):
            if neighbour not in columns:
                columns[neighbour] = columns[node] + 1
                queue.append(neighbour)


# -- rows -----------------------------------------------------------------------------------


def compute_layout(graph: nx.Graph) -> Layout:
    columns = assign_columns(graph)
    walk = _attachments(graph)
    placements = {n: Placement(n, columns[n], home_band(graph, n)) for n in sorted(columns)}
    for column in sorted(set(columns.values())):
        for band in BANDS:
            members = [p for p in placements.values() if p.column == column and p.band == band]
            _place_rows(members, walk, placements)
    # A second look re-centres the outside hosts (column 0) on the segments they touch.
    for band in BANDS:
        members = [p for p in placements.values() if p.column == 0 and p.band == band]
        _place_rows(members, walk, placements, look_right=True)
    return _coordinates(placements)


def _placed_neighbours(
    node: str, walk: nx.Graph, placements: Mapping[str, Placement], look_right: bool
) -> list[Placement]:
    me = placements[node]
    found = []
    for neighbour in walk.neighbors(node):
        other = placements[neighbour]
        if (other.column > me.column) if look_right else (other.column < me.column):
            found.append(other)
    return found


def _place_rows(
    members: list[Placement],
    walk: nx.Graph,
    placements: Mapping[str, Placement],
    look_right: bool = False,
) -> None:
    """Give each member a row: the mean row of its placed neighbours in the same band, pushed
    down past the member above; members are ordered by where all their neighbours are."""

    def wanted(p: Placement) -> tuple[float, str, float | None]:
        near = _placed_neighbours(p.node, walk, placements, look_right)
        same = [n.row for n in near if n.band == p.band]
        everywhere = [BANDS.index(n.band) * 1000 + n.row for n in near]
        order = sum(everywhere) / len(everywhere) if everywhere else float("inf")
        desired = sum(same) / len(same) if same else (p.row if look_right else None)
        return (order, p.node, desired)

    ranked = sorted(wanted(p) for p in members)
    by_name = {p.node: p for p in members}
    next_free = 0.0
    for _, name, desired in ranked:
        placement = by_name[name]
        placement.row = next_free if desired is None else max(next_free, desired)
        next_free = placement.row + 1


def _coordinates(placements: Mapping[str, Placement]) -> Layout:
    layout = Layout(placements=dict(placements))
    top = float(MARGIN)
    for band in BANDS:
        rows = [p.row for p in placements.values() if p.band == band]
        if not rows:
            continue
        height = (max(rows) + 1) * ROW_HEIGHT + BAND_PADDING
        layout.band_top[band], layout.band_height[band] = top, height
        top += height + 8
    columns = max((p.column for p in placements.values()), default=0) + 1
    for p in placements.values():
        p.x = MARGIN + BAND_LABEL_WIDTH + COLUMN_WIDTH * p.column + COLUMN_WIDTH / 2
        p.y = layout.band_top[p.band] + BAND_PADDING / 2 + ROW_HEIGHT * p.row + ROW_HEIGHT / 2
    layout.width = MARGIN * 2 + BAND_LABEL_WIDTH + COLUMN_WIDTH * columns
    layout.legend_top = top
    layout.height = top + LEGEND_HEIGHT
    return layout


# -- paths ----------------------------------------------------------------------------------


def path_nodes(hops: Sequence[Hop]) -> list[str]:
    """The graph nodes a path passes, in order.

    Consecutive hops at one host are one visit: the packet enters from the network of the
    visit's first hop when that is an input hop, and leaves to the network of its last hop
    unless that is an input hop (the packet ends there).
    """
    sequence: list[str] = []
    for visit in _visits(hops):
        first, last = visit[0], visit[-1]
        entry = first.network if first.direction == "input" else None
        leave = last.network if last.direction != "input" else None
        for node in (
            segment_node(entry) if entry else None,
            host_node(first.host),
            segment_node(leave) if leave else None,
        ):
            if node is not None and (not sequence or sequence[-1] != node):
                sequence.append(node)
    return sequence


def _visits(hops: Sequence[Hop]) -> list[list[Hop]]:
    visits: list[list[Hop]] = []
    for hop in hops:
        if visits and visits[-1][-1].host == hop.host:
            visits[-1].append(hop)
        else:
            visits.append([hop])
    return visits


# -- drawing --------------------------------------------------------------------------------


def render_svg(topology: Topology, overlays: Sequence[PathOverlay], lang: str) -> str:
    """The diagram as one ``<svg>`` element (no external reference: fonts come from the page)."""
    graph = topology.graph
    layout = compute_layout(graph)
    layout.height += 20 * len(overlays)
    on_path = {n for overlay in overlays for n in path_nodes(overlay.hops)}
    layout.width = max(layout.width, MARGIN * 2 + BAND_LABEL_WIDTH + 900)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="topology" role="img" '
        f'viewBox="0 0 {layout.width:.0f} {layout.height:.0f}" '
        f'width="{layout.width:.0f}" height="{layout.height:.0f}">',
        f"<title>{escape(_diagram_title(lang))}</title>",
        *_bands(layout, lang),
        *_edges(graph, layout),
        *_overlays(overlays, layout),
        *_segments(graph, layout, on_path),
        *_hosts(graph, layout, on_path),
        *_markers(overlays, layout),
        *_legend(layout, overlays, lang),
        "</svg>",
    ]
    return "\n".join(parts)


def _diagram_title(lang: str) -> str:
    return "ネットワーク構成図" if lang == "ja" else "Network topology"


def _bands(layout: Layout, lang: str) -> list[str]:
    out = []
    for band, top in layout.band_top.items():
        height = layout.band_height[band]
        label = escape(BAND_LABELS[lang][band])
        label_x = MARGIN + 14
        label_y = top + height / 2
        out.append(
            f'<g class="zone zone-{band}" data-zone="{band}">'
            f'<rect x="{MARGIN}" y="{top:.1f}" width="{layout.width - 2 * MARGIN:.0f}" '
            f'height="{height:.1f}" rx="10"/>'
            f'<text class="zone-label" x="{label_x}" y="{label_y:.1f}" '
            f'transform="rotate(-90 {label_x} {label_y:.1f})" text-anchor="middle">{label}</text>'
            "</g>"
        )
    return out


def _edge_class(graph: nx.Graph, segment: str) -> str:
    data = graph.nodes[segment]
    if data.get("kind") == "tunnel":
        return "link link-tunnel"
    medium = data.get("medium")
    medium_name = getattr(medium, "value", medium) or "unknown"
    return f"link link-{medium_name}"


def _edges(graph: nx.Graph, layout: Layout) -> list[str]:
    out = []
    for u, v, kind in sorted(graph.edges(data="kind")):
        a, b = layout.placements.get(u), layout.placements.get(v)
        if a is None or b is None:
            continue
        if kind == "underlay":
            # Curved, so that it does not run over the segments between the two in a column.
            bend = max(a.x, b.x) + COLUMN_WIDTH * 0.45
            out.append(
                f'<path class="underlay" d="M{a.x:.1f},{a.y:.1f} Q{bend:.1f},{(a.y + b.y) / 2:.1f} '
                f'{b.x:.1f},{b.y:.1f}"/>'
            )
            continue
        segment = u if u.startswith("segment:") else v
        out.append(
            f'<line class="{_edge_class(graph, segment)}" x1="{a.x:.1f}" y1="{a.y:.1f}" '
            f'x2="{b.x:.1f}" y2="{b.y:.1f}"/>'
        )
    return out


def _path_class(node: str, on_path: set[str]) -> str:
    return " on-path" if node in on_path else ""


def _segments(graph: nx.Graph, layout: Layout, on_path: set[str]) -> list[str]:
    out = []
    for node, p in sorted(layout.placements.items()):
        data = graph.nodes[node]
        if data.get("kind") == "host":
            continue
        name = node.removeprefix("segment:")
        medium = getattr(data.get("medium"), "value", data.get("medium")) or "unknown"
        kind = data.get("kind", "network")
        label = "tunnel" if kind == "tunnel" else medium
        prefixes = ", ".join(data.get("prefixes") or [])
        out.append(
            f'<g class="node segment segment-{kind} medium-{medium}{_path_class(node, on_path)}" '
            f'id="node-segment-{_id(name)}" '
            f'data-node="{escape(name)}">'
            f"<title>{escape(name)}: {escape(prefixes)}</title>"
            f'<rect x="{p.x - SEGMENT_W / 2:.1f}" y="{p.y - SEGMENT_H / 2:.1f}" '
            f'width="{SEGMENT_W}" height="{SEGMENT_H}" rx="{SEGMENT_H / 2:.0f}"/>'
            f'<text x="{p.x:.1f}" y="{p.y - 2:.1f}" text-anchor="middle" class="name">{escape(name)}</text>'
            f'<text x="{p.x:.1f}" y="{p.y + 11:.1f}" text-anchor="middle" class="sub">{escape(label)}</text>'
            "</g>"
        )
    return out


def _hosts(graph: nx.Graph, layout: Layout, on_path: set[str]) -> list[str]:
    out = []
    for node, p in sorted(layout.placements.items()):
        if graph.nodes[node].get("kind") != "host":
            continue
        name = node.removeprefix("host:")
        roles = [r.value for r in _roles(graph, node)]
        role_classes = " ".join(f"role-{r}" for r in roles)
        out.append(
            f'<g class="node host {role_classes}{_path_class(node, on_path)}" '
            f'id="node-host-{_id(name)}" data-node="{escape(name)}">'
            f"<title>{escape(name)} ({escape(', '.join(roles))})</title>"
            f'<rect x="{p.x - HOST_W / 2:.1f}" y="{p.y - HOST_H / 2:.1f}" width="{HOST_W}" '
            f'height="{HOST_H}" rx="5"/>'
            f'<text x="{p.x:.1f}" y="{p.y - 3:.1f}" text-anchor="middle" class="name">{escape(name)}</text>'
            f'<text x="{p.x:.1f}" y="{p.y + 12:.1f}" text-anchor="middle" class="sub">'
            f"{escape(' / '.join(roles))}</text>"
            "</g>"
        )
    return out


def _overlay_points(overlay: PathOverlay, layout: Layout, number: int) -> list[tuple[float, float]]:
    # Each path is offset a little, so that two paths over the same hops stay apart.
    shift = (number % 4) * 4 - 6
    return [
        (layout.placements[n].x + shift, layout.placements[n].y + shift)
        for n in path_nodes(overlay.hops)
        if n in layout.placements
    ]


def _overlays(overlays: Sequence[PathOverlay], layout: Layout) -> list[str]:
    """The paths, drawn under the nodes so that names stay readable."""
    out = []
    for number, overlay in enumerate(overlays):
        points = _overlay_points(overlay, layout, number)
        if not points:
            continue
        colour = PATH_COLOURS[number % len(PATH_COLOURS)]
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        out.append(
            f'<g class="path-highlight" id="path-{escape(overlay.finding_id)}" '
            f'data-finding="{escape(overlay.label)}" data-path-number="{number + 1}" '
            f'style="--path-colour:{colour}">'
            f"<title>{escape(overlay.label)}</title>"
            f'<polyline points="{coords}"/>'
            "</g>"
        )
    return out


def _markers(overlays: Sequence[PathOverlay], layout: Layout) -> list[str]:
    """The path's number at its start (the node's top-left corner), linking to the finding."""
    out = []
    for number, overlay in enumerate(overlays):
        points = _overlay_points(overlay, layout, number)
        if not points:
            continue
        colour = PATH_COLOURS[number % len(PATH_COLOURS)]
        x, y = points[0][0] - HOST_W / 2, points[0][1] - HOST_H / 2
        out.append(
            f'<a href="#{escape(overlay.finding_id)}">'
            f'<g class="path-marker" style="--path-colour:{colour}">'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9"/>'
            f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle">{number + 1}</text>'
            "</g></a>"
        )
    return out


def _legend(layout: Layout, overlays: Sequence[PathOverlay], lang: str) -> list[str]:
    labels = LEGEND_LABELS[lang]
    top = layout.legend_top + 18
    x = float(MARGIN + BAND_LABEL_WIDTH)
    out = ['<g class="legend">']
    for key, css in (
        ("lan", "link link-lan"),
        ("leased-line", "link link-leased-line"),
        ("ip-vpn", "link link-ip-vpn"),
        ("internet", "link link-internet"),
        ("tunnel", "link link-tunnel"),
        ("underlay", "underlay"),
    ):
        out.append(
            f'<line class="{css}" x1="{x:.0f}" y1="{top}" x2="{x + 34:.0f}" y2="{top}"/>'
            f'<text x="{x + 40:.0f}" y="{top + 4}">{escape(labels[key])}</text>'
        )
        x += 150
    for number, overlay in enumerate(overlays):
        colour = PATH_COLOURS[number % len(PATH_COLOURS)]
        lx = MARGIN + BAND_LABEL_WIDTH
        ly = top + 26 + number * 20
        out.append(
            f'<g class="legend-path" style="--path-colour:{colour}">'
            f'<line x1="{lx}" y1="{ly}" x2="{lx + 34}" y2="{ly}"/>'
            f'<text x="{lx + 40}" y="{ly + 4}">{number + 1}: {escape(labels["path"])} '
            f"{escape(overlay.label)}</text></g>"
        )
    out.append("</g>")
    return out


def _id(name: str) -> str:
    """A name as it appears in element ids (names are already [a-z0-9._-], but unmapped
    segments carry a prefix with ':' and '/')."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def diagram_facts(layout: Layout) -> dict[str, Any]:
    """Positions by node, for tests and for anyone checking the layout is stable."""
    return {n: (p.column, p.band, p.row) for n, p in sorted(layout.placements.items())}
