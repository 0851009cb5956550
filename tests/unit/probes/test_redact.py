"""Redaction of secrets from artifacts, on the forms real tools print them in."""

from __future__ import annotations

import base64
import re
from collections import Counter

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa, x25519
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from probes.redact import (
    _AUTH_HEADER,
    _COOKIE_HEADER,
    _CRYPT_HASH,
    _CURL_USER,
    _DES_CRYPT,
    _DIRECTIVE_PASSWORD,
    _GRUB_HASH,
    _IPSEC_SECRET,
    _KEY_VALUE,
    _LDAP_HASH,
    _NETRC_LOGIN_PASSWORD,
    _NETRC_PASSWORD,
    _NTP_KEY,
    _OPTION_VALUE,
    _PROGRAM_PASSWORD,
    _RULES,
    _SASL_PASSWORD,
    _SET_COOKIE_HEADER,
    _SNMP_COMMUNITY,
    _TOKEN,
    _URL_PASSWORD,
    _WG_CONFIG_LINE,
    _XFRM_KEY,
    _YAML_BLOCK,
    MARKER_PREFIX,
    Rule,
    _des_crypt_kind,
    _key_value_kind,
    _option_kind,
    _pattern_rule,
    _redact_key_blocks,
    _redact_wg_dump,
    _token_kind,
    _value_substitution,
    _wireguard_config_kind,
    _yaml_block_kind,
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


@pytest.mark.parametrize(
    "hashed",
    [
        "$1$abcdefgh$0123456789abcdefghijkl",  # md5crypt
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",  # bcrypt
        "$5$rounds=5000$saltsalt$4bbYTw1Q8h5y9qFoD9o0Xf3.0FZ9V2hF0m6F7pL1w22",  # sha256crypt
        "$6$saltsalt$M6h8.0V3c9s1q2w3e4r5t6y7u8i9o0p",  # sha512crypt
        "$y$j9T$Cx6qJ1Jk0zGJ0Y6C1pq0o/$4bbYTw1Q8h5y9qFoD9o0Xf3.0FZ9V2hF0m6F7pL1w22",  # yescrypt
        "$apr1$abcdefgh$0123456789abcdefghijk.",  # Apache's MD5 (htpasswd)
        "abJnggxhB/yWI",  # traditional DES crypt
        "{SSHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g9cmF0",
        "{SSHA256}UXNrZlZyb3ZjbHlYYVRTcmFiRXRzaDNMeUhSR1JZbnd3cz0=",
        "{SSHA512}sL6g3ZO1sRDBRyjqoRjmiJ2lETLzeP9wVQnLSzCYvfkzAw==",
        "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
        "{SMD5}jNoSMzNt0WIcZ7Tnj9XYHXo8Wsc=",
        "{CRYPT}$6$saltsalt$M6h8.0V3c9s1q2w3e4r5t6y7u8i9o0p",
    ],
)
def test_password_hashes_of_every_scheme_are_removed(hashed: str) -> None:
    shadow = f"alice:{hashed}:19700:0:99999:7:::\n"
    assert redact_text(shadow) == (
        "alice:[REDACTED:password-hash]:19700:0:99999:7:::\n",
        {"password-hash": 1},
    )
    htpasswd = f"alice:{hashed}\n"
    assert redact_text(htpasswd) == ("alice:[REDACTED:password-hash]\n", {"password-hash": 1})


def test_des_crypt_in_passwd_and_locked_shadow_entries_is_removed() -> None:
    text = (
        "olduser:abJnggxhB/yWI:1001:1001:Old User:/home/olduser:/bin/sh\n"
        "locked:!!aB3dE6gH9jK2m:19700::::::\n"
    )
    redacted, counts = redact_text(text)
    assert counts == {"password-hash": 2}
    assert redacted == (
        "olduser:[REDACTED:password-hash]:1001:1001:Old User:/home/olduser:/bin/sh\n"
        "locked:!![REDACTED:password-hash]:19700::::::\n"
    )


@pytest.mark.parametrize(
    "line",
    [
        "state:Authenticated:1:",  # a word, not a hash
        "event:1732640000000:1:",  # a millisecond timestamp
        "daemon:*:19700:0:99999:7:::",
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
        "echo ${SHA}abcdef",  # a shell expansion
        "printf '{{md5}}x'",  # a template
    ],
)
def test_fields_shaped_like_hashes_are_left_alone(line: str) -> None:
    assert redact_text(line) == (line, {})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "dn: uid=alice,ou=people,dc=example,dc=com\nuserPassword: {SSHA}W6ph5Mm5Pz8GgiULbP==\n",
            "dn: uid=alice,ou=people,dc=example,dc=com\nuserPassword: [REDACTED:password-hash]\n",
        ),
        ("rootpw {SSHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", "rootpw [REDACTED:password-hash]\n"),
        (
            "alice:{PLAIN}hunter2:1000:1000::/home/alice\n",  # dovecot passwd-file
            "alice:[REDACTED:password-hash]:1000:1000::/home/alice\n",
        ),
    ],
)
def test_ldap_style_hashes_go_whole_in_any_setting(text: str, expected: str) -> None:
    assert redact_text(text) == (expected, {"password-hash": 1})


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
        # sssd.conf, OpenLDAP cn=config, slapcat's base64 (LDIF "::")
        ("ldap_default_authtok = s3cr3t pass", "ldap_default_authtok = [REDACTED:password]"),
        ("olcRootPW: s3cr3t", "olcRootPW: [REDACTED:password]"),
        ("userPassword:: e1NTSEF9VzZwaDVNbTU=", "userPassword:: [REDACTED:password]"),
        # URLs: an empty user (redis), an unencoded '@' in the user and in the password
        ("redis://:hunter2@cache:6379/0", "redis://:[REDACTED:url-password]@cache:6379/0"),
        (
            "https://alice@example.com:p@ss@git.example.com/repo.git",
            "https://alice@example.com:[REDACTED:url-password]@git.example.com/repo.git",
        ),
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
        "ldap_default_authtok_type = password",
        "Failed password for root from 10.98.10.5 port 22 ssh2",  # auth.log
        "the password is wrong",
        "Community edition is free.",
        "https://example.com:8443/path",
        "ssh://git@example.com:2222/repo",
    ],
)
def test_ordinary_configuration_is_left_alone(line: str) -> None:
    assert redact_text(line) == (line, {})


