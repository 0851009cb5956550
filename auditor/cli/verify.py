"""``auditor verify DIR_OR_BUNDLE``: check a run's evidence (and a bundle's hashes and
signature) offline and say plainly what is wrong, and whether anything shows who made it.

Exit codes (ExitCode names them): 0 intact and signed by the trusted key; 1 any problem (a
signature by another key too); 5 intact but unauthenticated (a run folder, an unsigned bundle,
or no trusted key given); 3 not a run or bundle, or an unusable trusted key.
"""

from __future__ import annotations

import re
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

_FINGERPRINT = re.compile(r"^SHA256:[0-9a-f]{64}$")


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
    """Check the evidence, its hash chain, the manifest, the seal of the run's files, the
    findings' references and, for a bundle, every file's hash and the signature, offline.
    Exit 0 only for a bundle signed by the trusted key; 5 when intact but unauthenticated."""
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
    raise typer.Exit(exit_code(report))


def exit_code(report: VerificationReport) -> ExitCode:
    if not report.intact:
        return ExitCode.FAIL
    return ExitCode.OK if report.authenticated else ExitCode.UNAUTHENTICATED


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
    if fingerprint_text is None:
        return None
    # Hex is compared as text: accept it as read out in capitals, store it as printed.
    normalised = "SHA256:" + fingerprint_text.removeprefix("SHA256:").strip().lower()
    if not _FINGERPRINT.match(normalised) or not fingerprint_text.startswith("SHA256:"):
        raise ValueError(
            f"a fingerprint looks like SHA256:<64 hex digits>, not {fingerprint_text!r}"
        )
    return normalised


def render(report: VerificationReport, console: Console) -> None:
    """A summary of the run, then every problem and note, then the verdict."""
    for name, value in _summary(report):
        # One line each, never wrapped by us: a fingerprint or path cut in two cannot be
        # compared or copied. Every value may come from the files: printed as data.
        console.print(Text.assemble(f"{name:<15}", untrusted(value)), soft_wrap=True)
    for note in report.notes:
        say(console, "note", note, style="yellow")
    if not report.intact:
        problems = Table("check", "subject", "problem", title="Problems", show_lines=False)
        for problem in report.problems:
            problems.add_row(
                untrusted(problem.check), untrusted(problem.subject), untrusted(problem.message)
            )
        console.print(problems)
        console.print(f"[bold red]NOT INTACT[/]: {len(report.problems)} problem(s)")
    elif not report.authenticated:
        console.print(
            Text.assemble(
                ("UNAUTHENTICATED", "bold yellow"),
                ": every check passed, but ",
                untrusted(report.unauthenticated_reason()),
            ),
            soft_wrap=True,
        )
    else:
        console.print(
            Text.assemble(
                ("INTACT", "bold green"),
                ": every check passed, and the bundle is signed by the trusted key ",
                untrusted(report.signer_fingerprint),
            ),
            soft_wrap=True,
        )


def _summary(report: VerificationReport) -> list[tuple[str, str]]:
    rows = [
        ("run", report.location),
        ("run id", report.run_id or "?"),
        ("artifacts", str(report.artifact_count)),
        ("chain head", report.chain_head or "?"),
        ("closed", "yes" if report.closed else "no (interrupted or still running)"),
        ("manifest", "present" if report.manifest_present else "absent"),
        ("seal", _seal_line(report)),
        ("findings.json", "present" if report.findings_present else "absent"),
    ]
    if report.bundle:
        rows += [
            ("bundle files", str(report.bundle_files)),
            ("signature", _signature_line(report)),
        ]
        if report.signer_fingerprint is not None:
            rows.append(("signer", report.signer_fingerprint))  # in full, on its own line
    return rows


def _seal_line(report: VerificationReport) -> str:
    if report.seal_generation is None:
        return "none"
    again = "" if report.seal_generation == 1 else f", sealed {report.seal_generation} times"
    return f"{report.sealed_files} file(s) of the run{again}"


def _signature_line(report: VerificationReport) -> str:
    if not report.signed:
        return "none valid"
    if report.trusted is None:
        return "valid (no trusted key given: compare the signer's fingerprint with the auditor's)"
    return "valid, by the trusted key" if report.trusted else "valid, but NOT by the trusted key"


__all__ = ["exit_code", "register", "render", "verify_command"]
