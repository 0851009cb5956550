"""Redaction of secrets from artifacts, on the forms real tools print them in."""

from __future__ import annotations

import base64
from collections import Counter

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa, x25519
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.evidence.redact import (
    _AUTH_HEADER,
    _CRYPT_HASH,
    _GRUB_HASH,
    _KEY_VALUE,
    _RULES,
    _URL_PASSWORD,
    _WG_CONFIG_LINE,
    _XFRM_KEY,
    Rule,
    _key_value_kind,
    _pattern_rule,
    _redact_key_blocks,
    _redact_wg_dump,
    _value_substitution,
    _wireguard_config_kind,
    is_redactable,
    marker,
    redact,
    redact_text,
)


def wg_key() -> str:
    """A real WireGuard key as `wg genkey` prints it."""
    raw = x25519.X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return base64.b64encode(raw).decode()


def openssh_private_key() -> str:
    return (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        .decode()
    )


def rsa_pem_private_key(password: bytes | None = None) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    if password is None:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ).decode()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    ).decode()


def body_lines(pem: str) -> list[str]:
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


# -- private key blocks ---------------------------------------------------------------------


def test_openssh_private_key_in_cat_output_is_removed_but_public_key_kept() -> None:
    private = openssh_private_key()
    public = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx0b5o8R0aA auditor@lab"
    text = f"$ cat ~/.ssh/id_ed25519\n{private}$ cat ~/.ssh/id_ed25519.pub\n{public}\n"

    redacted, counts = redact_text(text)

    assert counts == {"private-key": 1}
    assert "OPENSSH PRIVATE KEY" not in redacted
    assert all(line not in redacted for line in body_lines(private))
    assert public in redacted
    assert redacted.startswith("$ cat ~/.ssh/id_ed25519\n[REDACTED:private-key]\n")


def test_rsa_and_encrypted_pkcs8_blocks_are_each_counted() -> None:
    first, second = rsa_pem_private_key(), rsa_pem_private_key(b"correct horse")
    redacted, counts = redact_text(f"{first}\n--\n{second}")
    assert counts == {"private-key": 2}
    assert "BEGIN" not in redacted
    assert redacted == f"{marker('private-key')}\n\n--\n{marker('private-key')}\n"


