"""recv-no-outbound (第4号ニ(2)): the receiving server cannot send outward.

Model: no new connection from the host, nor one it would forward for another host, reaches an
external or office network. Probe: egress attempts from the host, with captures on every
external network it touches, show nothing leaving. A pass needs both.
"""

from __future__ import annotations

from auditor.domain.findings import Finding, Judgement, Status
from policies.context import AuditContext
from policies.model import Control
from policies.support.common import Outcome, judge_each
from policies.support.paths import (
    Side,
    Wording,
    empirical_egress,
    joined_no_path,
    model_forwards_outward,
    model_outbound,
    two_sided_outcome,
)


def check(ctx: AuditContext, control: Control) -> list[Finding]:
    return judge_each(ctx, control, lambda host: judge_outward(ctx, host, "受信用サーバ"))


def merge_model(own: Side, forwarded: Side) -> Side:
    """The host's own connections and those it forwards: the worse of the two verdicts. A
    pass rests on the no-path questions of both, examined together for its defence depth."""
    order = [Status.FAIL, Status.INCONCLUSIVE, Status.PASS]
    worst = min((own, forwarded), key=lambda s: order.index(s.judgement.status))
    detail = f"{own.judgement.detail}; {forwarded.judgement.detail}"
    passed = worst.judgement.status is Status.PASS
    return Side(
        Judgement(status=worst.judgement.status, detail=detail),
        worst.path,
        own.evidence + forwarded.evidence,
        joined_no_path(own.no_path, forwarded.no_path) if passed else None,
    )


def judge_outward(ctx: AuditContext, host: str, role_ja: str) -> Outcome:
    model = merge_model(model_outbound(ctx, host), model_forwards_outward(ctx, host))
    wording = Wording(
        fail=(
            f"{host} can open connections toward the outside",
            f"{role_ja} {host} から外部への新規接続が可能である",
        ),
        passed=(
            f"{host} cannot open any connection toward the outside",
            f"{role_ja} {host} から外部への新規接続はできない",
        ),
        undecided=(
            f"cannot decide whether {host} can send outward: {{reason}}",
            f"{role_ja} {host} の外部送信可否を判定できない: {{reason}}",
        ),
        expected="no new connection reaches an external or office network (model and probe)",
    )
    return two_sided_outcome(model, empirical_egress(ctx, host), wording)
