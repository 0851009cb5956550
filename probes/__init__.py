"""Probes: collect raw artifacts and parse them into typed facts. Probes never judge."""