def test_truncated_private_key_block_is_removed_to_the_end() -> None:
    private = openssh_private_key()
    cut = private[: len(private) // 2]
    redacted, counts = redact_text(f"head\n{cut}")
    assert counts == {"private-key": 1}
    assert redacted == f"head\n{marker('private-key')}"


def test_certificate_and_public_key_blocks_are_not_secrets() -> None:
    text = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    text += "-----BEGIN PUBLIC KEY-----\nMCow\n-----END PUBLIC KEY-----\n"
    assert redact_text(text) == (text, {})


# -- WireGuard ------------------------------------------------------------------------------


def test_wireguard_configuration_keys_are_removed_and_public_keys_kept() -> None:
    private, preshared, peer_public = wg_key(), wg_key(), wg_key()
    conf = (
        "[Interface]\n"
        "Address = 10.98.100.20/24\n"
        "ListenPort = 51820\n"
        f"PrivateKey = {private}\n"
        "\n"
        "[Peer]\n"
        f"PublicKey = {peer_public}\n"
        f"presharedkey={preshared}\n"
        "AllowedIPs = 10.98.100.10/32\n"
        "Endpoint = 10.98.10.10:51820\n"
    )
    redacted, counts = redact_text(conf)
    assert counts == {"wireguard-preshared-key": 1, "wireguard-private-key": 1}
    assert private not in redacted
    assert preshared not in redacted
    assert f"PublicKey = {peer_public}" in redacted
    assert "PrivateKey = [REDACTED:wireguard-private-key]\n" in redacted
    assert "presharedkey=[REDACTED:wireguard-preshared-key]\n" in redacted


def test_wg_show_all_dump_private_key_column_and_preshared_keys_are_removed() -> None:
    iface_private, iface_public = wg_key(), wg_key()
    peer_public, peer_psk = wg_key(), wg_key()
    other_peer = wg_key()
    dump = (
        f"wg0\t{iface_private}\t{iface_public}\t51820\toff\n"
        f"wg0\t{peer_public}\t{peer_psk}\t10.98.10.10:51820\t10.98.100.10/32\t1732640000\t"
        "1234\t5678\toff\n"
        f"wg0\t{other_peer}\t(none)\t(none)\t10.98.100.11/32\t0\t0\t0\t25\n"
    )
    redacted, counts = redact_text(dump)
    assert counts == {"wireguard-preshared-key": 1, "wireguard-private-key": 1}
    lines = redacted.splitlines()
    assert lines[0].split("\t") == [
        "wg0",
        "[REDACTED:wireguard-private-key]",
        iface_public,
        "51820",
        "off",
    ]
    assert lines[1].split("\t")[1:3] == [peer_public, "[REDACTED:wireguard-preshared-key]"]
    assert lines[2] == dump.splitlines()[2]


def test_wg_show_single_interface_dump_has_no_interface_column() -> None:
    private, public = wg_key(), wg_key()
    dump = f"{private}\t{public}\t51820\t0x1234\n"
    redacted, counts = redact_text(dump)
    assert counts == {"wireguard-private-key": 1}
    assert redacted == f"[REDACTED:wireguard-private-key]\t{public}\t51820\t0x1234\n"


def test_wg_show_human_output_already_hides_keys_and_is_left_alone() -> None:
    text = (
        "interface: wg0\n"
        f"  public key: {wg_key()}\n"
        "  private key: (hidden)\n"
        "  listening port: 51820\n"
    )
    assert redact_text(text) == (text, {})


# -- IPsec and OpenVPN ----------------------------------------------------------------------


def test_ip_xfrm_state_keys_are_removed_but_algorithms_and_spis_kept() -> None:
    state = (
        "src 10.98.10.20 dst 10.98.10.10\n"
        "\tproto esp spi 0xc0ffee01 reqid 1 mode tunnel\n"
        "\treplay-window 32 flag af-unspec\n"
        "\tauth-trunc hmac(sha256) 0x0123456789abcdef0123456789abcdef 128\n"
        "\tenc cbc(aes) 0x00112233445566778899aabbccddeeff\n"
        "\taead rfc4106(gcm(aes)) 0xdeadbeefdeadbeefdeadbeefdeadbeefcafebabe 128\n"
    )
    redacted, counts = redact_text(state)
    assert counts == {"ipsec-key": 3}
    assert "spi 0xc0ffee01" in redacted
    assert "\tenc cbc(aes) [REDACTED:ipsec-key]\n" in redacted
    assert "\tauth-trunc hmac(sha256) [REDACTED:ipsec-key] 128\n" in redacted
    assert "0x0011" not in redacted and "deadbeef" not in redacted


def test_openvpn_inline_static_key_is_removed() -> None:
    conf = (
        "remote 10.98.11.10 1194\n<tls-crypt>\n-----BEGIN OpenVPN Static key V1-----\n"
        "6acef03f62675b4b1bbd03e53b187727\n423cad62e2a3a5c6\n"
        "-----END OpenVPN Static key V1-----\n</tls-crypt>\n"
    )
    redacted, counts = redact_text(conf)
    assert counts == {"openvpn-static-key": 1}
    assert redacted == (
        "remote 10.98.11.10 1194\n<tls-crypt>\n[REDACTED:openvpn-static-key]\n</tls-crypt>\n"
    )


# -- password hashes ------------------------------------------------------------------------


def test_shadow_hashes_are_removed_but_accounts_and_lock_marks_kept() -> None:
    shadow = (
        "root:$y$j9T$Cx6qJ1Jk0zGJ0Y6C1pq0o/$4bbYTw1Q8h5y9qFoD9o0Xf3.0FZ9V2hF0m6F7pL1w22:19700:0:"
        "99999:7:::\n"
        "daemon:*:19700:0:99999:7:::\n"
        "auditor:!$6$rounds=5000$saltsalt$M6h8.0V3c9s1q2w3e4r5t6y7u8i9o0p:19700:0:99999:7:::\n"
        "legacy:$1$abcdefgh$0123456789abcdefghijkl:19700::::::\n"
    )
    redacted, counts = redact_text(shadow)
    assert counts == {"password-hash": 3}
    assert "$y$" not in redacted and "$6$" not in redacted and "$1$" not in redacted
    assert redacted.splitlines() == [
        "root:[REDACTED:password-hash]:19700:0:99999:7:::",
        "daemon:*:19700:0:99999:7:::",
        "auditor:![REDACTED:password-hash]:19700:0:99999:7:::",
        "legacy:[REDACTED:password-hash]:19700::::::",
    ]


def test_grub_password_hash_is_removed() -> None:
    line = "password_pbkdf2 root grub.pbkdf2.sha512.10000.9A8B7C.6D5E4F\n"
    redacted, counts = redact_text(line)
    assert counts == {"password-hash": 1}
    assert redacted == "password_pbkdf2 root [REDACTED:password-hash]\n"


def test_shell_positional_parameters_are_not_hashes() -> None:
    text = 'echo "$1$2" && exit $5\n'
    assert redact_text(text) == (text, {})


# -- key/value forms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("password=hunter2", "password=[REDACTED:password]"),
        ("DB_PASSWORD=s3cr3t\n", "DB_PASSWORD=[REDACTED:password]\n"),
        ("mysql --password=abc -h db", "mysql --password=[REDACTED:password] -h db"),
        ("passwd: hunter2", "passwd: [REDACTED:password]"),
        ("  api_token: 'abc def'", "  api_token: [REDACTED:password]"),
        ("client_secret: two words # note", "client_secret: [REDACTED:password] # note"),
        ("SECRET_KEY = 'django-insecure-x'", "SECRET_KEY = [REDACTED:password]"),
        ('{"user": "a", "password": "p\\"w"}', '{"user": "a", "password": [REDACTED:password]}'),
        ('{"token":"abc"}', '{"token":[REDACTED:password]}'),
        (
            "curl 'https://x/?access_token=abc&y=1'",
            "curl 'https://x/?access_token=[REDACTED:password]&y=1'",
        ),
        (
            "url: postgres://app:pa55@db:5432/x",
            "url: postgres://app:[REDACTED:url-password]@db:5432/x",
        ),
        ("Authorization: Bearer eyJhbGciOi.x.y", "Authorization: Bearer [REDACTED:authorization]"),
    ],
)
def test_password_like_fields_are_redacted(line: str, expected: str) -> None:
    redacted, counts = redact_text(line)
    assert redacted == expected
    assert sum(counts.values()) == 1


