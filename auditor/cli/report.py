"""``auditor report``, ``auditor bundle`` and ``auditor keygen``.

They parse arguments and map outcomes to exit codes; the work is in ``auditor.report``,
``auditor.report.bundle`` and ``auditor.evidence.signing``. Exit codes: 0 done, 3 could not
(bad input, a link among the run's files, a seal that cannot be renewed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from auditor.cli.exitcodes import ExitCode
from auditor.cli.terminal import make_console, say, untrusted


def register(app: typer.Typer) -> None:
    """Add the ``report``, ``bundle`` and ``keygen`` commands to the root application."""
    app.command("report")(report_command)
    app.command("bundle")(bundle_command)
    app.command("keygen")(keygen_command)


def report_command(
    run: Annotated[Path, typer.Argument(help="The run folder written by `auditor audit --out`.")],
    inventory: Annotated[
        Path | None,
        typer.Option(
            "--inventory",
            "-i",
            help="The inventory to show (default: the copy in the run folder, then the path "
            "recorded in findings.json).",
        ),
    ] = None,
    waivers: Annotated[
        Path | None,
        typer.Option(
            "--waivers",
            "-w",
            help="Apply this waivers file again (docs/waivers.md) on today's date: findings.json "
            "and the run's waivers.yaml are rewritten and sealed with the reports.",
        ),
    ] = None,
) -> None:
    """Render the HTML (ja, en), OSCAL, SARIF and JUnit reports of a stored run, without
    probing anything, and renew the run's seal for them."""
    from auditor.cli.summary import print_waivers
    from auditor.domain.findings import read_findings
    from auditor.domain.waivers import load_waivers
    from auditor.domain.yamlsource import SourceError
    from auditor.evidence.store import EvidenceError
    from auditor.report import render_reports
    from auditor.report.run import FINDINGS_FILE, RunReadError

    console = make_console()
    try:
        accepted = load_waivers(waivers) if waivers is not None else None
    except SourceError as exc:
        say(console, "invalid waivers", f"\n{exc}")
        raise typer.Exit(ExitCode.CANNOT_RUN) from exc
    try:
        written = render_reports(run, inventory_path=inventory, waivers=accepted)
    except (RunReadError, EvidenceError) as exc:
        say(console, "cannot report", exc)
        raise typer.Exit(ExitCode.CANNOT_RUN) from exc
    for path in written:
        console.print(untrusted(f"wrote {path}"))
    if accepted is not None:
        document = read_findings(run / FINDINGS_FILE)  # as just rewritten with the waivers
        print_waivers(console, document.findings, document.waiver_warnings or [])


def bundle_command(
    run: Annotated[Path, typer.Argument(help="The run folder to pack.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The bundle file to write (.zip).")],
    key: Annotated[
        Path | None,
        typer.Option("--key", "-k", help="The Ed25519 private key to sign with (auditor keygen)."),
    ] = None,
) -> None:
    """Verify a run, render its reports and pack them with the findings and the evidence into
    one zip whose manifest lists every file's SHA-256, signed with Ed25519."""
    from auditor.evidence.signing import SigningKeyError
    from auditor.evidence.store import EvidenceError
    from auditor.report.bundle import BundleError, create_bundle
    from auditor.report.run import RunReadError

    console = make_console()
    try:
        result = create_bundle(run, out, key)
    except (BundleError, EvidenceError, RunReadError, SigningKeyError, OSError) as exc:
        say(console, "cannot bundle", exc)
        raise typer.Exit(ExitCode.CANNOT_RUN) from exc
    console.print(untrusted(f"bundle: {result.path} ({result.files} files, run {result.run_id})"))
    if result.signer_fingerprint:
        console.print(untrusted(f"signed by {result.signer_fingerprint}"), soft_wrap=True)
        console.print("give this fingerprint to the certification body by another channel")
    else:
        console.print("[yellow]not signed[/] (no --key): it cannot show who sealed it")


def keygen_command(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The private key file to create (mode 0600).")
    ],
) -> None:
    """Make an Ed25519 key pair for signing bundles: OUT (private) and OUT.pub (public)."""
    from auditor.evidence.signing import SigningKeyError, generate_key

    console = make_console()
    try:
        files = generate_key(out)
    except (SigningKeyError, OSError) as exc:
        say(console, "cannot create the key", exc)
        raise typer.Exit(ExitCode.CANNOT_RUN) from exc
    console.print(untrusted(f"private key: {files.private} (mode 0600)"))
    console.print(untrusted(f"public key:  {files.public}"))
    console.print(f"fingerprint: {files.fingerprint}", soft_wrap=True, markup=False)


__all__ = ["bundle_command", "keygen_command", "register", "report_command"]
