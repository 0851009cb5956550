"""The HTML report, one self-contained file per language (report.ja.html, report.en.html).

Self-contained: CSS and the SVG diagram are inline, fonts are the system's, and a
Content-Security-Policy forbids loading anything, so the file opens offline and from an
unzipped bundle, where its evidence links (relative, by hash) lead to the stored artifacts.
Nothing in it depends on when it was rendered, so rendering a run twice gives the same bytes.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from auditor.domain.files import write_text_atomically
from auditor.domain.findings import Finding, Status, WaiverWarning
from auditor.domain.waivers import waived
from auditor.evidence.store import ArtifactRecord, object_path, parse_ref
from auditor.report.diagram import overlays_for, render_svg
from auditor.report.matrix import Line, ModelCell, ProbeCell, ZoneMatrix, zone_matrix
from auditor.report.run import StoredRun, sorted_findings
from policies.model import Control

Lang = Literal["ja", "en"]
LANGUAGES: tuple[Lang, ...] = ("ja", "en")

#: Worst first: a clause's verdict is the worst of its controls' findings.
SEVERITY_ORDER = (Status.FAIL, Status.INCONCLUSIVE, Status.PASS, Status.NOT_APPLICABLE)
_IROHA = "イロハニホヘトチリヌルヲ"
_CLAUSE = re.compile(r"第(\d+)号(?:([" + _IROHA + r"]))?(?:\((\d+)\))?")

STATUS_LABELS: dict[Lang, dict[Status, str]] = {
    "ja": {
        Status.PASS: "適合",
        Status.FAIL: "不適合",
        Status.INCONCLUSIVE: "判定不能",
        Status.NOT_APPLICABLE: "対象外",
    },
    "en": {
        Status.PASS: "pass",
        Status.FAIL: "fail",
        Status.INCONCLUSIVE: "inconclusive",
        Status.NOT_APPLICABLE: "not applicable",
    },
}

LABELS: dict[Lang, dict[str, str]] = {
    "ja": {
        "title": "技術的安全管理措置 監査報告書",
        "other_language": "English",
        "organisation": "組織",
        "run": "実行ID",
        "started": "開始",
        "finished": "終了",
        "framework": "準拠規範",
        "summary": "条項別の結果",
        "clause": "条項",
        "control": "管理策",
        "verdict": "判定",
        "subjects": "対象",
        "diagram": "ネットワーク構成図",
        "diagram_missing": "インベントリがないため構成図を描けない。",
        "findings": "管理策ごとの結果",
        "rationale": "趣旨",
        "criteria": "判定基準",
        "remediation": "是正方法",
        "no_findings": "この実行では対象がなく、判定していない。",
        "explanation": "説明",
        "expected": "期待される状態",
        "actual": "実際の状態",
        "reason": "判定不能の理由",
        "model": "モデル(設定から導出)",
        "empirical": "実測(プローブ)",
        "disagreement": "モデルと実測の不一致",
        "not_judged": "判定なし",
        "path": "反例の経路",
        "step": "段",
        "host": "ホスト",
        "direction": "方向",
        "network": "ネットワーク",
        "rule": "許可した規則",
        "evidence": "証跡",
        "no_evidence": "参照する証跡なし",
        "artifacts": "収集した証跡",
        "probe": "プローブ",
        "command": "コマンド",
        "tool_version": "ツール版",
        "size": "サイズ",
        "exit": "終了コード",
        "redactions": "秘匿化",
        "scope": "範囲とインベントリ",
        "authorized": "許可された範囲",
        "networks": "ネットワーク",
        "zone": "区分",
        "medium": "回線種別",
        "prefixes": "アドレス",
        "auditor_address": "監査端末のアドレス",
        "tunnels": "トンネル",
        "over": "下位網",
        "endpoints": "端点",
        "hosts": "ホスト",
        "roles": "役割",
        "ssh": "SSH接続先",
        "services": "申告されたサービス",
        "vantage": "観測点",
        "vantage_local": "監査端末(各ネットワーク上)",
        "vantage_hosts": "外部観測用ホスト",
        "run_info": "実行情報とツールの版",
        "tool": "監査ツール",
        "phases": "工程ごとの所要時間",
        "inventory_source": "インベントリ",
        "manifest": "証跡マニフェスト",
        "count": "件数",
        "chain_head": "ハッシュ連鎖の末尾",
        "genesis": "連鎖の起点",
        "probe_versions": "プローブのツール版",
        "integrity": "完全性",
        "signer": "署名鍵の指紋",
        "unsigned": "この報告書は署名付きバンドルとしてまだ作成されていない。",
        "verify_hint": "証跡・連鎖・署名は auditor verify でオフラインに検証できる。",
        "notes": "注記",
        "total": "合計",
        "seconds": "秒",
        "matrix": "区分間の到達性(ゾーンマトリクス)",
        "matrix_missing": "インベントリがないためマトリクスを作れない。",
        "matrix_from_to": "送信元 ＼ 宛先",
        "matrix_same": "同一ネットワーク",
        "matrix_not_modelled": "モデルで判定できない",
        "matrix_not_probed": "未測定",
        "matrix_probe": "実測",
        "matrix_open": "開放",
        "matrix_closed": "開放ポートなし",
        "matrix_escaped": "外向き通信を観測",
        "matrix_quiet": "外向き通信は観測されず",
        "matrix_unobserved": "外向き試験の観測なし",
        "matrix_on": "対象",
        "matrix_from": "送信元",
        "matrix_uncertain": "不確実",
        "matrix_pairs": "組",
        "matrix_grouped": "ネットワークとトンネルが多いため、行と列は区分(ゾーン)ごとにまとめている。",
        "matrix_legend": "凡例",
        "legend_model": "モデル:行のネットワークに接続した、インベントリにない機器(持ち込み端末、侵害された機器)が、列のネットワークのアドレスへ新規接続(TCP、UDP、ICMPエコー)を開始できるか。各ホスト自身の通信は含まない(ホストごとの管理策で判定する)。",
        "legend_yes": "確実に到達する経路がある(通過するプロトコルとポートを併記)",
        "legend_no": "到達する経路はない(すべての段が確実に判定できた)",
        "legend_unknown": "不確実な経路(設定を収集できなかったホストなど)でのみ到達しうる",
        "legend_probe": "実測:行のネットワーク上の観測点からの走査(開放ポートと対象ホスト)と、行のネットワーク上のホストからの外向き試験(外部ネットワークで観測されたか)。空欄は未測定で、「不可」を意味しない。",
        "legend_diagonal": "対角(同一ネットワーク内)はモデルでは問わない。",
        "zone_external": "外部",
        "zone_office": "事務系",
        "zone_protected": "保護区域",
        "zone_tunnel": "トンネル",
        "reach_yes": "到達可",
        "reach_no": "到達不可",
        "reach_unknown": "不明",
        "defence": "防御の多重性",
        "defence_single": "単一の規則にのみ依存",
        "defence_single_warning": "適合だが、次のいずれか一つの規則がなくなるだけで経路が開く。",
        "defence_layered": "多層:どの規則を一つ外しても経路は開かない。",
        "defence_unknown": "多重性は判定できなかった。",
        "defence_examined": "試した規則・ポリシー数",
        "defence_opens": "外した場合に通るもの",
        "single_passes": "単一の規則にのみ依存する適合",
        "single_passes_none": "単一の規則にのみ依存する適合はない。",
        "waiver": "例外承認",
        "waived": "例外承認済み",
        "waived_fails": "例外承認済みの不適合",
        "waiver_in_force_note": "不適合のまま報告するが、承認された例外として期限まで別に数える。",
        "waiver_expired": "例外承認の期限切れ",
        "waiver_expired_note": "この例外承認は期限を過ぎており、もう何も免除しない。この不適合は不適合として数える。",
        "justification": "理由",
        "approved_by": "承認者",
        "expires": "有効期限(この日まで)",
        "accepted_finding": "承認した所見の文言",
        "waiver_warnings": "例外承認の警告",
        "waiver_warnings_none": "例外承認ファイルについての警告はない。",
        "warning_expired": "期限切れ",
        "warning_unmatched": "該当する不適合なし",
        "warning_unknown-control": "不明な管理策",
        "warning_unknown-subject": "不明な対象",
    },
    "en": {
        "title": "Technical safety measures: audit report",
        "other_language": "日本語",
        "organisation": "Organisation",
        "run": "Run id",
        "started": "Started",
        "finished": "Finished",
        "framework": "Framework",
        "summary": "Results by clause",
        "clause": "Clause",
        "control": "Control",
        "verdict": "Verdict",
        "subjects": "Subjects",
        "diagram": "Network topology",
        "diagram_missing": "No inventory was found, so no diagram can be drawn.",
        "findings": "Results per control",
        "rationale": "Rationale",
        "criteria": "Criteria",
        "remediation": "Remediation",
        "no_findings": "No subject in this run: not judged.",
        "explanation": "Explanation",
        "expected": "Expected",
        "actual": "Actual",
        "reason": "Why inconclusive",
        "model": "Model (derived from configuration)",
        "empirical": "Probe (empirical)",
        "disagreement": "Model and probe disagree",
        "not_judged": "not judged",
        "path": "Counterexample path",
        "step": "Step",
        "host": "Host",
        "direction": "Direction",
        "network": "Network",
        "rule": "Rule that allowed it",
        "evidence": "Evidence",
        "no_evidence": "no evidence cited",
        "artifacts": "Collected evidence",
        "probe": "Probe",
        "command": "Command",
        "tool_version": "Tool version",
        "size": "Size",
        "exit": "Exit",
        "redactions": "Redactions",
        "scope": "Scope and inventory",
        "authorized": "Authorized scope",
        "networks": "Networks",
        "zone": "Zone",
        "medium": "Medium",
        "prefixes": "Prefixes",
        "auditor_address": "Auditor's address",
        "tunnels": "Tunnels",
        "over": "Over",
        "endpoints": "Endpoints",
        "hosts": "Hosts",
        "roles": "Roles",
        "ssh": "SSH address",
        "services": "Declared services",
        "vantage": "Vantage points",
        "vantage_local": "The auditor's machine (on each network)",
        "vantage_hosts": "Outside vantage hosts",
        "run_info": "Run, tool versions and times",
        "tool": "Auditor",
        "phases": "Time per phase",
        "inventory_source": "Inventory",
        "manifest": "Evidence manifest",
        "count": "Count",
        "chain_head": "Chain head",
        "genesis": "Chain genesis",
        "probe_versions": "Probe tool versions",
        "integrity": "Integrity",
        "signer": "Signing key fingerprint",
        "unsigned": "This report has not been signed into a bundle yet.",
        "verify_hint": "Evidence, chain and signature can be checked offline with auditor verify.",
        "notes": "Notes",
        "total": "Total",
        "seconds": "s",
        "matrix": "Reachability between networks (zone matrix)",
        "matrix_missing": "No inventory was found, so no matrix can be drawn.",
        "matrix_from_to": "from \\ to",
        "matrix_same": "same network",
        "matrix_not_modelled": "not answered by the model",
        "matrix_not_probed": "not probed",
        "matrix_probe": "probe",
        "matrix_open": "open",
        "matrix_closed": "nothing open",
        "matrix_escaped": "egress seen",
        "matrix_quiet": "egress: nothing seen",
        "matrix_unobserved": "egress not observed",
        "matrix_on": "on",
        "matrix_from": "from",
        "matrix_uncertain": "uncertain",
        "matrix_pairs": "pairs",
        "matrix_grouped": "There are many networks and tunnels: rows and columns are grouped by zone.",
        "matrix_legend": "Legend",
        "legend_model": "Model: can a device on the row's network that is not in the inventory (a laptop plugged in, a compromised appliance) open NEW connections (TCP, UDP, ICMP echo) to addresses of the column's network? Hosts' own connections are not shown here (the per-host controls judge them).",
        "legend_yes": "a certain path exists (the protocols and ports that get through are listed)",
        "legend_no": "no path, and every step was decided with certainty",
        "legend_unknown": "only uncertain paths (hosts whose configuration was not collected, …)",
        "legend_probe": "Probe: scans from a vantage point on the row's network (open ports and their hosts) and egress tests from hosts on the row's network (whether anything was seen leaving). Blank means not probed, never \"no\".",
        "legend_diagonal": "The diagonal (within one network) is not asked of the model.",
        "zone_external": "external",
        "zone_office": "office",
        "zone_protected": "protected",
        "zone_tunnel": "tunnels",
        "reach_yes": "yes",
        "reach_no": "no",
        "reach_unknown": "unknown",
        "defence": "Defence depth",
        "defence_single": "held by a single rule",
        "defence_single_warning": "Pass, but removing any one of these rules alone would open a path.",
        "defence_layered": "Layered: no single rule's removal opens a path.",
        "defence_unknown": "The depth could not be decided.",
        "defence_examined": "Rules and policies tried",
        "defence_opens": "What would get through without it",
        "single_passes": "Passes held by a single rule",
        "single_passes_none": "No pass is held by a single rule.",
        "waiver": "Waiver",
        "waived": "waived",
        "waived_fails": "waived fail",
        "waiver_in_force_note": "Still a fail, counted apart as an accepted deviation until the waiver expires.",
        "waiver_expired": "waiver expired",
        "waiver_expired_note": "This waiver is past its last day and waives nothing any more: the fail counts.",
        "justification": "Justification",
        "approved_by": "Approved by",
        "expires": "Last day in force",
        "accepted_finding": "Finding text accepted",
        "waiver_warnings": "Waiver warnings",
        "waiver_warnings_none": "The waivers file raised no warning.",
        "warning_expired": "expired",
        "warning_unmatched": "accepts nothing",
        "warning_unknown-control": "unknown control",
        "warning_unknown-subject": "unknown subject",
    },
}


# -- the view model -------------------------------------------------------------------------


@dataclass(frozen=True)
class EvidenceLink:
    ref: str
    href: str
    short: str
    described: str  #: "proc-srv · ssh-host · nft -j list ruleset", or "" when not in the index
    known: bool


@dataclass
class FindingView:
    finding: Finding
    anchor: str
    summary: str
    evidence: list[EvidenceLink]
    hops: list[dict[str, Any]]
    path_number: int | None = None

    @property
    def single_held(self) -> bool:
        """A pass that one rule's removal would turn into a fail: shown with a warning."""
        defence = self.finding.defence
        return (
            self.finding.status is Status.PASS and defence is not None and defence.depth == "single"
        )

    @property
    def waiver_state(self) -> Literal["in-force", "expired"] | None:
        """How the finding's waiver stands: an expired one is shown too, saying so."""
        applied = self.finding.waiver
        if applied is None:
            return None
        return "in-force" if applied.in_force else "expired"


