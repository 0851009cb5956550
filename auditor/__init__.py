"""The auditor: inventory, scope, orchestration, evidence, reports, CLI and the lab."""