@pytest.mark.parametrize(
    "line",
    [
        "passwordauthentication no",  # sshd -T
        "PasswordAuthentication: yes",
        "permitemptypasswords no",
        "password\trequisite\tpam_pwquality.so retry=3",  # PAM
        "PASS_MAX_DAYS\t99999",  # login.defs
        "passwd:         files systemd",  # nsswitch.conf: a database, not a secret
        "passwd: files [NOTFOUND=return] sss",
        "token_ttl: 3600",
        "bypass=1",
        "password=",
        "secret_file: /etc/app/secret",
    ],
)
def test_ordinary_configuration_is_left_alone(line: str) -> None:
    assert redact_text(line) == (line, {})


def test_marker_values_are_not_redacted_again() -> None:
    text = "password: [REDACTED:password]\nPrivateKey = [REDACTED:wireguard-private-key]\n"
    assert redact_text(text) == (text, {})


# -- bytes ----------------------------------------------------------------------------------


def test_bytes_that_are_not_utf8_survive_redaction_exactly() -> None:
    content = b"\xff\xfe binary \x00 password=hunter2 \x80\n"
    result = redact(content)
    assert result.content == b"\xff\xfe binary \x00 password=[REDACTED:password] \x80\n"
    assert result.counts == {"password": 1}
    assert result.total == 1


def test_content_without_secrets_is_returned_identical() -> None:
    content = b"Chain INPUT (policy DROP)\n"
    assert redact(content).content is content
    assert redact(content).counts == {}


@pytest.mark.parametrize(
    ("media_type", "redactable"),
    [
        ("text/plain", True),
        ("application/json; charset=utf-8", True),
        ("application/xml", True),
        ("application/vnd.tcpdump.pcap", False),
        ("image/png", False),
    ],
)
def test_binary_media_types_are_not_edited(media_type: str, redactable: bool) -> None:
    assert is_redactable(media_type) is redactable


# -- properties -----------------------------------------------------------------------------

FRAGMENTS = [
    "password",
    "passwd",
    "token",
    "secret",
    "_KEY",
    "PrivateKey",
    "PresharedKey",
    "=",
    " = ",
    ": ",
    ":",
    '"',
    "'",
    "\\",
    "\n",
    "\t",
    " ",
    "[",
    "]",
    "#",
    "&",
    "$6$",
    "$y$",
    "saltsalt",
    "-----BEGIN OPENSSH PRIVATE KEY-----",
    "-----END OPENSSH PRIVATE KEY-----",
    "-----BEGIN RSA PRIVATE KEY-----",
    "[REDACTED:password]",
    "[REDACTED:",
    "https://u:",
    "@h",
    "Authorization: Bearer ",
    "(none)",
    "51820",
    "wg0",
    "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=",
    "files",
    "x",
    "\tenc cbc(aes) ",
    "0xdeadbeef",
    "-----BEGIN OpenVPN Static key V1-----",
    "-----END OpenVPN Static key V1-----",
]
secretish_text = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=300), secretish_text))
def test_redaction_never_raises_and_is_idempotent(text: str) -> None:
    once, _ = redact_text(text)
    twice, counts_again = redact_text(once)
    assert twice == once
    assert counts_again == {}


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_byte_redaction_never_raises_and_is_idempotent(content: bytes) -> None:
    once = redact(content)
    assert redact(once.content).content == once.content