@dataclass
class ControlView:
    id: str
    anchor: str
    clauses: list[str]
    title: str
    other_title: str
    rationale: str
    criteria: str
    remediation: str
    severity: str
    supporting: bool
    counts: dict[Status, int]  #: a waived fail is not among the fails: see ``waived``
    verdict: Status | None
    findings: list[FindingView] = field(default_factory=list)
    waived: int = 0  #: fails accepted by a waiver in force

    @property
    def single_held(self) -> int:
        return sum(1 for view in self.findings if view.single_held)


def clause_key(clause: str) -> tuple[int, int, int, str]:
    """Sort clauses as the regulation numbers them: 第3号 < 第4号イ < 第4号ロ < 第4号ニ(1)."""
    match = _CLAUSE.search(clause)
    if match is None:
        return (10**6, 0, 0, clause)
    number, kana, sub = match.groups()
    return (int(number), _IROHA.index(kana) + 1 if kana else 0, int(sub) if sub else 0, clause)


def status_counts(findings: list[Finding]) -> Counter[Status]:
    """Findings per status, a waived fail left out: it is counted apart (``waived_count``),
    so that the fails counted are the ones that fail the run, as on the console."""
    return Counter(f.status for f in findings if not waived(f))


def waived_count(findings: list[Finding]) -> int:
    return sum(1 for f in findings if waived(f))


