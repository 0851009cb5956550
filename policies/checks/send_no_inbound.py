"""send-no-inbound (第4号ニ(3)): the sending server accepts nothing from outside.

Model: the input path admits no new connection from any external network the host is on, nor
from a tunnel it shares with an outside party. Probe: scans from a vantage point on each of
those external networks find no open port. A pass needs both.
"""

from __future__ import annotations

from auditor.findings import Finding, Status
from policies.checks.common import Outcome, combine, judge_each, missing_parts
from policies.checks.paths import empirical_inbound, model_inbound
from policies.context import AuditContext
from policies.model import Control


def check(ctx: AuditContext, control: Control) -> list[Finding]:
    return judge_each(ctx, control, lambda host: _judge(ctx, host))


def _judge(ctx: AuditContext, host: str) -> Outcome:
    model = model_inbound(ctx, host)
    probe = empirical_inbound(ctx, host)
    status, disagreement = combine(model.judgement, probe.judgement)
    if status is Status.FAIL:
        en = f"{host} accepts new connections from outside"
        ja = f"送信用サーバ {host} が外部からの新規接続を受け付ける"
    elif status is Status.PASS:
        en = f"{host} accepts no new connection from outside"
        ja = f"送信用サーバ {host} は外部からの新規接続を受け付けない"
    else:
        reason = missing_parts(model.judgement, probe.judgement)
        en = f"cannot decide whether {host} accepts connections from outside: {reason}"
        ja = f"送信用サーバ {host} の外部受信可否を判定できない: {reason}"
    return Outcome(
        status,
        en,
        ja,
        expected="no new connection from an external network or outside party is accepted",
        actual=f"model: {model.judgement.detail} | probe: {probe.judgement.detail}",
        reason=en if status is Status.INCONCLUSIVE else None,
        model=model.judgement,
        empirical=probe.judgement,
        disagreement=disagreement,
        path=model.path,
        evidence=model.evidence + probe.evidence,
    )
