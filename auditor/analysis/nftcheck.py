"""A proposed nftables rule set, read as the topology reads a collected one (``nft -j list
ruleset`` JSON), whichever form it was written in.

JSON is validated as the collector validates a host's output and then compiled, so a document
the model would misread is refused before any verdict rests on it. nft text is handed to the
kernel's own nft: only nft knows its grammar, and the error it prints names file:line. The
text is loaded into a scratch network namespace made for the purpose (it holds only ``lo``,
so the rules filter nothing that matters) and listed back as JSON; the namespace is deleted
whatever happens.

A limitation that follows: a rule naming an interface by index (``iif "eth0"``, ``oif``) is
resolved when loaded, and the scratch namespace has no interface but ``lo``, so nft refuses
it; ``iifname`` / ``oifname`` are resolved per packet and load anywhere.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

from auditor.domain.errors import AuditorError
from probes.parsers.errors import ParseError
from probes.parsers.nft import parse_nft_ruleset
from topology.firewall import Firewall

#: Seconds allowed to each ip / nft command: loading a rule set takes milliseconds.
COMMAND_TIMEOUT = 30.0
NAMESPACE_PREFIX = "auditor-whatif-"
#: A rule set file larger than this is refused before it is read (real ones are kilobytes).
MAX_RULESET_BYTES = 8 * 1024 * 1024


class RulesetError(AuditorError):
    """A proposed rule set cannot be used: the file, and nft's or the compiler's reason."""


def load_ruleset(path: Path) -> dict[str, Any]:
    """The ``nft -j list ruleset`` document of the rule set in ``path`` (JSON or nft text)."""
    text = _read(path)
    if _looks_like_json(text):
        return ruleset_from_json(text, path)
    return ruleset_from_text(path)


def _read(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_RULESET_BYTES:
            raise RulesetError(f"{path}: {size} bytes, over the {MAX_RULESET_BYTES} allowed")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesetError(f"{path}: cannot be read: {exc}") from exc


def _looks_like_json(text: str) -> bool:
    # nft text never starts with "{": its first token is a command, a comment or a keyword.
    return text.lstrip().startswith("{")


def ruleset_from_json(text: str, source: Path) -> dict[str, Any]:
    """Validate and compile an ``nft -j`` document; refuse it naming what is wrong."""
    try:
        document = parse_nft_ruleset(text)
    except ParseError as exc:
        raise RulesetError(f"{source}: not an nft -j rule set: {exc}") from exc
    try:
        firewall = Firewall.from_nft_json(document)
    except AuditorError as exc:
        raise RulesetError(f"{source}: the rule set cannot be compiled: {exc}") from exc
    malformed = [p.removesuffix(", skipped") for p in firewall.problems if "malformed" in p]
    if malformed:
        # The compiler skips such objects to keep a collected host judgeable; a rule set
        # proposed by hand with a typo must be refused instead of silently losing a rule.
        raise RulesetError(f"{source}: not an nft -j rule set: {'; '.join(malformed)}")
    return document


def ruleset_from_text(path: Path) -> dict[str, Any]:
    """Load nft text into a scratch namespace and list it back as JSON."""
    _require_tools()
    namespace = NAMESPACE_PREFIX + secrets.token_hex(4)
    _run(["ip", "netns", "add", namespace], f"cannot create the namespace {namespace}")
    try:
        _load_into(namespace, path)
        listed = _run(
            ["ip", "netns", "exec", namespace, "nft", "-j", "list", "ruleset"],
            f"{path}: nft could not list the loaded rule set back",
        )
    finally:
        _delete_namespace(namespace)
    return ruleset_from_json(listed, path)


def _require_tools() -> None:
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        raise RulesetError(
            f"nft text needs {' and '.join(missing)} to be checked (or give nft -j JSON)"
        )


def _load_into(namespace: str, path: Path) -> None:
    try:
        result = subprocess.run(
            ["ip", "netns", "exec", namespace, "nft", "-f", str(path)],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RulesetError(f"{path}: nft could not be run: {exc}") from exc
    if result.returncode != 0:
        # nft's own message names file:line:column and quotes the line: pass it on whole.
        message = (result.stderr or result.stdout).strip() or f"exit status {result.returncode}"
        raise RulesetError(f"{path} is refused by nft:\n{message}")


def _run(argv: list[str], failure: str) -> str:
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RulesetError(f"{failure}: {exc}") from exc
    if result.returncode != 0:
        raise RulesetError(f"{failure}: {result.stderr.strip() or result.returncode}")
    return result.stdout


def _delete_namespace(namespace: str) -> None:
    # Best effort in a finally: a failure to delete must not hide the error being raised.
    subprocess.run(
        ["ip", "netns", "delete", namespace],
        capture_output=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