def worst(statuses: list[Status]) -> Status | None:
    for status in SEVERITY_ORDER:
        if status in statuses:
            return status
    return None


def anchor_for(control: str, subject: str) -> str:
    return "finding-" + re.sub(r"[^a-z0-9_.-]", "_", f"{control}--{subject}".lower())


def evidence_link(run: StoredRun, ref: str) -> EvidenceLink:
    try:
        sha = parse_ref(ref)
    except ValueError:
        return EvidenceLink(ref, "", ref, "", known=False)
    record = run.artifact(ref)
    described = _describe(record) if record is not None else ""
    return EvidenceLink(ref, object_path(sha), f"sha256:{sha[:16]}…", described, record is not None)


def _describe(record: ArtifactRecord) -> str:
    return " · ".join(x for x in (record.host or "(auditor)", record.probe, record.command) if x)


def _hop_rows(run: StoredRun, finding: Finding) -> list[dict[str, Any]]:
    return [
        {
            "step": n,
            "hop": hop,
            "evidence": [evidence_link(run, ref) for ref in hop.evidence],
        }
        for n, hop in enumerate(finding.path, start=1)
    ]


def control_views(run: StoredRun, lang: Lang) -> list[ControlView]:
    by_control: dict[str, list[Finding]] = {}
    for finding in sorted_findings(run.findings, run.controls):
        by_control.setdefault(finding.control, []).append(finding)
    path_numbers = _path_numbers(run)
    views = [
        _control_view(run, control, by_control.get(control.id, []), lang, path_numbers)
        for control in run.controls.values()
    ]
    views += [
        _unknown_control_view(run, control_id, findings, lang, path_numbers)
        for control_id, findings in by_control.items()
        if control_id not in run.controls
    ]
    # Within a clause, the control proper before the supporting ones.
    return sorted(
        views,
        key=lambda v: (clause_key(v.clauses[0]) if v.clauses else (10**6,), v.supporting, v.id),
    )