def test_marker_values_are_not_redacted_again() -> None:
    text = "password: [REDACTED:password]\nPrivateKey = [REDACTED:wireguard-private-key]\n"
    assert redact_text(text) == (text, {})


@pytest.mark.parametrize(
    "text",
    [
        "mysql -u root -p[REDACTED:password] db",
        "sshpass -p [REDACTED:password] ssh host",
        "app --token [REDACTED:github-token]",
        "curl -u admin:[REDACTED:password] https://x",
        "curl -u [REDACTED:password] https://x",
        "https://[REDACTED:url-password]@host/",
        "root:[REDACTED:password-hash]:19700:0:99999:7:::",
        "userPassword: [REDACTED:password-hash]",
        ": PSK [REDACTED:ipsec-secret]",
        "machine h login u password [REDACTED:password]",
        "bindpw [REDACTED:password]",
        "rocommunity [REDACTED:snmp-community] default",
        "1 SHA1 HEX:[REDACTED:ntp-key]",
        "Cookie: [REDACTED:cookie]",
        "Set-Cookie: sid=[REDACTED:cookie]; Secure",
        "[smtp.example.com]:587 user:[REDACTED:password]",
        "[REDACTED:password] [REDACTED:password]",
        "password: |\n  [REDACTED:password]\n",
        "token:\n  [REDACTED:password]\n",
    ],
)
def test_every_form_leaves_its_own_marker_alone(text: str) -> None:
    assert redact_text(text) == (text, {})


