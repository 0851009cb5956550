"""What an audit run may be told to do differently."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AuditOptions:
    #: seconds of capture on each external network while the data pipeline runs
    link_capture_seconds: float = 8.0
    #: skip the network probes (scans, egress tests, captures): for offline re-judging only
    network_probes: bool = True
    #: nmap's minimum packet rate for the all-port TCP scans (packets per second)
    scan_rate: int = 10_000