def _path_numbers(run: StoredRun) -> dict[tuple[str, str], int]:
    """The number each failing path carries on the diagram (1, 2, … in report order)."""
    failing = [
        f for f in sorted_findings(run.findings, run.controls) if f.status is Status.FAIL and f.path
    ]
    return {(f.control, f.subject): n for n, f in enumerate(failing, start=1)}


def _finding_view(
    run: StoredRun, finding: Finding, lang: Lang, path_numbers: dict[tuple[str, str], int]
) -> FindingView:
    return FindingView(
        finding=finding,
        anchor=anchor_for(finding.control, finding.subject),
        summary=finding.summary_ja if lang == "ja" else finding.summary,
        evidence=[evidence_link(run, ref) for ref in finding.evidence],
        hops=_hop_rows(run, finding),
        path_number=path_numbers.get((finding.control, finding.subject)),
    )


def _control_view(
    run: StoredRun,
    control: Control,
    findings: list[Finding],
    lang: Lang,
    path_numbers: dict[tuple[str, str], int],
) -> ControlView:
    other: Lang = "en" if lang == "ja" else "ja"
    return ControlView(
        id=control.id,
        anchor=f"control-{control.id}",
        clauses=list(control.clauses),
        title=getattr(control.title, lang),
        other_title=getattr(control.title, other),
        rationale=getattr(control.rationale, lang),
        criteria=getattr(control.criteria, lang),
        remediation=getattr(control.remediation, lang),
        severity=control.severity,
        supporting=control.supporting,
        counts=status_counts(findings),
        verdict=worst([f.status for f in findings]),
        findings=[_finding_view(run, f, lang, path_numbers) for f in findings],
        waived=waived_count(findings),
    )