# -- command lines --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "mysqld --password hunter2 --user=mysql",
            "mysqld --password [REDACTED:password] --user=mysql",
        ),
        ("mysql -uroot -phunter2 -h db", "mysql -uroot -p[REDACTED:password] -h db"),
        (
            "/usr/bin/mysqldump -u backup -p'pass word' --all-databases",
            "/usr/bin/mysqldump -u backup -p[REDACTED:password] --all-databases",
        ),
        ("mariadb -h db -phunter2 app", "mariadb -h db -p[REDACTED:password] app"),
        (  # the ssh command's -p is its port
            "sshpass -p hunter2 ssh -p 2222 admin@10.98.10.10",
            "sshpass -p [REDACTED:password] ssh -p 2222 admin@10.98.10.10",
        ),
        ("sshpass -v -phunter2 scp f host:", "sshpass -v -p[REDACTED:password] scp f host:"),
        (
            "ldapsearch -x -D cn=admin,dc=example,dc=com -w hunter2 -b dc=example,dc=com",
            "ldapsearch -x -D cn=admin,dc=example,dc=com -w [REDACTED:password] "
            "-b dc=example,dc=com",
        ),
        ("deploy --apikey abc123 --env prod", "deploy --apikey [REDACTED:password] --env prod"),
        ("vault-agent --secret 's3 cr3t'", "vault-agent --secret [REDACTED:password]"),
        ("runner --auth-token abc123", "runner --auth-token [REDACTED:password]"),
        ("Connect-Api -Token abc123", "Connect-Api -Token [REDACTED:password]"),  # PowerShell
        ("curl -u admin:hunter2 https://x", "curl -u admin:[REDACTED:password] https://x"),
        (
            "curl -su 'admin:hunter 2' https://x",
            "curl -su 'admin:[REDACTED:password]' https://x",
        ),
        ("curl --user admin:hunter2 https://x", "curl --user admin:[REDACTED:password] https://x"),
        ("curl --user=admin:hunter2 https://x", "curl --user=admin:[REDACTED:password] https://x"),
        (
            "curl -x http://proxy:3128 -U proxyuser:hunter2 https://x",
            "curl -x http://proxy:3128 -U proxyuser:[REDACTED:password] https://x",
        ),
    ],
)
def test_passwords_on_command_lines_are_redacted(line: str, expected: str) -> None:
    assert redact_text(line) == (expected, {"password": 1})


def test_a_token_in_an_option_is_reported_by_its_format() -> None:
    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    assert redact_text(f"gh auth login --token {token}") == (
        "gh auth login --token [REDACTED:github-token]",
        {"github-token": 1},
    )
    assert redact_text("stripe --api-key sk_live_4eC39HqLyjWDarjtT1zdp7dc") == (
        "stripe --api-key [REDACTED:stripe-key]",
        {"stripe-key": 1},
    )


@pytest.mark.parametrize(
    "line",
    [
        "mysql -u root -p appdb",  # -p alone prompts; appdb is the database
        "mysql -h db -P3306 -u root",  # -P is the port
        "mysql --password -h db",  # prompts: the next word is an option
        "ssh -p 2222 admin@10.98.10.10",
        "docker run -u 1000:1000 image",  # uid:gid, not user:password
        "sudo -u postgres psql",
        "curl -u admin https://x",  # curl prompts for the password
        "mkdir -p /var/lib/mysql",
        "ldapsearch -x -W -b dc=example,dc=com",  # -W prompts
        "pg_dump --no-password -h db app",
        "ansible-playbook --ask-vault-password site.yml",
        "gh auth status --show-token",
        "docker login --password-stdin",
        "nmap -p 22,80 10.98.10.10",
        "usermod --password '*' auditor",  # locks the account
    ],
)
def test_command_lines_without_a_password_are_left_alone(line: str) -> None:
    assert redact_text(line) == (line, {})


