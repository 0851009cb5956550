"""Helpers the checks share: outcomes and subjects, the no-path checks, criteria lines and
the privileged-command logging reader. Not checks themselves (those are policies.checks)."""
