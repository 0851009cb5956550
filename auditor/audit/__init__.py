"""Orchestration: one audit run from inventory to findings.json (collection, the network
phases, the model, the checks, the evidence and the reports), within the authorized scope."""
