"""send-no-inbound (第4号ニ(3)): the sending server accepts nothing from outside.

Model: the input path admits no new connection from any external network the host is on, nor
from a tunnel it shares with an outside party. Probe: scans from a vantage point on each of
those external networks find no open port. A pass needs both.
"""

from __future__ import annotations

from auditor.domain.findings import Finding
from policies.context import AuditContext
from policies.model import Control
from policies.support.common import Outcome, judge_each
from policies.support.paths import Wording, empirical_inbound, model_inbound, two_sided_outcome


def check(ctx: AuditContext, control: Control) -> list[Finding]:
    return judge_each(ctx, control, lambda host: _judge(ctx, host))


def _judge(ctx: AuditContext, host: str) -> Outcome:
    wording = Wording(
        fail=(
            f"{host} accepts new connections from outside",
            f"送信用サーバ {host} が外部からの新規接続を受け付ける",
        ),
        passed=(
            f"{host} accepts no new connection from outside",
            f"送信用サーバ {host} は外部からの新規接続を受け付けない",
        ),
        undecided=(
            f"cannot decide whether {host} accepts connections from outside: {{reason}}",
            f"送信用サーバ {host} の外部受信可否を判定できない: {{reason}}",
        ),
        expected="no new connection from an external network or outside party is accepted",
    )
    return two_sided_outcome(model_inbound(ctx, host), empirical_inbound(ctx, host), wording)