def _unknown_control_view(
    run: StoredRun,
    control_id: str,
    findings: list[Finding],
    lang: Lang,
    path_numbers: dict[tuple[str, str], int],
) -> ControlView:
    """A finding of a control this version does not ship: shown, never dropped."""
    clauses = findings[0].clauses if findings else []
    return ControlView(
        id=control_id,
        anchor=f"control-{control_id}",
        clauses=clauses,
        title=control_id,
        other_title=control_id,
        rationale="",
        criteria="",
        remediation="",
        severity="",
        supporting=False,
        counts=status_counts(findings),
        verdict=worst([f.status for f in findings]),
        findings=[_finding_view(run, f, lang, path_numbers) for f in findings],
        waived=waived_count(findings),
    )


def _diagram(run: StoredRun, lang: Lang) -> Markup | None:
    if run.topology is None:
        return None
    failing = [
        f for f in sorted_findings(run.findings, run.controls) if f.status is Status.FAIL and f.path
    ]
    anchors = {(f.control, f.subject): anchor_for(f.control, f.subject) for f in failing}
    # Built from escaped parts only (see diagram.py), so it can be inserted as markup.
    return Markup(render_svg(run.topology, overlays_for(failing, anchors), lang))


def _vantage(run: StoredRun) -> dict[str, Any]:
    inventory = run.inventory
    if inventory is None:
        return {"local": [], "hosts": []}
    local = [
        (name, [str(a) for a in (network.auditor.ipv4, network.auditor.ipv6) if a is not None])
        for name, network in inventory.networks.items()
        if network.auditor is not None
    ]
    hosts = [
        (name, [str(a) for a in host.all_addresses()])
        for name, host in inventory.hosts.items()
        if "vantage" in {r.value for r in host.roles}
    ]
    return {"local": local, "hosts": hosts}


@dataclass(frozen=True)
class MatrixCell:
    source: str
    destination: str
    model: ModelCell | None
    probe: ProbeCell
    same: bool  #: a network to itself (the diagonal of a network matrix)
    unmodelled: str | None  #: why the model did not answer this row


