"""Parsers of the outputs the SSH collector gathers: one module per tool.

Each parser is a pure function from text to typed facts and raises ``ParseError`` (never
another exception) on input it does not understand.
"""

from probes.parsers.audit import (
    parse_audit_config,
    parse_auditctl_rules,
    parse_auditctl_status,
)
from probes.parsers.errors import ParseError
from probes.parsers.grep import parse_grep_lines
from probes.parsers.hostkey import fingerprint_sha256, parse_host_key
from probes.parsers.iproute import parse_ip_addr, parse_ip_route, parse_ip_rule
from probes.parsers.keyvalue import parse_dpkg_query, parse_flag, parse_machine_id, parse_os_release
from probes.parsers.nft import parse_nft_ruleset
from probes.parsers.pam import parse_pam_directory
from probes.parsers.ps import parse_ps
from probes.parsers.ss import parse_ss
from probes.parsers.wireguard import WgOutputs, parse_wireguard

__all__ = [
    "ParseError",
    "WgOutputs",
    "fingerprint_sha256",
    "parse_audit_config",
    "parse_auditctl_rules",
    "parse_auditctl_status",
    "parse_dpkg_query",
    "parse_flag",
    "parse_grep_lines",
    "parse_host_key",
    "parse_ip_addr",
    "parse_ip_route",
    "parse_ip_rule",
    "parse_machine_id",
    "parse_nft_ruleset",
    "parse_os_release",
    "parse_pam_directory",
    "parse_ps",
    "parse_ss",
    "parse_wireguard",
]
