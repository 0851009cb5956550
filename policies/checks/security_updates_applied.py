"""security-updates-applied (第4号イ): no security update is pending on an organisation host.

Judged from what the host's own package sources offer, read-only and without network (the
collector never runs ``apt update``):

- pending: ``apt-get -s dist-upgrade`` lists an upgrade of an installed package whose candidate
  comes from a security release (origin or archive containing "security", as Debian's
  ``Debian-Security:12/stable-security`` and Ubuntu's ``Ubuntu:22.04/jammy-security``): fail,
  quoting each ``Inst`` line;
- knowable: the host has a security suite among its package lists, and the oldest of the
  security suites' ``*Release`` files in /var/lib/apt/lists is younger than the limit (the inventory's
  ``policy.package_lists_max_age_days``, else the control's parameter, 7 days). Otherwise
  "nothing pending" is not known: inconclusive, saying why.

A pending security update fails whatever the lists' age (the host already knows of it).
Windows hosts: Windows Update's state is not collected: inconclusive.
"""

from __future__ import annotations

from auditor.domain.facts import HostFacts
from auditor.domain.findings import Finding, Status
from policies.context import AuditContext
from policies.model import Control
from policies.support.common import Outcome, facts_or_inconclusive, inconclusive, judge_each
from policies.support.criteria import Line, evidence_of
from probes.parsers import ParseError
from probes.parsers.apt import ListTimes, PendingPackage, parse_apt_simulation, parse_list_times

EVIDENCE_PREFIXES = ("commands:apt-upgrade-simulation", "commands:apt-lists-times")
SIMULATION = "`apt-get -s -o Debug::NoLocking=1 dist-upgrade`"
DAY = 86400


def check(ctx: AuditContext, control: Control) -> list[Finding]:
    return judge_each(ctx, control, lambda host: _judge(ctx, control, host))


def max_age_days(ctx: AuditContext, control: Control) -> int:
    """The inventory's limit when it sets one, else the control's default."""
    configured = ctx.inventory.policy.package_lists_max_age_days
    return int(configured if configured is not None else control.parameters["max_age_days"])


def _judge(ctx: AuditContext, control: Control, host: str) -> Outcome:
    if ctx.inventory.hosts[host].os == "windows":
        return inconclusive(
            f"{host} is a Windows host: its Windows Update state is not collected",
            f"{host} は Windows のホストであり、Windows Update の状態を収集していない",
        )
    facts = facts_or_inconclusive(
        ctx,
        host,
        f"cannot judge {host}'s security updates",
        f"{host} のセキュリティ更新を判定できない",
    )
    if not isinstance(facts, HostFacts):
        return facts
    evidence = evidence_of(facts, EVIDENCE_PREFIXES)
    pending = _pending(facts)
    if isinstance(pending, str):
        return inconclusive(
            f"cannot tell which updates {host} lacks: {pending}",
            f"{host} の未適用の更新を判定できない: {pending}",
            evidence,
        )
    return _verdict(control, host, pending, _lists(facts, max_age_days(ctx, control)), evidence)


def _pending(facts: HostFacts) -> list[PendingPackage] | str:
    text = facts.commands.get("apt-upgrade-simulation")
    if text is None:
        return f"{SIMULATION} was not read: " + facts.errors.get(
            "commands:apt-upgrade-simulation", "not collected"
        )
    try:
        return [p for p in parse_apt_simulation(text) if p.installed is not None]
    except ParseError as exc:
        return str(exc)


def is_security(package: PendingPackage) -> bool:
    return any("security" in f"{r.origin}:{r.archive}".lower() for r in package.releases)


def _lists(facts: HostFacts, limit_days: int) -> tuple[bool | None, str]:
    """(fresh, why): True when a security suite is listed and every list is within the limit."""
    text = facts.commands.get("apt-lists-times")
    if text is None:
        why = facts.errors.get("commands:apt-lists-times", "not collected")
        return None, f"the package lists' times were not read: {why}"
    try:
        times = parse_list_times(text)
    except ParseError as exc:
        return None, str(exc)
    return _judge_lists(times, limit_days)


def _judge_lists(times: ListTimes, limit_days: int) -> tuple[bool | None, str]:
    if not times.files:
        return (
            None,
            "the host has no package lists (/var/lib/apt/lists/*Release): apt has "
            "never read its sources",
        )
    security = {p: t for p, t in times.files.items() if "security" in p.lower()}
    if not security:
        return None, "no security suite among the host's package lists: " + ", ".join(
            sorted(times.files)
        )
    # apt gives a list the mtime of its source's Release; a security archive republishes its
    # Release at least weekly (Valid-Until), so an old one means apt has not read it since.
    # A distribution's main suite changes rarely and says nothing of the last update.
    oldest_path = min(security, key=lambda p: security[p])
    age_days = (times.now - security[oldest_path]) / DAY
    if age_days > limit_days:
        return False, (
            f"the package lists are {age_days:.1f} days old ({oldest_path}), older "
            f"than the limit of {limit_days} days"
        )
    return True, f"the package lists are at most {age_days:.1f} days old (limit {limit_days})"


def _verdict(
    control: Control,
    host: str,
    pending: list[PendingPackage],
    lists: tuple[bool | None, str],
    evidence: list[str],
) -> Outcome:
    security = [p for p in pending if is_security(p)]
    fresh, lists_detail = lists
    lines = [Line(f"{SIMULATION} line {p.line}", p.text) for p in security]
    others = len(pending) - len(security)
    actual = (
        f"{len(security)} security update(s) pending, {others} other upgrade(s); "
        f"{lists_detail}" + ("; " + "; ".join(str(x) for x in lines[:6]) if lines else "")
    )
    if security:
        names = ", ".join(
            f"{p.package} {p.installed} -> {p.candidate} ({p.releases[0]})" for p in security
        )
        en = f"{host} has security updates pending: {names} [{'; '.join(str(x) for x in lines)}]"
        ja = f"{host} に未適用のセキュリティ更新がある: {names}"
        return Outcome(
            Status.FAIL, en, ja, expected=control.criteria.en, actual=actual, evidence=evidence
        )
    if fresh is not True:
        en = f"{host} has no security update pending in its package lists, but {lists_detail}"
        ja = f"{host} のパッケージ一覧に未適用のセキュリティ更新はないが、一覧が判定に使えない: {lists_detail}"
        return Outcome(
            Status.INCONCLUSIVE,
            en,
            ja,
            expected=control.criteria.en,
            actual=actual,
            reason=en,
            evidence=evidence,
        )
    en = (
        f"{host} has no security update pending ({SIMULATION}: {others} other upgrade(s)); "
        f"{lists_detail}"
    )
    ja = f"{host} に未適用のセキュリティ更新はない"
    return Outcome(
        Status.PASS, en, ja, expected=control.criteria.en, actual=actual, evidence=evidence
    )