@dataclass(frozen=True)
class MatrixView:
    matrix: ZoneMatrix
    zone_groups: list[tuple[str, int]]  #: consecutive columns of one zone, for the header
    rows: list[tuple[Line, list[MatrixCell]]]


def matrix_view(matrix: ZoneMatrix | None) -> MatrixView | None:
    if matrix is None:
        return None
    groups: list[tuple[str, int]] = []
    for line in matrix.lines:
        if groups and groups[-1][0] == line.zone:
            groups[-1] = (line.zone, groups[-1][1] + 1)
        else:
            groups.append((line.zone, 1))
    rows = [(source, _matrix_row(matrix, source)) for source in matrix.lines]
    return MatrixView(matrix, groups, rows)


def _matrix_row(matrix: ZoneMatrix, source: Line) -> list[MatrixCell]:
    return [
        MatrixCell(
            source=source.name,
            destination=column.name,
            model=matrix.model_cell(source.name, column.name),
            probe=matrix.probe_cell(source.name, column.name),
            same=source.name == column.name and not matrix.grouped,
            unmodelled=matrix.unmodelled.get(source.name),
        )
        for column in matrix.lines
    ]


def warning_rows(warnings: list[WaiverWarning], lang: Lang) -> list[dict[str, str]]:
    """The waivers file's warnings as the report lists them; the anchor leads to the finding
    the waiver names (absent for an unknown control or subject)."""
    return [
        {
            "kind": LABELS[lang].get(f"warning_{w.kind}", w.kind),
            "control": w.control,
            "subject": w.subject,
            "message": w.message,
            "anchor": anchor_for(w.control, w.subject)
            if w.kind in ("expired", "unmatched")
            else "",
        }
        for w in warnings
    ]


def single_held_passes(controls: list[ControlView]) -> list[FindingView]:
    return [view for control in controls for view in control.findings if view.single_held]


def build_context(run: StoredRun, lang: Lang, matrix: ZoneMatrix | None = None) -> dict[str, Any]:
    """``matrix``: the run's zone matrix when the caller already has it (both languages share
    one); computed here otherwise."""
    controls = control_views(run, lang)
    counts = Counter(f.status for f in run.findings)
    warnings = run.document.waiver_warnings
    other: Lang = "en" if lang == "ja" else "ja"
    return {
        "lang": lang,
        "t": LABELS[lang],
        "status_label": STATUS_LABELS[lang],
        "statuses": list(Status),
        "other_href": report_filename(other),
        "run": run,
        "info": run.document.run,
        "framework": run.framework,
        "controls": controls,
        "counts": status_counts(run.findings),
        "overall": worst(list(counts)),  # a waived fail is still a fail
        "waived_count": waived_count(run.findings),
        # Shown when a waivers file was applied, even if it waived nothing: its warnings say why.
        "waivers_applied": warnings is not None or any(f.waiver for f in run.findings),
        "waiver_warnings": warning_rows(warnings or [], lang),
        "diagram": _diagram(run, lang),
        "matrix": matrix_view(matrix if matrix is not None else zone_matrix(run)),
        "single_passes": single_held_passes(controls),
        "artifacts": [(record, evidence_link(run, record.ref)) for record in run.artifacts],
        "inventory": run.inventory,
        "vantage": _vantage(run),
        "tool_versions": run.tool_versions(),
        "manifest": run.manifest or {},
    }


# -- rendering ------------------------------------------------------------------------------


def report_filename(lang: Lang) -> str:
    return f"report.{lang}.html"


@cache
def _environment() -> Environment:
    templates = Path(str(resources.files("auditor.report") / "templates"))
    return Environment(
        loader=FileSystemLoader(templates),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_html(run: StoredRun, lang: Lang, matrix: ZoneMatrix | None = None) -> str:
    context = build_context(run, lang, matrix)
    return _environment().get_template("report.html.j2").render(**context)


def write_html_reports(run: StoredRun) -> list[Path]:
    written = []
    # One matrix for both languages: it costs one reachability search per network.
    matrix = zone_matrix(run)
    for lang in LANGUAGES:
        path = run.run_dir / report_filename(lang)
        # 0600 and never through a symlink: the report shows every host's configuration.
        write_text_atomically(path, render_html(run, lang, matrix), refuse_link=True)
        written.append(path)
    return written
