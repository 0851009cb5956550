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
# identifier after the first '$' says the algorithm. A short tail after "$1$" would be a shell
# positional parameter, not a hash, hence the minimum length.
_CRYPT_HASH = re.compile(
    r"\$(?:1|2[abxy]|5|6|7|y|gy|sha1|md5|argon2id|argon2i|argon2d|pbkdf2[-\w]*)\$"
    r"[^\s:\"',;]{8,}"
)
_GRUB_HASH = re.compile(r"grub\.pbkdf2\.[A-Za-z0-9.]+")

# -- key = value, key: value, "key": "value" --------------------------------------------------
# A key is sensitive when it ends in one of these words (so ``db_password`` and ``API_TOKEN``
# are, while ``PasswordAuthentication`` and ``token_ttl`` are not). Short words that occur
# inside ordinary words ("pass" in "bypass") count only as a whole segment of the key.
_LONG_WORDS = r"password|passwd|passphrase|secret|token|api[_-]?key|private[_-]?key|access[_-]?key"
_SHORT_WORDS = r"pass|pwd|psk|credentials?"
# A trailing qualifier keeps the key sensitive: SECRET_KEY, password_hash, token-value.
_QUALIFIER = r"(?:[_.-]?(?:key|hash|value|string))?"
_SENSITIVE_KEY = rf"(?:[A-Za-z0-9_.-]*?(?:{_LONG_WORDS})|(?:[A-Za-z0-9_.-]*[_.-])?(?:{_SHORT_WORDS})){_QUALIFIER}"
_QUOTED = r"\"(?:[^\"\\\n]|\\.)*\"|'[^'\n]*'"
# ``key=value`` with nothing around the '=' is a command-line or environment form: the value
# ends at whitespace. With spaces around the separator (ini, YAML, JSON) the value runs to the
# end of the line, as YAML plain scalars and ini values may contain spaces.
_TIGHT_SEPARATOR = r"[ \t]*=(?![ \t])"
_SPACED_SEPARATOR = r"[ \t]*=[ \t]+|[ \t]*:[ \t]+|:(?=[\"'])"
_WORD = r"[^\s\"',;&}\]]+"
_KEY_VALUE = re.compile(
    rf"(?P<lead>(?<![A-Za-z0-9_.-])(?P<q>[\"']?){_SENSITIVE_KEY}(?P=q)"
    rf"(?:(?P<tight>{_TIGHT_SEPARATOR})|{_SPACED_SEPARATOR}))"
    rf"(?P<value>{_QUOTED}|(?(tight){_WORD}|{_WORD}(?:[ \t]+[^\s\"',;&}}\]#]+)*))",
    re.IGNORECASE,
)
# In nsswitch.conf the "passwd:" line names the sources of the user database: not a secret.
_NSSWITCH_SOURCES = re.compile(
    r"^(?:(?:files|systemd|sss|ldap|nis|nisplus|compat|db|winbind|altfiles|extrausers|"
    r"cache|\[[^\]]*\])[ \t]*)+$"
)

# -- credentials in URLs and HTTP headers ---------------------------------------------------
_URL_PASSWORD = re.compile(
    r"(?P<lead>\b[a-z][a-z0-9+.-]*://[^\s/:@]+:)(?P<value>[^\s/@]+)(?=@)", re.IGNORECASE
)
_AUTH_HEADER = re.compile(
    r"(?P<lead>\bAuthorization:[ \t]*(?:Bearer|Basic|Token|Digest)[ \t]+)(?P<value>[^\s,]+)",
    re.IGNORECASE,
)