SECRET_ALPHABET = st.characters(
    codec="utf-8",
    exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp"),
    exclude_characters="\"',;&}]#[\\\x85",
)


@settings(max_examples=300, deadline=None)
@given(
    key=st.sampled_from(["password", "DB_PASSWORD", "api_token", "client_secret", "x-api-key"]),
    value=st.text(SECRET_ALPHABET, min_size=1, max_size=40),
)
def test_any_planted_value_is_removed_entirely(key: str, value: str) -> None:
    assert redact_text(f"{key}={value}\n")[0] == f"{key}=[REDACTED:password]\n"
    assert redact_text(f"  {key}: {value}\n")[0] == f"  {key}: [REDACTED:password]\n"
    assert redact_text(f'{{"{key}": "{value}"}}')[0] == f'{{"{key}": [REDACTED:password]}}'


# -- the line gate: the fast path must give exactly what the full search gives -------------

GATE_FRAGMENTS = [
    *FRAGMENTS,
    "PASSWORD",
    "PaSsWd",
    "Psk",
    "pwd",
    "credentials",
    "API-KEY",
    "access_key",
    "private.key",
    "AUTHORIZATION: basic ",
    "ftp://",
    "0X",
    "\taead rfc4106(gcm(aes)) ",
    "privatekey = ",
    # Unicode case folding: "ſ" matches "s" and "K" (Kelvin) matches "k" when case is
    # ignored, yet neither lowers to ASCII; "İ" lowers to two characters.
    "paſſword",
    "api_Key",
    "İ",
    "ß",
    # Line breaks of str.splitlines() that are not line breaks to a regular expression.
    "\r",
    "\x85",
    "\u2028",
]
UNGATED_RULES: tuple[Rule, ...] = (
    _redact_key_blocks,
    _value_substitution(_WG_CONFIG_LINE, _wireguard_config_kind),
    _redact_wg_dump,
    _value_substitution(_XFRM_KEY, lambda _: "ipsec-key"),
    _pattern_rule(_CRYPT_HASH, "password-hash"),
    _pattern_rule(_GRUB_HASH, "password-hash"),
    _value_substitution(_URL_PASSWORD, lambda _: "url-password"),
    _value_substitution(_AUTH_HEADER, lambda _: "authorization"),
    _value_substitution(_KEY_VALUE, _key_value_kind),
)


def _redact_without_gates(text: str) -> tuple[str, dict[str, int]]:
    counts: Counter[str] = Counter()
    for rule in UNGATED_RULES:
        text = rule(text, counts)
    return text, dict(sorted(counts.items()))


def _one_pass(text: str) -> tuple[str, dict[str, int]]:
    counts: Counter[str] = Counter()
    for rule in _RULES:
        text = rule(text, counts)
    return text, dict(sorted(counts.items()))


def test_the_rules_are_the_ungated_rules_in_the_same_order() -> None:
    assert len(_RULES) == len(UNGATED_RULES)
    sample = "PrivateKey = x\nhttps://u:p@h\nAuthorization: Bearer t\n\tenc cbc(aes) 0xab\n"
    sample += "db_password=hunter2\nuser:$6$saltsalt$hashhash:1\n"
    assert _one_pass(sample) == _redact_without_gates(sample)
    assert _one_pass(sample)[1]["password"] == 1


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(GATE_FRAGMENTS), max_size=40).map("".join))
def test_gated_rules_redact_exactly_what_the_full_search_does(text: str) -> None:
    assert _one_pass(text) == _redact_without_gates(text)


def test_a_non_ascii_key_that_matches_only_by_case_folding_is_still_redacted() -> None:
    # The pattern ignores case the Unicode way: "ſ" stands for "s". Lowering the text would
    # miss it; the gate must not.
    text = "é\npaſſword=hunter2\n"
    assert redact_text(text) == _redact_without_gates(text)
    assert "hunter2" not in redact_text(text)[0]
