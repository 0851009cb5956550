"""authentication-hardening (第4号イ): logins cannot be guessed or taken over.

Linux: five criteria, each met / NOT met / unknown with the lines that decided it (the control's
``criteria`` text is the finding's ``expected``):

1. root login refused: ``permitrootlogin no`` in ``sshd -T``;
2. no password guessing over SSH: ``passwordauthentication`` and
   ``kbdinteractiveauthentication`` both ``no``, or a second factor is required: sshd uses PAM
   and its auth stack requires pam_u2f, pam_google_authenticator, pam_oath (or similar), or
   ``authenticationmethods`` puts ``publickey`` in every list;
3. empty passwords refused by sshd: ``permitemptypasswords no``;
4. no account has an empty password (``passwd -S -a`` status ``NP``);
5. lockout: pam_faillock in sshd's auth stack (``preauth`` and ``authfail``, a deny threshold
   of 1 or more) with sshd using PAM, or fail2ban running with an ``sshd`` jail.

``sshd -T`` prints the configuration of a connection that matches no ``Match`` block; a Match
block that changes one of these keywords (``sshd_config`` and ``sshd_config.d`` with file:line)
makes the criterion unknown. Windows: ``net accounts`` (lockout threshold and minimum password
length), inconclusive in any format other than the English one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath

from auditor.domain.facts import HostFacts
from auditor.domain.findings import Finding
from policies.context import AuditContext
from policies.model import Control
from policies.support.common import Outcome, facts_or_inconclusive, inconclusive, judge_each
from policies.support.criteria import (
    CriteriaWording,
    Criterion,
    Line,
    any_of,
    criteria_outcome,
    evidence_of,
)
from policies.support.pam import may_skip, pam_stack
from probes.parsers import ParseError, parse_grep_lines, parse_pam_directory
from probes.parsers.authentication import (
    Setting,
    parse_fail2ban_status,
    parse_faillock_conf,
    parse_net_accounts,
    parse_passwd_status,
    parse_sshd_effective,
)
from probes.parsers.pam import PAM_DIR, PamLine

EVIDENCE_PREFIXES = (
    "commands:sshd-effective-config",
    "commands:sshd-config",
    "commands:pam.d",
    "commands:passwd-status",
    "files:/etc/security/faillock.conf",
    "commands:fail2ban-sshd",
    "processes",
    "commands:windows:net-accounts",
)
SECOND_FACTOR_MODULES = frozenset(
    {
        "pam_u2f.so",
        "pam_google_authenticator.so",
        "pam_oath.so",
        "pam_yubico.so",
        "pam_duo.so",
        "pam_radius_auth.so",
        "pam_totp.so",
    }
)
#: sshd keywords this control reads; a Match block setting one of them is not judged.
JUDGED_KEYWORDS = frozenset(
    {
        "permitrootlogin",
        "passwordauthentication",
        "kbdinteractiveauthentication",
        "challengeresponseauthentication",
        "permitemptypasswords",
        "authenticationmethods",
        "usepam",
    }
)
#: pam_faillock's deny when neither its arguments nor faillock.conf set one (pam_faillock(8)).
FAILLOCK_DEFAULT_DENY = 3
SSHD_PAM = f"{PAM_DIR}/sshd"

Settings = dict[str, list[Setting]]


def check(ctx: AuditContext, control: Control) -> list[Finding]:
    return judge_each(ctx, control, lambda host: _judge(ctx, control, host))


def _judge(ctx: AuditContext, control: Control, host: str) -> Outcome:
    facts = facts_or_inconclusive(
        ctx, host, f"cannot judge {host}'s authentication", f"{host} の認証設定を判定できない"
    )
    if not isinstance(facts, HostFacts):
        return facts
    windows = ctx.inventory.hosts[host].os == "windows"
    if not windows and (missing := not_collected(facts)):
        # A collection made before this control existed: judging only what it happens to hold
        # (sshd -T, the process list) would fail or pass on half the evidence.
        return inconclusive(
            f"cannot judge {host}'s authentication: not collected: {', '.join(missing)}",
            f"{host} の認証設定を判定できない(未収集: {', '.join(missing)})",
        )
    criteria = windows_criteria(facts) if windows else linux_criteria(facts)
    return verdict(control, host, facts, criteria)


WORDING = CriteriaWording(
    topic_ja="認証強化", passed_en="hardens its logins", passed_ja="はログインの認証を強化している"
)


def verdict(control: Control, host: str, facts: HostFacts, criteria: list[Criterion]) -> Outcome:
    evidence = evidence_of(facts, EVIDENCE_PREFIXES)
    return criteria_outcome(control, host, criteria, WORDING, evidence)


# -- Linux ------------------------------------------------------------------------------------

#: The outputs only this control asks for: a collection with none of them, not even an error
#: saying why, was made by a collector that did not know the control.
OWN_FACTS = (
    "commands:passwd-status", "commands:sshd-config", "commands:fail2ban-sshd",
    "files:/etc/security/faillock.conf",
)  # fmt: skip


def not_collected(facts: HostFacts) -> list[str]:
    def present(key: str) -> bool:
        kind, _, name = key.partition(":")
        stored = facts.commands if kind == "commands" else facts.files
        return name in stored or key in facts.errors

    return [] if any(present(k) for k in OWN_FACTS) else list(OWN_FACTS)


def linux_criteria(facts: HostFacts) -> list[Criterion]:
    sshd = _sshd(facts)
    pam = _pam(facts)
    return [
        root_login(facts, sshd),
        password_authentication(facts, sshd, pam),
        empty_passwords_refused(facts, sshd),
        no_empty_password_accounts(facts),
        lockout(facts, sshd, pam),
    ]


def _sshd(facts: HostFacts) -> Settings | str:
    text = facts.commands.get("sshd-effective-config")
    if text is None:
        return facts.errors.get("commands:sshd-effective-config", "not collected")
    try:
        return parse_sshd_effective(text)
    except ParseError as exc:
        return str(exc)


def _pam(facts: HostFacts) -> dict[str, list[PamLine]] | str:
    text = facts.commands.get("pam.d")
    if text is None:
        return facts.errors.get("commands:pam.d", "not collected")
    try:
        return parse_pam_directory(text)
    except ParseError as exc:
        return str(exc)


def _setting(sshd: Settings, keyword: str) -> Setting | None:
    found = sshd.get(keyword)
    return found[0] if found else None


def _sshd_line(setting: Setting) -> Line:
    return Line(f"`sshd -T` line {setting.line}", f"{setting.keyword} {setting.value}")


def match_overrides(facts: HostFacts, keywords: set[str]) -> list[Line] | str:
    """Lines inside a ``Match`` block (up to ``Match all`` or the end of its file) that set one
    of ``keywords``: what `sshd -T` without ``-C`` does not show."""
    text = facts.commands.get("sshd-config")
    if text is None:
        return "sshd's configuration files were not read: " + facts.errors.get(
            "commands:sshd-config", "not collected"
        )
    try:
        files = parse_grep_lines(text, "grep sshd_config")
    except ParseError as exc:
        return str(exc)
    found = []
    for path, lines in files.items():
        inside = False
        for number in sorted(lines):
            words = lines[number].split("#", 1)[0].split()
            if not words:
                continue
            keyword = words[0].lower()
            if keyword == "match":
                inside = [w.lower() for w in words[1:]] != ["all"]
            elif inside and keyword in keywords:
                found.append(Line(f"{path}:{number}", lines[number]))
    return found


def _sshd_criterion(
    name: str,
    facts: HostFacts,
    sshd: Settings | str,
    keywords: set[str],
    judge: Callable[[Settings], Criterion],
) -> Criterion:
    """Judge from `sshd -T`, unknown when it was not read or a Match block changes a keyword."""
    if isinstance(sshd, str):
        return Criterion(name, None, f"sshd's effective configuration was not read: {sshd}")
    result = judge(sshd)
    overrides = match_overrides(facts, keywords)
    if isinstance(overrides, str):
        return Criterion(name, None, overrides, result.lines)
    if overrides and result.holds is not False:
        return Criterion(
            name,
            None,
            f"a Match block changes {', '.join(sorted(keywords))} for "
            "some connections (not judged)",
            result.lines + overrides,
        )
    return result


def root_login(facts: HostFacts, sshd: Settings | str) -> Criterion:
    name = "root login refused"

    def judge(settings: Settings) -> Criterion:
        setting = _setting(settings, "permitrootlogin")
        if setting is None:
            return Criterion(name, None, "`sshd -T` prints no permitrootlogin")
        # prohibit-password and forced-commands-only still let root log in with a key: a login
        # that names no person, which the control refuses.
        holds = setting.value == "no"
        detail = f"permitrootlogin {setting.value}"
        return Criterion(name, holds, detail, [_sshd_line(setting)])

    return _sshd_criterion(name, facts, sshd, {"permitrootlogin"}, judge)


def empty_passwords_refused(facts: HostFacts, sshd: Settings | str) -> Criterion:
    name = "empty passwords refused by sshd"

    def judge(settings: Settings) -> Criterion:
        setting = _setting(settings, "permitemptypasswords")
        if setting is None:
            return Criterion(name, None, "`sshd -T` prints no permitemptypasswords")
        holds = setting.value == "no"
        return Criterion(
            name, holds, f"permitemptypasswords {setting.value}", [_sshd_line(setting)]
        )

    return _sshd_criterion(name, facts, sshd, {"permitemptypasswords"}, judge)


def password_authentication(
    facts: HostFacts, sshd: Settings | str, pam: dict[str, list[PamLine]] | str
) -> Criterion:
    name = "password logins off or second factor"
    keywords = {
        "passwordauthentication",
        "kbdinteractiveauthentication",
        "challengeresponseauthentication",
        "authenticationmethods",
        "usepam",
    }
    return _sshd_criterion(
        name, facts, sshd, keywords, lambda settings: _password_routes(name, settings, pam)
    )


def _password_routes(name: str, sshd: Settings, pam: dict[str, list[PamLine]] | str) -> Criterion:
    password = _setting(sshd, "passwordauthentication")
    # OpenSSH before 8.7 names keyboard-interactive "challengeresponseauthentication".
    keyboard = _setting(sshd, "kbdinteractiveauthentication") or _setting(
        sshd, "challengeresponseauthentication"
    )
    if password is None or keyboard is None:
        return Criterion(
            name, None, "`sshd -T` prints no passwordauthentication or kbdinteractiveauthentication"
        )
    lines = [_sshd_line(password), _sshd_line(keyboard)]
    on = [s.keyword for s in (password, keyboard) if s.value != "no"]
    if not on:
        return Criterion(name, True, "password and keyboard-interactive logins are off", lines)
    methods = _publickey_always(sshd)
    if methods is not None:
        return Criterion(
            name,
            True,
            f"{' and '.join(on)} on, but every authenticationmethods list requires publickey",
            [*lines, _sshd_line(methods)],
        )
    factor = second_factor(sshd, pam)
    factor.name = name
    factor.detail = f"{' and '.join(on)} on; {factor.detail}"
    factor.lines = lines + factor.lines
    return factor


def _publickey_always(sshd: Settings) -> Setting | None:
    setting = _setting(sshd, "authenticationmethods")
    if setting is None or setting.value == "any":
        return None
    lists = [m.split(",") for m in setting.value.split()]
    if lists and all(any(x.startswith("publickey") for x in m) and len(m) > 1 for m in lists):
        return setting
    return None


def second_factor(sshd: Settings, pam: dict[str, list[PamLine]] | str) -> Criterion:
    """A second-factor module that sshd's PAM auth stack requires (required or requisite,
    with no earlier line that may end the stack or jump over it)."""
    name = "second factor"
    usepam = _setting(sshd, "usepam")
    if usepam is None or usepam.value != "yes":
        return Criterion(name, False, "sshd does not use PAM, so no second factor applies")
    if isinstance(pam, str):
        return Criterion(name, None, f"/etc/pam.d was not read: {pam}")
    if SSHD_PAM not in pam:
        return Criterion(name, None, f"{SSHD_PAM} was not found")
    stack = pam_stack(pam, SSHD_PAM, "auth")
    for index, line in enumerate(stack):
        if PurePosixPath(line.module).name not in SECOND_FACTOR_MODULES:
            continue
        if line.control in ("required", "requisite") and not may_skip(stack, index):
            return Criterion(
                name,
                True,
                "a second factor is required in sshd's PAM auth stack",
                [_pam_line(line)],
            )
        return Criterion(
            name,
            None,
            "a second-factor module is in sshd's PAM auth stack but may be skipped",
            [_pam_line(line)],
        )
    return Criterion(name, False, "no second-factor module in sshd's PAM auth stack")


def _pam_line(line: PamLine) -> Line:
    return Line(f"{line.path}:{line.number}", line.text)


def no_empty_password_accounts(facts: HostFacts) -> Criterion:
    name = "no account without a password"
    text = facts.commands.get("passwd-status")
    if text is None:
        why = facts.errors.get("commands:passwd-status", "not collected")
        return Criterion(name, None, f"the accounts' password status was not read: {why}")
    try:
        accounts = parse_passwd_status(text)
    except ParseError as exc:
        return Criterion(name, None, str(exc))
    empty = [a for a in accounts if a.status == "NP"]
    if empty:
        return Criterion(
            name,
            False,
            "accounts with an empty password: " + ", ".join(a.user for a in empty),
            [Line(f"`passwd -S -a` line {a.line}", f"{a.user} NP") for a in empty],
        )
    return Criterion(
        name, True, f"none of {len(accounts)} accounts has an empty password (`passwd -S -a`)"
    )


# -- lockout ------------------------------------------------------------------------------------


def lockout(
    facts: HostFacts, sshd: Settings | str, pam: dict[str, list[PamLine]] | str
) -> Criterion:
    return any_of(
        "failed logins lock out", [faillock_route(facts, sshd, pam), fail2ban_route(facts)]
    )


def faillock_route(
    facts: HostFacts, sshd: Settings | str, pam: dict[str, list[PamLine]] | str
) -> Criterion:
    name = "pam_faillock"
    stack = _faillock_stack(name, sshd, pam)
    if isinstance(stack, Criterion):
        return stack
    lines = [_pam_line(x) for x in stack]
    deny = _faillock_deny(facts, stack)
    if isinstance(deny, str):
        return Criterion(name, None, deny, lines)
    value, where = deny
    lines += [where] if where is not None else []
    if value < 1:
        return Criterion(name, False, "pam_faillock's deny is 0: accounts never lock", lines)
    return Criterion(
        name, True, f"pam_faillock locks an account after {value} failed logins", lines
    )


def _faillock_stack(
    name: str, sshd: Settings | str, pam: dict[str, list[PamLine]] | str
) -> list[PamLine] | Criterion:
    """sshd's pam_faillock lines, or why the route is not met or unknown. pam_faillock counts
    a failure on ``authfail`` and refuses a locked account on ``preauth`` (or ``authsucc``);
    it applies to sshd only when sshd uses PAM."""
    if isinstance(sshd, str):
        return Criterion(name, None, f"sshd's effective configuration was not read: {sshd}")
    usepam = _setting(sshd, "usepam")
    if usepam is None or usepam.value != "yes":
        lines = [_sshd_line(usepam)] if usepam else []
        return Criterion(name, False, "sshd does not use PAM", lines)
    if isinstance(pam, str):
        return Criterion(name, None, f"/etc/pam.d was not read: {pam}")
    stack = [
        x
        for x in pam_stack(pam, SSHD_PAM, "auth")
        if PurePosixPath(x.module).name == "pam_faillock.so"
    ]
    counts = any("authfail" in x.args for x in stack)
    refuses = any("preauth" in x.args or "authsucc" in x.args for x in stack)
    if not (counts and refuses):
        why = "sshd's PAM auth stack has no pam_faillock preauth and authfail lines"
        return Criterion(name, False, why, [_pam_line(x) for x in stack])
    return stack


def _faillock_deny(facts: HostFacts, stack: list[PamLine]) -> tuple[int, Line | None] | str:
    """deny= of the module's arguments, else faillock.conf's, else the default (3)."""
    for line in reversed(stack):
        for arg in line.args:
            if arg.startswith("conf="):
                return f"{line.path}:{line.number} reads another configuration file ({arg})"
            if arg.startswith("deny=") and arg[5:].isdigit():
                return int(arg[5:]), _pam_line(line)
    return _faillock_conf_deny(facts)


def _faillock_conf_deny(facts: HostFacts) -> tuple[int, Line | None] | str:
    text = facts.files.get("/etc/security/faillock.conf")
    if text is None:
        why = facts.errors.get("files:/etc/security/faillock.conf", "not collected")
        return f"/etc/security/faillock.conf was not read: {why}"
    try:
        setting = parse_faillock_conf(text).get("deny")
    except ParseError as exc:
        return str(exc)
    if setting is None:
        return FAILLOCK_DEFAULT_DENY, None
    if not setting.value.isdigit():
        return f"/etc/security/faillock.conf:{setting.line}: deny is not a number"
    where = Line(f"/etc/security/faillock.conf:{setting.line}", f"deny = {setting.value}")
    return int(setting.value), where


def fail2ban_route(facts: HostFacts) -> Criterion:
    name = "fail2ban"
    if facts.processes is None:
        return Criterion(name, None, "the process list was not read")
    # fail2ban-server runs as a python3 interpreter: match the command line too.
    if not any("fail2ban-server" in (p.command + " " + p.args) for p in facts.processes):
        return Criterion(name, False, "fail2ban-server is not running")
    text = facts.commands.get("fail2ban-sshd")
    if text is None:
        why = facts.errors.get("commands:fail2ban-sshd", "not collected")
        held = False if "does not exist" in why else None
        return Criterion(name, held, f"`fail2ban-client status sshd`: {why}")
    try:
        status = parse_fail2ban_status(text)
    except ParseError as exc:
        return Criterion(name, None, str(exc))
    if status.jail != "sshd":
        return Criterion(name, None, f"fail2ban answered for jail {status.jail}, not sshd")
    return Criterion(
        name,
        True,
        "fail2ban runs with an sshd jail",
        [Line("`fail2ban-client status sshd` line 1", "Status for the jail: sshd")],
    )


# -- Windows ------------------------------------------------------------------------------------


def windows_criteria(facts: HostFacts) -> list[Criterion]:
    key = "windows:net-accounts"
    text = facts.commands.get(key)
    if text is None:
        why = facts.errors.get(f"commands:{key}", facts.errors.get(key, "not collected"))
        return [Criterion("account policy", None, f"`net accounts` was not read: {why}")]
    try:
        policy = parse_net_accounts(text)
    except ParseError as exc:
        return [Criterion("account policy", None, f"`net accounts` in no known format: {exc}")]
    threshold, length = policy.lockout_threshold, policy.minimum_password_length
    lock_line = Line(
        f"`net accounts` line {threshold.line}", f"Lockout threshold: {threshold.value}"
    )
    length_line = Line(
        f"`net accounts` line {length.line}", f"Minimum password length: {length.value}"
    )
    locks = threshold.value.isdigit() and int(threshold.value) > 0
    return [
        Criterion(
            "failed logins lock out", locks, f"lockout threshold {threshold.value}", [lock_line]
        ),
        Criterion(
            "no empty passwords",
            int(length.value) > 0,
            f"minimum password length {length.value}",
            [length_line],
        ),
    ]
