"""The one registry of checks: control id -> the function that judges it.

Explicit, not registered at import time: a test asserts that every control file has a check
here and every check a control file.
"""

from __future__ import annotations

from collections.abc import Callable

from auditor.findings import Finding
from policies.checks import (
    external_links_leased_or_vpn,
    inventory_complete,
    links_encrypted,
    proc_egress_only_via_gateways,
    recv_no_outbound,
    send_no_inbound,
    send_separate_host,
)
from policies.context import AuditContext
from policies.model import Control, load_controls

Check = Callable[[AuditContext, Control], list[Finding]]

CHECKS: dict[str, Check] = {
    "recv-no-outbound": recv_no_outbound.check,
    "send-no-inbound": send_no_inbound.check,
    "send-separate-host": send_separate_host.check,
    "proc-egress-only-via-gateways": proc_egress_only_via_gateways.check,
    "external-links-leased-or-vpn": external_links_leased_or_vpn.check,
    "links-encrypted": links_encrypted.check,
    "inventory-complete": inventory_complete.check,
}


def evaluate_all(ctx: AuditContext) -> list[Finding]:
    """Every shipped control judged against the context, in control-file order."""
    findings: list[Finding] = []
    for control_id, control in load_controls().items():
        findings += CHECKS[control_id](ctx, control)
    return findings
