"""``auditor verify DIR_OR_BUNDLE``: check a run's evidence (and a bundle's hashes and
signature) offline and say plainly what is wrong.

Exit codes: 0 intact, 1 any problem, 3 not a run or bundle, or an unreadable trusted key
(ExitCode names them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from auditor.cli.exitcodes import ExitCode
from auditor.cli.terminal import make_console, say, untrusted
from auditor.evidence.store import NotARunError
from auditor.evidence.verify import VerificationReport, verify_path


def register(app: typer.Typer) -> None:
    """Add the ``verify`` command to the root application."""
    app.command("verify")(verify_command)


def verify_command(
    run: Annotated[
        Path,
        typer.Argument(
            help="A run folder (auditor audit --out), or a bundle zip (auditor bundle)."
        ),
    ],
    trusted_key: Annotated[
        Path | None,
        typer.Option(
            "--trusted-key",
            help="The auditor's public key (PEM, KEY.pub): the bundle must be signed by it.",
        ),
    ] = None,
    trusted_fingerprint: Annotated[
        str | None,
        typer.Option(
            "--trusted-fingerprint",
            help="The auditor's key fingerprint (SHA256:…), as an alternative to --trusted-key.",
        ),
    ] = None,
) -> None:
    """Check the evidence, its hash chain, the manifest, the findings' references and, for a
    bundle, every file's hash and the signature, offline."""
    console = make_console()
    try:
        expected = _trusted(trusted_key, trusted_fingerprint)
    except ValueError as exc:
        say(console, "cannot verify", exc)
        raise typer.Exit(ExitCode.CANNOT_RUN) from exc
    try:
        report = verify_path(run, trusted_fingerprint=expected)
    except NotARunError as exc:
        say(console, "not a run", exc)
        raise typer.Exit(ExitCode.CANNOT_RUN) from exc
    render(report, console)
    raise typer.Exit(ExitCode.OK if report.intact else ExitCode.FAIL)


def _trusted(key_file: Path | None, fingerprint_text: str | None) -> str | None:
    """The trusted fingerprint from a key file or as given; ValueError when unusable."""
    from auditor.evidence.signing import SigningKeyError, fingerprint, load_public_key

    if key_file is not None and fingerprint_text is not None:
        raise ValueError("give --trusted-key or --trusted-fingerprint, not both")
    if key_file is not None:
        try:
            return fingerprint(load_public_key(key_file.read_bytes(), str(key_file)))
        except (OSError, SigningKeyError) as exc:
            raise ValueError(f"trusted key {key_file}: {exc}") from exc
    if fingerprint_text is not None and not fingerprint_text.startswith("SHA256:"):
        raise ValueError(f"a fingerprint looks like SHA256:<hex>, not {fingerprint_text!r}")
    return fingerprint_text


def render(report: VerificationReport, console: Console) -> None:
    """A summary of the run, then every problem and note."""
    rows = [
        ("run", report.location),
        ("run id", report.run_id or "?"),
        ("artifacts", str(report.artifact_count)),
        ("chain head", report.chain_head or "?"),
        ("closed", "yes" if report.closed else "no (interrupted or still running)"),
        ("manifest", "present" if report.manifest_present else "absent"),
        ("findings.json", "present" if report.findings_present else "absent"),
    ]
    if report.bundle:
        rows += [("bundle files", str(report.bundle_files)), ("signature", _signature_line(report))]
    # One line each, never a grid: a path or a fingerprint cut to the width cannot be compared.
    for name, value in rows:
        console.print(Text.assemble(f"{name:<15}", untrusted(value)))
    for note in report.notes:
        say(console, "note", note, style="yellow")
    if report.intact:
        console.print("[bold green]INTACT[/]: every check passed")
        return
    problems = Table("check", "subject", "problem", title="Problems", show_lines=False)
    for problem in report.problems:
        problems.add_row(
            untrusted(problem.check), untrusted(problem.subject), untrusted(problem.message)
        )
    console.print(problems)
    console.print(f"[bold red]NOT INTACT[/]: {len(report.problems)} problem(s)")


def _signature_line(report: VerificationReport) -> str:
    if not report.signed:
        return "none valid"
    line = f"valid, by key {report.signer_fingerprint}"
    if report.trusted is None:
        return line + " (no trusted key given: compare this fingerprint with the auditor's)"
    return line + (" (the trusted key)" if report.trusted else " (NOT the trusted key)")


__all__ = ["register", "render", "verify_command"]
