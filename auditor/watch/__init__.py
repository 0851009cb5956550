"""Continuous posture checks: the audit on a schedule, its history, drift, alerts and metrics.

``schedule`` says when to run, ``state`` keeps the runs under a state folder (markers, the
overlap lock, retention), ``drift`` compares two runs' verdicts, ``alerts`` tells someone,
``metrics`` writes the Prometheus textfile, ``diff`` explains what changed in the topology and
``watcher`` ties one run together. The CLI (``auditor.cli.watch``) only parses arguments.
"""
