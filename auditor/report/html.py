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
from auditor.domain.findings import Finding, Status
from auditor.evidence.store import ArtifactRecord, object_path, parse_ref
from auditor.report.diagram import overlays_for, render_svg
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
    counts: dict[Status, int]
    verdict: Status | None
    findings: list[FindingView] = field(default_factory=list)


def clause_key(clause: str) -> tuple[int, int, int, str]:
    """Sort clauses as the regulation numbers them: 第3号 < 第4号イ < 第4号ロ < 第4号ニ(1)."""
    match = _CLAUSE.search(clause)
    if match is None:
        return (10**6, 0, 0, clause)
    number, kana, sub = match.groups()
    return (int(number), _IROHA.index(kana) + 1 if kana else 0, int(sub) if sub else 0, clause)


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
        counts=Counter(f.status for f in findings),
        verdict=worst([f.status for f in findings]),
        findings=[_finding_view(run, f, lang, path_numbers) for f in findings],
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
        counts=Counter(f.status for f in findings),
        verdict=worst([f.status for f in findings]),
        findings=[_finding_view(run, f, lang, path_numbers) for f in findings],
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


def build_context(run: StoredRun, lang: Lang) -> dict[str, Any]:
    controls = control_views(run, lang)
    counts = Counter(f.status for f in run.findings)
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
        "counts": counts,
        "overall": worst(list(counts)),
        "diagram": _diagram(run, lang),
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


def render_html(run: StoredRun, lang: Lang) -> str:
    return _environment().get_template("report.html.j2").render(**build_context(run, lang))


def write_html_reports(run: StoredRun) -> list[Path]:
    written = []
    for lang in LANGUAGES:
        path = run.run_dir / report_filename(lang)
        # 0600 and never through a symlink: the report shows every host's configuration.
        write_text_atomically(path, render_html(run, lang), refuse_link=True)
        written.append(path)
    return written