# -- tokens by their format -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "kind"),
    [
        ("ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "github-token"),
        ("gho_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "github-token"),
        ("ghu_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "github-token"),
        ("ghs_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "github-token"),
        ("ghr_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "github-token"),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123", "github-token"),
        ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe-key"),
        ("sk_test_4eC39HqLyjWDarjtT1zdp7dc", "stripe-key"),
        ("rk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe-key"),
        ("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "slack-token"),
        ("xoxp-123456789012-1234567890123-1234567890123-abcdef0123456789", "slack-token"),
        ("xoxa-2-123456789012-abcdef0123456789", "slack-token"),
        ("xoxs-123456789012-abcdef0123456789", "slack-token"),
        (
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
            "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
            "jwt",
        ),
    ],
)
def test_tokens_are_recognised_by_their_format_wherever_they_are(token: str, kind: str) -> None:
    for text in (f"{token}\n", f"export X={token}\n", f'{{"value": "{token}"}}', f"echo {token} |"):
        assert redact_text(text) == (text.replace(token, marker(kind)), {kind: 1})


@pytest.mark.parametrize(
    "text",
    [
        "ghp_token is the variable",
        "pk_live_4eC39HqLyjWDarjtT1zdp7dc",  # publishable, not secret
        "task_live_configuration",  # "sk_live_" inside a word
        "xoxb-short",
        "eyJhbGciOiJIUzI1NiJ9",  # a header alone
    ],
)
def test_token_lookalikes_are_left_alone(text: str) -> None:
    assert redact_text(text) == (text, {})


# -- configuration files of particular programs ---------------------------------------------


def test_ipsec_secrets_are_removed_but_selectors_and_key_files_kept() -> None:
    secrets = (
        "# /etc/ipsec.secrets\n"
        '10.98.10.10 10.98.10.20 : PSK "shared secret"\n'
        "@moon @sun : PSK 0sFpZAZqEN6Ti9sqt4ZP5EWcqx\n"
        'carol@strongswan.org : EAP "carol pass"\n'
        ': XAUTH "xauth pass"\n'
        ': RSA moonKey.pem "key passphrase"\n'
        ": RSA plainKey.pem\n"
        ": ECDSA other.pem %prompt\n"
    )
    redacted, counts = redact_text(secrets)
    assert counts == {"ipsec-secret": 5}
    assert redacted == (
        "# /etc/ipsec.secrets\n"
        "10.98.10.10 10.98.10.20 : PSK [REDACTED:ipsec-secret]\n"
        "@moon @sun : PSK [REDACTED:ipsec-secret]\n"
        "carol@strongswan.org : EAP [REDACTED:ipsec-secret]\n"
        ": XAUTH [REDACTED:ipsec-secret]\n"
        ": RSA moonKey.pem [REDACTED:ipsec-secret]\n"
        ": RSA plainKey.pem\n"
        ": ECDSA other.pem %prompt\n"
    )


def test_netrc_passwords_are_removed_on_one_line_or_several() -> None:
    netrc = (
        "machine api.example.com login deploy password hunter2\n"
        "machine ftp.example.com\n"
        "  login anonymous\n"
        "  password guest@\n"
        "default login anonymous password me@example.com account x\n"
        "login deploy password hunter3\n"
    )
    redacted, counts = redact_text(netrc)
    assert counts == {"password": 4}
    assert redacted == (
        "machine api.example.com login deploy password [REDACTED:password]\n"
        "machine ftp.example.com\n"
        "  login anonymous\n"
        "  password [REDACTED:password]\n"
        "default login anonymous password [REDACTED:password] account x\n"
        "login deploy password [REDACTED:password]\n"
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("bindpw s3cr3t with spaces", "bindpw [REDACTED:password]"),  # nslcd.conf
        ("rootpwmodpw s3cr3t\n", "rootpwmodpw [REDACTED:password]\n"),
        ("rootpw secret", "rootpw [REDACTED:password]"),  # slapd.conf
        ("rootpw --plaintext hunter2", "rootpw --plaintext [REDACTED:password]"),  # kickstart
        ("/etc/nslcd.conf:12:bindpw s3cr3t", "/etc/nslcd.conf:12:bindpw [REDACTED:password]"),
    ],
)
def test_ldap_bind_passwords_are_removed(line: str, expected: str) -> None:
    assert redact_text(line) == (expected, {"password": 1})


def test_snmp_community_strings_are_removed_but_sources_kept() -> None:
    conf = (
        "rocommunity public 10.98.0.0/16\n"
        "rwcommunity s3cret localhost .1.3.6.1.2.1.1\n"
        "rocommunity6 public6 default\n"
        "com2sec readonly default public2\n"
        "trap2sink 10.98.10.5 trapsecret\n"
        "snmp-server community cisco RO 10\n"
        "community s3cret\n"
        'community = "public"\n'  # Telegraf
        "snmp_community: public\n"  # Ansible variables
    )
    redacted, counts = redact_text(conf)
    assert counts == {"snmp-community": 9}
    assert redacted == (
        "rocommunity [REDACTED:snmp-community] 10.98.0.0/16\n"
        "rwcommunity [REDACTED:snmp-community] localhost .1.3.6.1.2.1.1\n"
        "rocommunity6 [REDACTED:snmp-community] default\n"
        "com2sec readonly default [REDACTED:snmp-community]\n"
        "trap2sink 10.98.10.5 [REDACTED:snmp-community]\n"
        "snmp-server community [REDACTED:snmp-community] RO 10\n"
        "community [REDACTED:snmp-community]\n"
        "community = [REDACTED:snmp-community]\n"
        "snmp_community: [REDACTED:snmp-community]\n"
    )


def test_ntp_key_files_lose_the_key_column_only() -> None:
    keys = (
        "# /etc/chrony/chrony.keys\n"
        "1 SHA1 HEX:B2159C05D6A219673A3B7E896B6DE07F6A440995\n"
        "2 MD5 ASCII:kangaroo\n"
        "3 AES128 HEX:6F1B5F9C8E3A4D2B1C0A9F8E7D6C5B4A\n"
        "4 MD5 tulip\n"  # no prefix: ASCII
        "5 M secret\n"  # ntpd's ntp.keys
        '11 MD5 L";Nw<`.I<f4U0)247"i  # MD5 key\n'  # as ntp-keygen writes it
    )
    redacted, counts = redact_text(keys)
    assert counts == {"ntp-key": 6}
    assert redacted == (
        "# /etc/chrony/chrony.keys\n"
        "1 SHA1 HEX:[REDACTED:ntp-key]\n"
        "2 MD5 ASCII:[REDACTED:ntp-key]\n"
        "3 AES128 HEX:[REDACTED:ntp-key]\n"
        "4 MD5 [REDACTED:ntp-key]\n"
        "5 M [REDACTED:ntp-key]\n"
        "11 MD5 [REDACTED:ntp-key]  # MD5 key\n"
    )


def test_http_cookies_are_removed_but_cookie_attributes_kept() -> None:
    exchange = (
        "> GET / HTTP/1.1\r\n"
        "> Cookie: session=abc123; theme=dark\r\n"
        "< HTTP/1.1 200 OK\r\n"
        "< Set-Cookie: session=def456; Path=/; Secure; HttpOnly; SameSite=Lax\r\n"
        "< set-cookie: old=; Max-Age=0\r\n"  # a deletion carries nothing
    )
    redacted, counts = redact_text(exchange)
    assert counts == {"cookie": 2}
    assert redacted == (
        "> GET / HTTP/1.1\r\n"
        "> Cookie: [REDACTED:cookie]\r\n"
        "< HTTP/1.1 200 OK\r\n"
        "< Set-Cookie: session=[REDACTED:cookie]; Path=/; Secure; HttpOnly; SameSite=Lax\r\n"
        "< set-cookie: old=; Max-Age=0\r\n"
    )


def test_postfix_sasl_passwords_are_removed_but_relays_and_users_kept() -> None:
    sasl_passwd = (
        "[smtp.example.com]:587 relay@example.com:hunter2\n"
        "smtp.example.net:465 user:pa:ss\n"
        "@example.org sender@example.org:hunter3\n"
    )
    redacted, counts = redact_text(sasl_passwd)
    assert counts == {"password": 3}
    assert redacted == (
        "[smtp.example.com]:587 relay@example.com:[REDACTED:password]\n"
        "smtp.example.net:465 user:[REDACTED:password]\n"
        "@example.org sender@example.org:[REDACTED:password]\n"
    )


def test_yaml_values_on_the_lines_after_their_key_are_removed() -> None:
    yaml = (
        "db:\n"
        "  password: |\n"
        "    first line\n"
        "\n"
        "    second line\n"
        "  api_token: >-  # folded\n"
        "    folded\n"
        "    token\n"
        "  secret: !vault |\n"
        "    $ANSIBLE_VAULT;1.1;AES256\n"
        "    62313365396662343061393464336163\n"
        "  passphrase:\n"
        "    plain and continued\n"
        "  users:\n"
        "    - password:\n"
        "        in a list\n"
        "  user: app\n"
    )
    redacted, counts = redact_text(yaml)
    assert counts == {"password": 5}
    assert redacted == (
        "db:\n"
        "  password: |\n"
        "    [REDACTED:password]\n"
        "  api_token: >-  # folded\n"
        "    [REDACTED:password]\n"
        "  secret: !vault |\n"
        "    [REDACTED:password]\n"
        "  passphrase:\n"
        "    [REDACTED:password]\n"
        "  users:\n"
        "    - password:\n"
        "        [REDACTED:password]\n"
        "  user: app\n"
    )


def test_yaml_blocks_keep_windows_line_ends() -> None:
    yaml = "password: |\r\n  hunter2\r\n\r\n  more\r\nuser: app\r\n"
    assert redact_text(yaml) == (
        "password: |\r\n  [REDACTED:password]\r\nuser: app\r\n",
        {"password": 1},
    )


@pytest.mark.parametrize(
    "yaml",
    [
        "password:\n  min_length: 12\n  require_digit: true\n",  # a policy, not a value
        "- name: policy\n  password:\n    - length\n    - digits\n",
        "password: |\n",  # nothing follows
        "password:\nuser: app\n",  # not indented: an empty value
    ],
)
def test_yaml_structure_under_a_sensitive_key_is_left_alone(yaml: str) -> None:
    assert redact_text(yaml) == (yaml, {})


@pytest.mark.parametrize(
    "line",
    [
        "10 tulip",  # a chrony key without hash name: any two-column output looks like it
        "  1234 root  /usr/sbin/sshd -D",
        "2 packages can be upgraded.",
        "web-1 nginx:1.25",
        "listen 127.0.0.1:8080",
        "server 10.98.10.1:123 iburst",
        "password required pam_unix.so",
        "rootpw --lock",
        "the community plugin",
        "Set-Cookie: session=; Max-Age=0",
    ],
)
def test_lines_that_only_resemble_configuration_secrets_are_left_alone(line: str) -> None:
    assert redact_text(line) == (line, {})


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
    # command lines
    "mysql ",
    " -p",
    "sshpass -p ",
    "ldapsearch -w ",
    "curl ",
    " -u ",
    "--user=",
    "a:b",
    "--token ",
    " --password ",
    "-",
    # token formats
    "ghp_A1b2C3d4E5f6G7h8I9j0K1l2",
    "sk_live_4eC39HqLyjWD",
    "xoxb-1234-5678-abcdef",
    "eyJhbGciOiJI.eyJzdWIi.Sfl",
    # hashes
    "{SSHA}",
    "{CRYPT}",
    "$apr1$",
    "root:",
    "abJnggxhB/yWI",
    ":19700:",
    "!",
    # configuration files
    ": PSK ",
    ": RSA k.pem ",
    "%prompt",
    "machine h ",
    "login u ",
    "password ",
    "bindpw ",
    "rootpw --plaintext ",
    "rocommunity ",
    "community",
    "com2sec a b ",
    "trap2sink h ",
    "1 SHA1 HEX:",
    "2 md5 ",
    "Cookie: ",
    "Set-Cookie: a=",
    "[smtp.example.com]:587 ",
    "@example.org ",
    "redis://:",
    "userPassword:: ",
    "ldap_default_authtok = ",
    # YAML blocks
    "password: |",
    "secret: !vault >-",
    "token:",
    "\n  ",
    "- ",
    " # c",
    "\r\n",
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


# Each form with "{}" where its secret goes, and what stands around the marker once it is gone.
PLANTED_FORMS = [
    "mysql -u root -p{} appdb\n",
    "sshpass -p {} ssh host\n",
    "ldapsearch -x -w {} -b dc=example\n",
    "curl -u admin:{} https://x\n",
    "machine h login u password {}\n",
    "  password {}\n",
    "bindpw {}\n",
    "rocommunity {} default\n",
    "com2sec ro default {}\n",
    "1 SHA1 HEX:{}\n",
    "4 MD5 {}\n",
    "10.98.10.10 : PSK {}\n",
    "[smtp.example.com]:587 user@example.com:{}\n",
    "> Cookie: {}\n",
    "< Set-Cookie: sid={}; Secure\n",
    "password: |\n  {}\nuser: app\n",
    "  token:\n    {}\n",
]


@settings(max_examples=300, deadline=None)
@given(form=st.sampled_from(PLANTED_FORMS), value=st.text(SECRET_ALPHABET, min_size=1, max_size=40))
def test_any_value_planted_in_a_form_is_removed_entirely(form: str, value: str) -> None:
    # A lone "=" or ":" after a keyword is a separator ("community = value"), not a value; in
    # YAML, a lone "-" or a trailing ":" makes a sequence or a mapping, not a plain scalar.
    assume(value not in ("=", ":"))
    assume(not form.startswith("  token:") or (value != "-" and not value.endswith(":")))
    # A value may itself look like a hash, a URL or a token: the marker may then name that kind.
    before, after = form.split("{}")
    pattern = rf"{re.escape(before)}\[REDACTED:[a-z-]+\]{re.escape(after)}"
    assert re.fullmatch(pattern, redact_text(form.format(value))[0])


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
    "MYSQL",
    "Curl",
    "SSHPASS",
    "ROCOMMUNITY ",
    "Snmp-Server Community ",
    "COM2SEC6 ",
    "Trap2Sink ",
    ": psk ",
    "1 sha1 hex:",
    " M ",
    "COOKIE: ",
    "set-cookie: ",
    "GHP_A1b2C3d4E5f6G7h8I9j0K1l2",
    "EYJhbGciOiJI.eyJzdWIi.Sfl",
    "{ssha}",
    "BINDPW ",
    "/etc/nslcd.conf:3:",
    "PASSWORD: >",
    "  - Secret:",
    "\n\n\t",
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
    _value_substitution(_LDAP_HASH, lambda _: "password-hash"),
    _pattern_rule(_CRYPT_HASH, "password-hash"),
    _pattern_rule(_GRUB_HASH, "password-hash"),
    _value_substitution(_DES_CRYPT, _des_crypt_kind),
    _value_substitution(_URL_PASSWORD, lambda _: "url-password"),
    _value_substitution(_AUTH_HEADER, lambda _: "authorization"),
    _value_substitution(_COOKIE_HEADER, lambda _: "cookie"),
    _value_substitution(_SET_COOKIE_HEADER, lambda _: "cookie"),
    _value_substitution(_TOKEN, _token_kind),
    _value_substitution(_CURL_USER, lambda _: "password"),
    _value_substitution(_PROGRAM_PASSWORD, lambda _: "password"),
    _value_substitution(_IPSEC_SECRET, lambda _: "ipsec-secret"),
    _value_substitution(_SNMP_COMMUNITY, lambda _: "snmp-community"),
    _value_substitution(_NTP_KEY, lambda _: "ntp-key"),
    _value_substitution(_SASL_PASSWORD, lambda _: "password"),
    _value_substitution(_YAML_BLOCK, _yaml_block_kind),
    _value_substitution(_OPTION_VALUE, _option_kind),
    _value_substitution(_NETRC_PASSWORD, lambda _: "password"),
    _value_substitution(_NETRC_LOGIN_PASSWORD, lambda _: "password"),
    _value_substitution(_DIRECTIVE_PASSWORD, lambda _: "password"),
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


# One line for each ungated rule, in order (several gated rules share one gate search).
EVERY_FORM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbg==\n-----END OPENSSH PRIVATE KEY-----\n"
    "PrivateKey = x\n"
    f"{wg_key()}\t{wg_key()}\t51820\toff\n"
    "\tenc cbc(aes) 0xab\n"
    "userPassword: {SSHA}W6ph5Mm5Pz8=\n"
    "user:$6$saltsalt$hashhash:1\n"
    "password_pbkdf2 root grub.pbkdf2.sha512.10000.AB\n"
    "old:abJnggxhB/yWI:19700::::::\n"
    "https://u:p@h\n"
    "Authorization: Bearer t\n"
    "Cookie: a=b\n"
    "Set-Cookie: a=b\n"
    "echo xoxb-1234-5678-abcdef\n"
    "curl -u a:b https://x\n"
    "mysql -pX\n"
    ": PSK x\n"
    "rocommunity x\n"
    "1 SHA1 HEX:ab\n"
    "[relay]:587 u:p\n"
    "secret: |\n  x\n"
    "app --token x\n"
    "password x\n"
    "login u password x\n"
    "bindpw x\n"
    "db_password=hunter2\n"
)


def test_the_rules_are_the_ungated_rules_in_the_same_order() -> None:
    redacted, counts = _one_pass(EVERY_FORM)
    assert (redacted, counts) == _redact_without_gates(EVERY_FORM)
    assert redacted.count(MARKER_PREFIX) == len(UNGATED_RULES)
    assert counts["password"] == 9


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
