"""Remove secrets from artifacts before they are stored as evidence.

Probes store what they collected as it was collected, and some of it carries secrets: a
WireGuard configuration holds the interface's private key, ``/etc/shadow`` holds password
hashes, an application's configuration holds passwords and tokens. Evidence is handed to
certification bodies, so secrets must never reach it. Each secret is replaced by a marker
``[REDACTED:<kind>]``, and the caller learns which kinds were removed and how often (never the
values), so the artifact's metadata can say what is missing from it and why.

Redaction is deliberately greedy: hiding a harmless value costs an auditor a question, leaking
a key costs the organisation its certification. It is also idempotent, so redacting stored
evidence again changes nothing.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

MARKER_PREFIX = "[REDACTED:"


def marker(kind: str) -> str:
    """The text that stands in place of a removed secret."""
    return f"{MARKER_PREFIX}{kind}]"


@dataclass(frozen=True)
class Redaction:
    """Redacted content and what was removed from it (kinds and counts, never values)."""

    content: bytes
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


# -- pattern parts --------------------------------------------------------------------------
def _not_after(chars: str, literal: str) -> str:
    """A pattern for ``literal`` (fixed width) where the character before it is not in ``chars``.

    The look-behind follows the literal rather than preceding it: a search skips ahead to where
    a pattern's first character occurs, but tries one that begins with a look-behind at every
    position, many times slower on long lines.
    """
    return rf"{literal}(?<!{chars}{literal})"


# Characters that may not come right before a match, for _not_after.
_ALNUM = "[A-Za-z0-9]"
_NAME = r"[\w.-]"
_NOT_SPACE = r"\S"
_NOT_BLANK = r"[^ \t\n]"
_EXPANSION = r"[\w${]"
# Where a value may start: not at a marker, which would be redacted again from within.
_NOT_MARKER = rf"(?!{re.escape(MARKER_PREFIX)})"

# -- private key blocks ---------------------------------------------------------------------
# PEM ("RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY", ...), OpenSSH's own format,
# PGP secret key blocks and OpenVPN static keys (tls-auth, tls-crypt, secret). A block cut short
# (output truncated by a timeout) is still a secret, so an unterminated block is removed up to
# the end of the text.
_KEY_BLOCK = re.compile(
    r"-----BEGIN (?P<label>[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?|OpenVPN Static key V1)-----"
    r".*?(?:-----END (?P=label)-----|\Z)",
    re.DOTALL,
)

# -- IPsec ----------------------------------------------------------------------------------
# `ip xfrm state` prints each SA's keys in hex after the algorithm name.
_XFRM_KEY = re.compile(
    r"^(?P<lead>[ \t]*(?:auth|auth-trunc|enc|aead)[ \t]+\S+[ \t]+)(?P<value>0x[0-9a-fA-F]+)",
    re.MULTILINE,
)

# -- WireGuard ------------------------------------------------------------------------------
# A WireGuard key is 32 bytes in base64: 43 significant characters and one '='.
_WG_KEY = r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]="
_WG_KEY_RE = re.compile(rf"^{_WG_KEY}$")
# wg-quick and `wg showconf` configuration lines; wg-quick reads key names case-insensitively.
_WG_CONFIG_LINE = re.compile(
    r"^(?P<lead>[ \t]*(?P<name>PrivateKey|PresharedKey)[ \t]*=[ \t]*)(?P<value>[^\s#]+)",
    re.IGNORECASE | re.MULTILINE,
)

# -- password hashes ------------------------------------------------------------------------
# crypt(3) hashes as found in /etc/shadow, sudoers-adjacent PAM files or htpasswd: the
# identifier after the first '$' says the algorithm ("apr1" is Apache's MD5 variant). A short
# tail after "$1$" would be a shell positional parameter, not a hash, hence the minimum length.
_CRYPT_HASH = re.compile(
    r"\$(?:1|2[abxy]|5|6|7|y|gy|sha1|md5|apr1|argon2id|argon2i|argon2d|pbkdf2[-\w]*)\$"
    r"[^\s:\"',;]{8,}"
)
_GRUB_HASH = re.compile(r"grub\.pbkdf2\.[A-Za-z0-9.]+")
# LDAP userPassword, slapd rootpw, dovecot and htpasswd name the scheme in braces: {SSHA}...,
# {CRYPT}$6$..., {PLAIN}cleartext. The scheme goes with the hash, as "$6$" does above. Shell
# and template expansions are left alone: ${SHA}, {{md5}}.
_LDAP_HASH = re.compile(
    rf"(?P<value>{_not_after(_EXPANSION, '{')}"
    r"(?:S?SHA\d*|S?MD5|[\w-]*CRYPT[\w-]*|PBKDF2[\w-]*|ARGON2\w*|SCRAM-SHA[\w-]*|"
    rf"CLEARTEXT|CLEAR|PLAIN[\w-]*|[\w-]+-MD5|NTLM|LANMAN)\}}{_NOT_MARKER}[^\s:\"',;]+)",
    re.IGNORECASE,
)
# Traditional DES crypt: 13 characters of [./0-9A-Za-z] and no "$" to announce it, so only in
# the second field of a passwd/shadow-like line, followed by a shadow date or uid field, or
# alone at the end (htpasswd). A '!' in front locks the account and is kept.
_DES_CRYPT = re.compile(
    r"^(?P<lead>[^\s:]+:!*)(?P<value>[./0-9A-Za-z]{13})(?=:\d*:|[^\S\n]*$)", re.MULTILINE
)
# What a field of that shape holds when it is not a hash: a word, a millisecond timestamp.
_NOT_DES_CRYPT = re.compile(r"[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
# Where a hash would be, "*" or "!" locks the account (usermod --password '*'): no secret, and
# worth seeing.
_LOCK_MARK = re.compile(r"[*!]+")

# -- key = value, key: value, "key": "value" --------------------------------------------------
# A key is sensitive when it ends in one of these words (so ``db_password`` and ``API_TOKEN``
# are, while ``PasswordAuthentication`` and ``token_ttl`` are not). Short words that occur
# inside ordinary words ("pass" in "bypass") count only as a whole segment of the key.
# "authtok" is sssd's (ldap_default_authtok), "bindpw" and "rootpw" OpenLDAP's (olcRootPW) and
# nslcd's; an SNMP community string is a password in all but name.
_LONG_WORDS = (
    r"password|passwd|passphrase|secret|token|api[_-]?key|private[_-]?key|access[_-]?key|"
    r"authtok|bindpw|rootpw|community"
)
_SHORT_WORDS = r"pass|pwd|psk|credentials?"
# A trailing qualifier keeps the key sensitive: SECRET_KEY, password_hash, token-value.
_QUALIFIER = r"(?:[_.-]?(?:key|hash|value|string))?"
_SENSITIVE_KEY = rf"(?:[A-Za-z0-9_.-]*?(?:{_LONG_WORDS})|(?:[A-Za-z0-9_.-]*[_.-])?(?:{_SHORT_WORDS})){_QUALIFIER}"
_QUOTED = r"\"(?:[^\"\\\n]|\\.)*\"|'[^'\n]*'"
# ``key=value`` with nothing around the '=' is a command-line or environment form: the value
# ends at whitespace. With spaces around the separator (ini, YAML, JSON) the value runs to the
# end of the line, as YAML plain scalars and ini values may contain spaces.
_TIGHT_SEPARATOR = r"[ \t]*=(?![ \t])"
# LDIF writes "::" before a base64 value (slapcat prints userPassword that way).
_SPACED_SEPARATOR = r"[ \t]*=[ \t]+|[ \t]*::?[ \t]+|:(?=[\"'])"
_WORD = r"[^\s\"',;&}\]]+"
_KEY_VALUE = re.compile(
    rf"(?P<lead>(?<![A-Za-z0-9_.-])(?P<q>[\"']?){_SENSITIVE_KEY}(?P=q)"
    rf"(?:(?P<tight>{_TIGHT_SEPARATOR})|{_SPACED_SEPARATOR}))"
    rf"(?P<value>{_QUOTED}|(?(tight){_WORD}|{_WORD}(?:[ \t]+[^\s\"',;&}}\]#]+)*))",
    re.IGNORECASE,
)
# A YAML block scalar header ("password: |", "secret: !vault >-") announces a value on the
# next lines (see _YAML_BLOCK); the header itself is not the secret.
_BLOCK_HEADER = re.compile(r"(?:![^\s]*[ \t]+)?[|>][-+1-9]*")
# In nsswitch.conf the "passwd:" line names the sources of the user database: not a secret.
_NSSWITCH_SOURCES = re.compile(
    r"^(?:(?:files|systemd|sss|ldap|nis|nisplus|compat|db|winbind|altfiles|extrausers|"
    r"cache|\[[^\]]*\])[ \t]*)+$"
)

# -- credentials in URLs and HTTP headers ---------------------------------------------------
# The user may be empty (redis://:password@host) or hold an unencoded '@' (an e-mail address);
# the password runs to the last '@' before the path, as an unencoded '@' in it is common too.
# A '"' ends the user: in a JSON document, the search would otherwise run on over the keys
# and values that follow a URL.
_URL_PASSWORD = re.compile(
    rf"(?P<lead>\b[a-z][a-z0-9+.-]*://{_NOT_MARKER}[^\s/:?#\"]*:)(?P<value>[^\s/?#]+)(?=@)",
    re.IGNORECASE,
)
_AUTH_HEADER = re.compile(
    r"(?P<lead>\bAuthorization:[ \t]*(?:Bearer|Basic|Token|Digest)[ \t]+)(?P<value>[^\s,]+)",
    re.IGNORECASE,
)
# A Cookie header is all secret; of Set-Cookie only the value: its name and attributes (Secure,
# HttpOnly, SameSite) are what an auditor looks at. An empty value (a deletion) is no secret.
_COOKIE_HEADER = re.compile(
    rf"(?P<lead>{_not_after(_NAME, 'Cookie')}2?:[ \t]*)(?P<value>[^\s;]+(?:;[ \t]*[^\s;]+)*)",
    re.IGNORECASE,
)
_SET_COOKIE_HEADER = re.compile(
    r"(?P<lead>\bSet-Cookie2?:[ \t]*(?:[^\s=;]+=)?+)(?P<value>[^\s;]+)", re.IGNORECASE
)

# -- tokens recognisable by their format, wherever they appear --------------------------------
# GitHub (classic and fine-grained), Stripe secret and restricted keys, Slack bot/user/app
# tokens, and JWTs (a base64url JSON header, so "eyJ", then payload and signature). The minimum
# lengths keep names such as "ghp_token" or "sk_live_mode" out.
_TOKEN = re.compile(
    rf"(?P<value>(?P<github>{_not_after(_ALNUM, 'gh[pousr]_')}[A-Za-z0-9]{{20,}}"
    rf"|{_not_after(_ALNUM, 'github_pat_')}[A-Za-z0-9_]{{20,}})"
    rf"|(?P<stripe>{_not_after(_ALNUM, '[rs]k_(?:live|test)_')}[A-Za-z0-9]{{10,}})"
    rf"|(?P<slack>{_not_after(_ALNUM, 'xox[abps]-')}[A-Za-z0-9-]{{10,}})"
    rf"|(?P<jwt>{_not_after(_ALNUM, 'eyJ')}[A-Za-z0-9_-]{{8,}}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)"
    r")"
)
_TOKEN_KINDS = {
    "github": "github-token",
    "stripe": "stripe-key",
    "slack": "slack-token",
    "jwt": "jwt",
}

# -- passwords on command lines (as ps shows them, or a shell history) ------------------------
# A shell word: quoted parts are taken whole, so -p'two words' loses both words.
_SHELL_WORD = rf"(?:{_QUOTED}|\S)+"
# The rest of a command line after the program's name, within reach: without a bound, the search
# would run from every mention of the program to the end of the line, and a JSON document is
# one long line.
_SAME_COMMAND = r"[^\n]{0,4096}?"
# An option whose name ends in a sensitive word takes the next word as its value (--password X,
# --token X, -Password X in PowerShell); the "=" form is _KEY_VALUE's. Boolean options that
# only mention a secret (--no-password, --ask-vault-password, --show-token) take no value, and
# a next word that is itself an option is not a value.
_OPTION_VALUE = re.compile(
    rf"(?P<lead>{_not_after(_NOT_SPACE, '-')}-?+(?!(?:no|ask|show|print|prompt|skip|use)-)"
    rf"(?P<key>[A-Za-z0-9_-]*?(?:{_LONG_WORDS}){_QUALIFIER})[ \t]+)"
    rf"(?!--?[A-Za-z][\w-]*(?:=\S*)?(?!\S))(?P<value>{_SHELL_WORD})",
    re.IGNORECASE,
)
# Short options that take a password, where the program says which: the mysql family's -p
# takes it glued (a separate word after -p is a database name), sshpass's -p among its own
# options (a later -p is the ssh command's port), the OpenLDAP tools' -w anywhere. Commands
# are case-sensitive, and so are these letters (mysql -P is the port).
_PROGRAM_PASSWORD = re.compile(
    rf"(?:(?:{_not_after(_NAME, 'mysql')}(?:admin|binlog|check|dump|import|pump|show|slap)?"
    rf"|{_not_after(_NAME, 'mariadb')}(?:-(?:admin|binlog|check|dump|import|show|slap))?)"
    rf"(?!{_NAME}){_SAME_COMMAND}[ \t]-p"
    rf"|{_not_after(_NAME, 'sshpass')}(?:[ \t]+-(?:[dfP][ \t]*\S+|[ehvV]\S*))*[ \t]+-p[ \t]*"
    rf"|{_not_after(_NAME, 'ldap')}(?:add|compare|delete|exop|modify|modrdn|passwd|search|url"
    rf"|whoami)(?!{_NAME}){_SAME_COMMAND}[ \t]-w[ \t]*"
    rf")(?P<value>{_SHELL_WORD})"
)
# curl -u user:password (also glued, after other flags as in -su, and --user, --proxy-user,
# -U): the user stays. -u means a user in other programs too, but there it is often uid:gid
# (docker run -u 1000:1000), hence curl only.
_CURL_USER = re.compile(
    rf"(?P<lead>{_not_after(_NAME, 'curl')}(?:\.exe)?(?!{_NAME}){_SAME_COMMAND}"
    r"(?<!\S)(?:-[A-Za-z]*[uU][ \t]*|--(?:proxy-)?user(?:[ \t]+|=))"
    rf"(?P<q>[\"'])?{_NOT_MARKER}[^\s:\"']*:)"
    r"(?P<value>(?(q)(?:(?!(?P=q))[^\n])+|\S+))"
)

# -- secrets in configuration files of particular programs -----------------------------------
# A configuration line may come prefixed by grep -H or -Hn ("/etc/snmp/snmpd.conf:12:").
_LINE_START = r"(?:[^\s:]+:(?:\d+:)?)?[ \t]*"
# ipsec.secrets (strongSwan, Libreswan): "selectors : PSK secret", EAP/XAUTH/NTLM likewise;
# "RSA keyfile passphrase" and kin give the passphrase of a key file (or %prompt for none).
_IPSEC_SECRET = re.compile(
    rf"(?P<lead>{_not_after(_NOT_BLANK, ':')}[ \t]*"
    r"(?:PSK|EAP|XAUTH|NTLM|(?:RSA|ECDSA|P12|PKCS8|BLISS|PIN)[ \t]+\S+)[ \t]+)"
    rf"(?!%prompt(?!\S))(?P<value>{_QUOTED}|\S+)"
)
# .netrc: "machine host login user password secret" on one line, or "password secret" on a
# line of its own. A "password" line with more words is something else (PAM: "password
# required pam_unix.so"), and "password" in prose is not followed by a netrc keyword.
_NETRC_PASSWORD = re.compile(
    r"^(?P<lead>[ \t]*(?:(?P<entry>machine[ \t]+\S+|default)(?:[ \t]+\S+)*?[ \t]+)?password[ \t]+)"
    r"(?P<value>\S+)(?(entry)|(?=[^\S\n]*$))",
    re.MULTILINE,
)
_NETRC_LOGIN_PASSWORD = re.compile(
    rf"(?P<lead>{_not_after(_NOT_SPACE, 'login')}[ \t]+\S+[ \t]+password[ \t]+)(?P<value>\S+)"
)
# nslcd.conf and pam_ldap's ldap.conf (bindpw, rootpwmodpw), slapd.conf (rootpw) and kickstart
# (rootpw --plaintext): the password is the rest of the line, after any options.
_DIRECTIVE_PASSWORD = re.compile(
    rf"^(?P<lead>{_LINE_START}(?:bindpw|rootbindpw|rootpwmodpw|rootpw)[ \t]+(?:--\S+[ \t]+)*)"
    r"(?!--)(?P<value>\S(?:[^\n]*\S)?)",
    re.IGNORECASE | re.MULTILINE,
)
# snmpd.conf (rocommunity, rwcommunity, their IPv6 forms, com2sec, trap sinks) and network
# devices (snmp-server community). A bare "community" is matched in lower case only, as
# "Community" begins many a sentence; "community = value" is _KEY_VALUE's.
_SNMP_COMMUNITY = re.compile(
    rf"^(?P<lead>{_LINE_START}(?:"
    r"(?i:r[ow]community6?|trapcommunity)(?:[ \t]+-(?:Cn|V)[ \t]+\S+)*"
    r"|(?:snmp-server[ \t]+)?community"
    r"|(?i:com2sec6?)(?:[ \t]+-Cn[ \t]+\S+)?[ \t]+\S+[ \t]+\S+"
    r"|(?i:trap2?sink|informsink)[ \t]+\S+"
    r")[ \t]+)(?![=:](?!\S))(?P<value>\S+)",
    re.MULTILINE,
)
# chrony.keys and ntp.keys: "ID [HASH] [HEX:|ASCII:]KEY". The key column goes, the encoding
# prefix stays. Without a prefix, only a known hash name makes the line a key line ("10 tulip"
# would be any two-column output).
_NTP_KEY = re.compile(
    r"^(?P<lead>[ \t]*\d+[ \t]+(?:(?:[A-Za-z][\w-]*[ \t]+)?(?:HEX|ASCII):"
    r"|(?:M|MD5|SHA\d*|SHA3-\d+|RMD\d+|AES\d+(?:CMAC)?|CMAC|TIGER|WHIRLPOOL)[ \t]+))"
    r"(?P<value>\S+)(?=[^\S\n]*(?:#|$))",
    re.IGNORECASE | re.MULTILINE,
)
# Postfix sasl_passwd: "[relay]:port user:password", "relay:port user:password" or, for
# sender-dependent authentication, "@domain user:password". A bare host would make any
# two-column "name image:tag" line a credential, so one of those shapes is required.
_SASL_PASSWORD = re.compile(
    r"^(?P<lead>[ \t]*(?:\[[^\]\s]+\](?::\d+)?|[A-Za-z0-9.-]+:\d+|@[A-Za-z0-9.-]+)"
    rf"[ \t]+{_NOT_MARKER}[^\s:]+:)(?P<value>\S+)(?=[^\S\n]*$)",
    re.MULTILINE,
)
# A YAML value on the lines after its key: a block scalar ("password: |", "secret: !vault |")
# or a plain scalar continued on more indented lines. Its lines are replaced by one marker at
# the first line's indentation (the last line's end, "\r" included, stays). A more indented
# mapping or sequence under a sensitive key (a password policy) is structure, not a value,
# and is left to _KEY_VALUE line by line.
_YAML_BLOCK = re.compile(
    rf"^(?P<indent>[ \t]*)(?:-[ \t]+)?(?P<q>[\"']?)(?P<key>{_SENSITIVE_KEY})(?P=q)[ \t]*:"
    r"(?:[ \t]+!\S*+)?(?:[ \t]+(?P<block>[|>])[-+1-9]*)?(?:[ \t]+#[^\n]*+)?[ \t]*\r?\n"
    r"(?:[ \t]*\r?\n)*(?P=indent)[ \t]+"
    r"(?P<value>\S(?:[^\n]*\S)?(?:[^\S\n]*\n(?:[ \t]*\r?\n)*(?P=indent)[ \t]+\S(?:[^\n]*\S)?)*)",
    re.IGNORECASE | re.MULTILINE,
)
_YAML_STRUCTURE = re.compile(r"-(?:[ \t]|$)|[^\s#\"'][^\n]*?:(?:[ \t]|$)", re.MULTILINE)

# What every match of these patterns contains (only _YAML_BLOCK's cross a line break): lines
# without it are left to the cheap search alone (see _on_lines_with). Gates are searched
# in lowered text, so they are written in lower case. A gate that starts with a rare character
# and looks behind it for the rest ("-[pw](?<=[ \t]-[pw])") is searched an order of magnitude
# faster than one that starts with a choice of words, which is tried at every letter.
_KEY_VALUE_GATE = rf"{_LONG_WORDS}|{_SHORT_WORDS}"
_URL_GATE = "://"
_WG_CONFIG_GATE = "privatekey|presharedkey"
_XFRM_GATE = "0x"
_AUTH_GATE = "authorization:"
# Logins of cleartext protocols, as a capture's sample of a flow shows them: FTP and POP3
# "PASS x", IMAP "a1 LOGIN user x", and SMTP/IMAP/POP3 "AUTH PLAIN <base64 of user and x>".
# Only for samples of network flows (redact_flow_sample): in prose or a process list "the login
# process uses" would lose a word.
_PROTOCOL_LOGIN = re.compile(
    r"^(?P<lead>[ \t]*(?:PASS[ \t]+|\S+[ \t]+LOGIN[ \t]+\S+[ \t]+|AUTH[ \t]+PLAIN[ \t]+))"
    r"(?P<value>\S+)",
    re.IGNORECASE | re.MULTILINE,
)

_DES_CRYPT_GATE = r":!*[./0-9a-z]{13}"
_COOKIE_GATE = "cookie"
_TOKEN_GATE = (
    r"[_j-](?:(?<=gh[pousr]_)|(?<=github_pat_)|(?<=[rs]k_live_)|(?<=[rs]k_test_)"
    r"|(?<=xox[abps]-)|(?<=eyj))"
)
_CURL_GATE = "curl"
_PROGRAM_GATE = r"-[pw](?<=[ \t]-[pw])"
_IPSEC_GATE = r":[ \t]*(?:psk|eap|xauth|ntlm|rsa|ecdsa|p12|pkcs8|bliss|pin)"
_SNMP_GATE = r"y(?<=community)|2(?<=com2)(?=sec)|k(?<=sink)"
_NTP_KEY_GATE = r"(?m)^[ \t]*\d+[ \t]+[a-z]"
_SASL_GATE = r"[\]:@](?:(?<=\])[ \t:]|(?<=:)\d+[ \t]|(?<=@)(?<![^\n \t]@))"
# A _YAML_BLOCK match starts with its key line: ':', a header, then a comment or the line end
# and an indented line (after blank ones). Reading the comment to the end of the line would
# make the search quadratic in the length of a line that has many.
_YAML_BLOCK_GATE = (
    r":(?:[ \t]+!\S*+)?(?:[ \t]+[|>][-+1-9]*)?"
    r"(?:[ \t]+#|[ \t]*\r?\n[ \t\r\n]*[ \t])"
)

Rule = Callable[[str, Counter[str]], str]


def _redact_key_blocks(text: str, counts: Counter[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        kind = "openvpn-static-key" if match.group("label").startswith("OpenVPN") else "private-key"
        counts[kind] += 1
        return marker(kind)

    return _KEY_BLOCK.sub(replace, text)


def _already_redacted(value: str) -> bool:
    return value.strip("\"'").startswith(MARKER_PREFIX)


def _value_substitution(
    pattern: re.Pattern[str], kind: Callable[[re.Match[str]], str | None]
) -> Rule:
    """A rule that replaces the ``value`` group of each match, keeping the rest of the match.

    ``kind`` names the kind of secret for a match, or None when the match is not a secret.
    """

    def rule(text: str, counts: Counter[str]) -> str:
        def replace(match: re.Match[str]) -> str:
            value = match.group("value")
            which = kind(match)
            if which is None or _already_redacted(value):
                return match.group(0)
            counts[which] += 1
            start, end = match.span("value")
            whole = match.string
            return whole[match.start() : start] + marker(which) + whole[end : match.end()]

        return pattern.sub(replace, text)

    return rule


def _wireguard_config_kind(match: re.Match[str]) -> str:
    name = match.group("name").lower()
    return "wireguard-private-key" if name == "privatekey" else "wireguard-preshared-key"


def _key_value_kind(match: re.Match[str]) -> str | None:
    value = match.group("value")
    key = match.group("lead").strip().strip(":=").strip().strip("\"'").lower()
    if key == "passwd" and _NSSWITCH_SOURCES.match(_rest_of_line(match)):
        return None
    if _BLOCK_HEADER.fullmatch(value):
        return None
    return _key_kind(key) if value.strip("\"'") else None


def _key_kind(key: str) -> str:
    """The kind of secret a sensitive key holds."""
    return "snmp-community" if "community" in key.lower() else "password"


def _option_kind(match: re.Match[str]) -> str | None:
    if _LOCK_MARK.fullmatch(match.group("value").strip("\"'")):
        return None
    return _key_kind(match.group("key"))


def _des_crypt_kind(match: re.Match[str]) -> str | None:
    return None if _NOT_DES_CRYPT.fullmatch(match.group("value")) else "password-hash"


def _token_kind(match: re.Match[str]) -> str:
    return next(kind for name, kind in _TOKEN_KINDS.items() if match.group(name) is not None)


def _yaml_block_kind(match: re.Match[str]) -> str | None:
    if match.group("block") is None and _YAML_STRUCTURE.match(match.group("value")):
        return None
    return _key_kind(match.group("key"))


def _rest_of_line(match: re.Match[str]) -> str:
    text, start = match.string, match.end("lead")
    end = text.find("\n", start)
    return text[start:] if end == -1 else text[start:end]


def _redact_wg_dump(text: str, counts: Counter[str]) -> str:
    """Redact the secret columns of ``wg show [all|IFACE] dump`` output.

    With ``all``, an interface line is ``iface, private-key, public-key, port, fwmark`` and a
    peer line ``iface, public-key, preshared-key, endpoint, allowed-ips, handshake, rx, tx,
    keepalive``; for a single interface the leading ``iface`` column is absent.
    """
    if "\t" not in text:
        return text  # no dump line: its columns are tab-separated
    lines = text.split("\n")
    for index, line in enumerate(lines):
        fields = line.split("\t")
        secret_column = _wg_dump_secret_column(fields)
        if secret_column is None:
            continue
        column, kind = secret_column
        fields[column] = marker(kind)
        counts[kind] += 1
        lines[index] = "\t".join(fields)
    return "\n".join(lines)


def _wg_dump_secret_column(fields: list[str]) -> tuple[int, str] | None:
    def is_key(value: str) -> bool:
        return bool(_WG_KEY_RE.match(value))

    def is_port(value: str) -> bool:
        return value.isdigit()

    width = len(fields)
    offset = 1 if width in (5, 9) else 0
    if width in (4, 5):  # interface line
        private, public, port = fields[offset], fields[offset + 1], fields[offset + 2]
        if is_key(private) and (is_key(public) or public == "(none)") and is_port(port):
            return offset, "wireguard-private-key"
    if width in (8, 9):  # peer line
        public, preshared = fields[offset], fields[offset + 1]
        if is_key(public) and is_key(preshared):
            return offset + 1, "wireguard-preshared-key"
    return None


def _on_lines_with(gate: str, rule: Rule, *, indented_after: bool = False) -> Rule:
    """``rule`` applied only to the lines in which ``gate`` (lower case, matched ignoring case)
    finds something.

    For a rule whose matches never cross a line break and always contain what ``gate`` finds,
    this gives exactly the rule's result, but far faster: the generic key/value pattern is
    tried at every position of the text, and most of a host's output (rule sets, package and
    process lists) has no line with a sensitive word in it. Line starts stay line starts, so
    anchors and look-behinds see at a cut what they saw in the whole text. The text is searched
    lowered, case-sensitively, which is an order of magnitude faster than a search ignoring
    case; a text that lowering would not match as case folding does is searched as the rule
    would see it (see _lowered).

    With ``indented_after``, the rule is given each such line together with the lines after it
    that are empty or begin with a space, a tab or a carriage return: the rule's matches may
    then run on over such lines (a YAML block under its key), provided they start on a line the
    gate finds.
    """
    exact, any_case = re.compile(gate), re.compile(gate, re.IGNORECASE)

    def gated(text: str, counts: Counter[str]) -> str:
        pieces: list[str] = []
        done = 0  # text[:done] is in pieces already
        lowered = _lowered(text)
        hits = any_case.finditer(text) if lowered is None else exact.finditer(lowered)
        for hit in hits:
            if hit.start() < done:
                continue  # on a line already redacted
            start = text.rfind("\n", 0, hit.start()) + 1
            end = _line_end(text, hit.end())
            while indented_after and text.startswith((" ", "\t", "\r", "\n"), end + 1):
                end = _line_end(text, end + 1)
            pieces += (text[done:start], rule(text[start:end], counts))
            done = end
        if not pieces:
            return text
        pieces.append(text[done:])
        return "".join(pieces)

    return gated


# The characters that case folding matches to an ASCII letter although lowering does not turn
# them into it ("ſ" matches "s", the Kelvin sign "k", dotted and dotless I "i"); "İ" is also the
# only character that lowers to two, which would shift every position after it.
_FOLDS_TO_ASCII = ("\u0130", "\u0131", "\u017f", "\u212a")


@functools.lru_cache(maxsize=1)
def _lowered(text: str) -> str | None:
    """``text`` lowered, if a gate (ASCII, lower case) finds in it at least what it finds in
    ``text`` ignoring case, at the same positions; else None.

    Kept for the next call: a rule that changes nothing returns the very same text, so the
    gated rules after it lower it once between them.
    """
    if text.isascii() or not any(char in text for char in _FOLDS_TO_ASCII):
        return text.lower()
    return None


def _line_end(text: str, position: int) -> int:
    end = text.find("\n", position)
    return len(text) if end == -1 else end


def _in_turn(*rules: Rule) -> Rule:
    """The rules applied one after the other: several rules under one gate search."""

    def rule(text: str, counts: Counter[str]) -> str:
        for each in rules:
            text = each(text, counts)
        return text

    return rule


def _pattern_rule(pattern: re.Pattern[str], kind: str) -> Rule:
    def rule(text: str, counts: Counter[str]) -> str:
        def replace(match: re.Match[str]) -> str:
            counts[kind] += 1
            return marker(kind)

        return pattern.sub(replace, text)

    return rule


def _kind(name: str) -> Callable[[re.Match[str]], str]:
    return lambda _: name


# Order matters: whole key blocks first (their base64 lines would otherwise be eaten piecemeal),
# then the structured WireGuard forms, then hashes (so "password: $6$..." is reported as a
# hash; the LDAP form first, as "{CRYPT}$6$..." is one hash), then the forms that say what they
# are (URLs, headers, token formats, so a token in "--token ghp_..." is reported as a GitHub
# token), then command lines and particular configuration files, then YAML blocks (before the
# single-line forms, which would take a tag for the value), then the rules whose matches all
# contain a sensitive word, under one search for it, the generic key/value forms last.
_RULES: tuple[Rule, ...] = (
    _redact_key_blocks,
    _on_lines_with(_WG_CONFIG_GATE, _value_substitution(_WG_CONFIG_LINE, _wireguard_config_kind)),
    _redact_wg_dump,
    _on_lines_with(_XFRM_GATE, _value_substitution(_XFRM_KEY, _kind("ipsec-key"))),
    # A literal start: searching for these is as fast as any gate.
    _value_substitution(_LDAP_HASH, _kind("password-hash")),
    _pattern_rule(_CRYPT_HASH, "password-hash"),
    _pattern_rule(_GRUB_HASH, "password-hash"),
    _on_lines_with(_DES_CRYPT_GATE, _value_substitution(_DES_CRYPT, _des_crypt_kind)),
    _on_lines_with(_URL_GATE, _value_substitution(_URL_PASSWORD, _kind("url-password"))),
    _on_lines_with(_AUTH_GATE, _value_substitution(_AUTH_HEADER, _kind("authorization"))),
    _on_lines_with(
        _COOKIE_GATE,
        _in_turn(
            _value_substitution(_COOKIE_HEADER, _kind("cookie")),
            _value_substitution(_SET_COOKIE_HEADER, _kind("cookie")),
        ),
    ),
    _on_lines_with(_TOKEN_GATE, _value_substitution(_TOKEN, _token_kind)),
    _on_lines_with(_CURL_GATE, _value_substitution(_CURL_USER, _kind("password"))),
    _on_lines_with(_PROGRAM_GATE, _value_substitution(_PROGRAM_PASSWORD, _kind("password"))),
    _on_lines_with(_IPSEC_GATE, _value_substitution(_IPSEC_SECRET, _kind("ipsec-secret"))),
    _on_lines_with(_SNMP_GATE, _value_substitution(_SNMP_COMMUNITY, _kind("snmp-community"))),
    _on_lines_with(_NTP_KEY_GATE, _value_substitution(_NTP_KEY, _kind("ntp-key"))),
    _on_lines_with(_SASL_GATE, _value_substitution(_SASL_PASSWORD, _kind("password"))),
    _on_lines_with(
        _YAML_BLOCK_GATE,
        _value_substitution(_YAML_BLOCK, _yaml_block_kind),
        indented_after=True,
    ),
    _on_lines_with(
        _KEY_VALUE_GATE,
        _in_turn(
            _value_substitution(_OPTION_VALUE, _option_kind),
            _value_substitution(_NETRC_PASSWORD, _kind("password")),
            _value_substitution(_NETRC_LOGIN_PASSWORD, _kind("password")),
            _value_substitution(_DIRECTIVE_PASSWORD, _kind("password")),
            _value_substitution(_KEY_VALUE, _key_value_kind),
        ),
    ),
)

# One pass is normally enough; a second one covers a replacement that exposes a new match
# (for instance a key block inside a quoted value). The loop stops at the first pass that
# changes nothing, which is what makes redaction idempotent.
_MAX_PASSES = 4


def redact_text(text: str) -> tuple[str, dict[str, int]]:
    """Redact secrets in ``text``; return the new text and the count of each kind removed."""
    counts: Counter[str] = Counter()
    try:
        for _ in range(_MAX_PASSES):
            before = text
            for rule in _RULES:
                text = rule(text, counts)
            if text == before:
                break
    finally:
        _lowered.cache_clear()  # it holds the text as it was before redaction
    return text, dict(sorted(counts.items()))


def redact(content: bytes) -> Redaction:
    """Redact secrets in raw artifact bytes.

    Bytes that are not UTF-8 are carried through unchanged (surrogate escapes), so a mostly
    textual artifact with a stray binary byte is still redacted and otherwise kept exact.
    """
    text = content.decode("utf-8", errors="surrogateescape")
    redacted, counts = redact_text(text)
    if not counts:
        return Redaction(content=content)
    return Redaction(content=redacted.encode("utf-8", errors="surrogateescape"), counts=counts)


#: Media types whose bytes are a binary structure that a textual substitution would corrupt.
BINARY_MEDIA_TYPES = frozenset(
    {
        "application/vnd.tcpdump.pcap",
        "application/x-pcapng",
        "application/zip",
        "application/gzip",
    }
)


def is_redactable(media_type: str) -> bool:
    """True when artifacts of this media type are redacted before storage."""
    base = media_type.split(";", 1)[0].strip().lower()
    return base not in BINARY_MEDIA_TYPES and not base.startswith(("image/", "audio/", "video/"))


__all__ = [
    "BINARY_MEDIA_TYPES",
    "MARKER_PREFIX",
    "Redaction",
    "is_redactable",
    "marker",
    "redact",
    "redact_text",
]


_PROTOCOL_LOGIN_RULE = _value_substitution(_PROTOCOL_LOGIN, _kind("password"))


def redact_flow_sample(text: str) -> str:
    """A captured flow's sample (the first bytes of a cleartext protocol), redacted as any
    collected text and also of the protocols' own login commands."""
    return _PROTOCOL_LOGIN_RULE(redact_text(text)[0], Counter())
