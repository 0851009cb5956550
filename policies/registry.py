"""The one registry of checks: control id -> the function that judges it.

Explicit, not registered at import time: a test asserts that every control file has a check
here and every check a control file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from auditor.domain.findings import Finding
from policies.checks import (
    authentication_hardening,
    external_links_leased_or_vpn,
    inventory_complete,
    links_encrypted,
    no_remote_control_software,
    operation_logging,
    proc_egress_only_via_gateways,
    recv_no_outbound,
    security_updates_applied,
    send_no_inbound,
    send_separate_host,
    terminal_removable_media_blocked,
    unauthorized_access_prevention,
    unexpected_operation_detection,
)
from policies.context import AuditContext
from policies.model import Control, load_controls
from policies.support.common import inconclusive, not_applicable, subjects_of, to_finding

log = logging.getLogger(__name__)

Check = Callable[[AuditContext, Control], list[Finding]]

CHECKS: dict[str, Check] = {
    "recv-no-outbound": recv_no_outbound.check,
    "send-no-inbound": send_no_inbound.check,
    "send-separate-host": send_separate_host.check,
    "proc-egress-only-via-gateways": proc_egress_only_via_gateways.check,
    "external-links-leased-or-vpn": external_links_leased_or_vpn.check,
    "links-encrypted": links_encrypted.check,
    "inventory-complete": inventory_complete.check,
    "terminal-removable-media-blocked": terminal_removable_media_blocked.check,
    "unauthorized-access-prevention": unauthorized_access_prevention.check,
    "operation-logging": operation_logging.check,
    "no-remote-control-software": no_remote_control_software.check,
    "authentication-hardening": authentication_hardening.check,
    "security-updates-applied": security_updates_applied.check,
    "unexpected-operation-detection": unexpected_operation_detection.check,
}


def evaluate_all(ctx: AuditContext) -> list[Finding]:
    """Every shipped control judged against the context, in control-file order.

    A control without a check, or whose check fails outright, is judged inconclusive for
    every subject with the reason: never silently left out of the findings.
    """
    findings: list[Finding] = []
    for control_id, control in load_controls().items():
        check = CHECKS.get(control_id)
        try:
            if check is None:
                raise LookupError(f"no check is registered for control {control_id}")
            if not subjects_of(ctx, control):
                findings.append(not_applicable(control))
                continue
            findings += check(ctx, control)
        except Exception as exc:
            log.exception("control %s could not be judged", control_id)
            findings += unjudged(ctx, control, f"{type(exc).__name__}: {exc}")
    return findings


def unjudged(ctx: AuditContext, control: Control, why: str) -> list[Finding]:
    outcome = inconclusive(
        f"{control.id} could not be judged: {why}", f"{control.id} を判定できなかった: {why}"
    )
    try:
        subjects = subjects_of(ctx, control)
    except Exception:
        subjects = ["(all)"]
    return [to_finding(control, subject, outcome) for subject in subjects]