# What every match of these patterns contains (none of them crosses a line break):
# lines without it are left to the cheap search alone (see _on_lines_with).
_KEY_VALUE_GATE = rf"{_LONG_WORDS}|{_SHORT_WORDS}"
_URL_GATE = "://"
_WG_CONFIG_GATE = "privatekey|presharedkey"
_XFRM_GATE = "0x"
_AUTH_GATE = "authorization:"

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
    """A rule that replaces the ``value`` group of each match, keeping the ``lead`` group.

    ``kind`` names the kind of secret for a match, or None when the match is not a secret.
    """

    def rule(text: str, counts: Counter[str]) -> str:
        def replace(match: re.Match[str]) -> str:
            value = match.group("value")
            which = kind(match)
            if which is None or _already_redacted(value):
                return match.group(0)
            counts[which] += 1
            return match.group("lead") + marker(which)

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
    return "password" if value.strip("\"'") else None


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


def _on_lines_with(gate: str, rule: Rule) -> Rule:
    """``rule`` applied only to the lines in which ``gate`` (lower case, matched ignoring case)
    finds something.

    For a rule whose matches never cross a line break and always contain what ``gate`` finds,
    this gives exactly the rule's result, but far faster: the generic key/value pattern is
    tried at every position of the text, and most of a host's output (rule sets, package and
    process lists) has no line with a sensitive word in it. Line starts stay line starts, so
    anchors and look-behinds see at a cut what they saw in the whole text. An ASCII text is
    searched lowered, case-sensitively, which is an order of magnitude faster than a search
    ignoring case; any other text as the rule would see it (Unicode case folding matches "ſ"
    for "s", which lowering does not).
    """
    exact, any_case = re.compile(gate), re.compile(gate, re.IGNORECASE)

    def gated(text: str, counts: Counter[str]) -> str:
        pieces: list[str] = []
        done = 0  # text[:done] is in pieces already
        hits = exact.finditer(text.lower()) if text.isascii() else any_case.finditer(text)
        for hit in hits:
            if hit.start() < done:
                continue  # on a line already redacted
            start = text.rfind("\n", 0, hit.start()) + 1
            end = text.find("\n", hit.end())
            end = len(text) if end == -1 else end
            pieces += (text[done:start], rule(text[start:end], counts))
            done = end
        if not pieces:
            return text
        pieces.append(text[done:])
        return "".join(pieces)

    return gated


def _pattern_rule(pattern: re.Pattern[str], kind: str) -> Rule:
    def rule(text: str, counts: Counter[str]) -> str:
        def replace(match: re.Match[str]) -> str:
            counts[kind] += 1
            return marker(kind)

        return pattern.sub(replace, text)

    return rule


# Order matters: whole key blocks first (their base64 lines would otherwise be eaten piecemeal),
# then the structured WireGuard forms, then hashes (so "password: $6$..." is reported as a
# hash), then the generic key/value forms.
_RULES: tuple[Rule, ...] = (
    _redact_key_blocks,
    _on_lines_with(_WG_CONFIG_GATE, _value_substitution(_WG_CONFIG_LINE, _wireguard_config_kind)),
    _redact_wg_dump,
    _on_lines_with(_XFRM_GATE, _value_substitution(_XFRM_KEY, lambda _: "ipsec-key")),
    _pattern_rule(_CRYPT_HASH, "password-hash"),
    _pattern_rule(_GRUB_HASH, "password-hash"),
    _on_lines_with(_URL_GATE, _value_substitution(_URL_PASSWORD, lambda _: "url-password")),
    _on_lines_with(_AUTH_GATE, _value_substitution(_AUTH_HEADER, lambda _: "authorization")),
    _on_lines_with(_KEY_VALUE_GATE, _value_substitution(_KEY_VALUE, _key_value_kind)),
)

# One pass is normally enough; a second one covers a replacement that exposes a new match
# (for instance a key block inside a quoted value). The loop stops at the first pass that
# changes nothing, which is what makes redaction idempotent.
_MAX_PASSES = 4


def redact_text(text: str) -> tuple[str, dict[str, int]]:
    """Redact secrets in ``text``; return the new text and the count of each kind removed."""
    counts: Counter[str] = Counter()
    for _ in range(_MAX_PASSES):
        before = text
        for rule in _RULES:
            text = rule(text, counts)
        if text == before:
            break
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
