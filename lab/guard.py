"""The forward guard: an nftables table on the host so the host never routes lab traffic.

The host forwards packets (ip_forward may be 1) and has default routes of its own: a lab
container given a route via its bridge's ``.1`` would otherwise have its packets routed to
another lab segment or out of the machine (docs/lab.md, Safety). The table, family ``inet`` so
IPv4 and IPv6 alike, drops in the forward hook every packet that enters or leaves a lab
bridge or carries a lab address, except packets bridged within one segment: with
``br_netfilter`` loaded those also traverse the forward hook, with the same bridge as input
and output interface, and they are ordinary traffic between neighbours.

Its output hook keeps the host's own packets to lab addresses on the lab bridges: before a
bridge exists (netavark creates it when the first container starts), the host's default
route would otherwise carry such a packet out of the machine.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from lab.errors import LabError
from lab.model import AUTHORIZED_SCOPE

TABLE = "auditor_lab_guard"
FAMILY = "inet"


def _nft(script: str | None = None, *args: str, check: bool = True) -> str:
    nft = shutil.which("nft")
    if nft is None:
        raise LabError("nft is not installed (apt-get install nftables)")
    cmd = [nft, "-f", "-"] if script is not None else [nft, *args]
    proc = subprocess.run(cmd, input=script, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"nft failed: {proc.stderr.strip()}")
    return proc.stdout


def guard_script() -> str:
    """The table with its address-based drops; bridges are added once they exist."""
    ipv4, ipv6 = AUTHORIZED_SCOPE
    return f"""
table {FAMILY} {TABLE} {{
    set lab_bridges {{
        type ifname
    }}
    chain same_segment {{
    }}
    chain forward {{
        type filter hook forward priority -10; policy accept;
        jump same_segment
        iifname @lab_bridges counter drop
        oifname @lab_bridges counter drop
        ip saddr {ipv4} counter drop
        ip daddr {ipv4} counter drop
        ip6 saddr {ipv6} counter drop
        ip6 daddr {ipv6} counter drop
    }}
    chain output {{
        type filter hook output priority -10; policy accept;
        oifname "lo" accept
        oifname @lab_bridges accept
        ip daddr {ipv4} counter drop
        ip6 daddr {ipv6} counter drop
    }}
}}
"""


def install() -> None:
    """Create the guard afresh (before any lab network or container exists)."""
    remove()
    _nft(guard_script())


def add_bridge(bridge: str) -> None:
    """Allow bridging within one lab segment and drop anything routed to or from it."""
    _nft(
        f'add element {FAMILY} {TABLE} lab_bridges {{ "{bridge}" }}\n'
        f'add rule {FAMILY} {TABLE} same_segment iifname "{bridge}" oifname "{bridge}" accept\n'
    )


def remove_bridge(bridge: str) -> None:
    """Undo ``add_bridge`` once the bridge's network is gone (the table stays, with the
    other bridges and the address drops); nothing to do when the table is not there."""
    if not is_installed():
        return
    _nft(None, "delete", "element", FAMILY, TABLE, "lab_bridges", f'{{ "{bridge}" }}', check=False)
    listing = _nft(None, "-a", "list", "chain", FAMILY, TABLE, "same_segment")
    for handle in same_segment_handles(listing, bridge):
        _nft(None, "delete", "rule", FAMILY, TABLE, "same_segment", "handle", str(handle))


_HANDLE = re.compile(r"# handle (\d+)\s*$")


def same_segment_handles(listing: str, bridge: str) -> list[int]:
    """Handles of the ``same_segment`` rules admitting ``bridge``, from ``nft -a list chain``."""
    wanted = f'iifname "{bridge}" oifname "{bridge}" accept'
    handles = []
    for line in listing.splitlines():
        found = _HANDLE.search(line)
        if found and line.strip().startswith(wanted + " "):
            handles.append(int(found.group(1)))
    return handles


def is_installed() -> bool:
    return _nft(None, "list", "table", FAMILY, TABLE, check=False) != ""


def remove() -> None:
    if is_installed():
        _nft(None, "delete", "table", FAMILY, TABLE)


def listing() -> str:
    return _nft(None, "list", "table", FAMILY, TABLE, check=False)
