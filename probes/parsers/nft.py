"""Parser for ``nft -j list ruleset``: validated JSON, kept as nft wrote it.

The rule set's semantics are interpreted by the topology builder; here we only make sure the
document is what ``nft -j`` produces (libnftables-json(5)): an object whose single key
"nftables" holds a list of objects each with exactly one key.
"""

from __future__ import annotations

from typing import Any

from probes.parsers.errors import ParseError, load_json

_TOOL = "nft -j"


def parse_nft_ruleset(text: str) -> dict[str, Any]:
    document = load_json(_TOOL, text)
    if not isinstance(document, dict) or set(document) != {"nftables"}:
        raise ParseError(_TOOL, None, 'expected an object with the single key "nftables"')
    statements = document["nftables"]
    if not isinstance(statements, list):
        raise ParseError(_TOOL, None, '"nftables" is not a list')
    for index, statement in enumerate(statements):
        if not isinstance(statement, dict) or len(statement) != 1:
            raise ParseError(_TOOL, None, f"statement {index} is not a one-key object")
        (kind,) = statement
        if not isinstance(statement[kind], dict):
            raise ParseError(_TOOL, None, f"statement {index} ({kind}) is not an object")
    return document
