"""The one exception every parser raises on input it does not understand."""

from __future__ import annotations

import json
from typing import Any

from auditor.domain.errors import AuditorError


class ParseError(AuditorError):
    """Output of ``tool`` is not in the expected form.

    ``line`` is the 1-based line of the text where the problem is (for JSON, the line of the
    offending element when known), or None when the problem concerns the whole output.
    """

    def __init__(self, tool: str, line: int | None, message: str) -> None:
        self.tool = tool
        self.line = line
        self.message = message
        where = f"{tool}:{line}" if line is not None else tool
        super().__init__(f"{where}: {message}")


#: Deeper JSON than any tool the auditor reads writes (``nft -j`` nests about a dozen levels).
#: A host that sends more would otherwise make facts.json and observations.json unwritable for
#: every host (pydantic refuses to serialise past about 255 levels) or overflow the decoder.
MAX_JSON_DEPTH = 64


def load_json(tool: str, text: str) -> Any:
    """``json.loads`` that only ever fails with a ParseError.

    Besides JSONDecodeError, the standard decoder raises RecursionError on deep nesting and
    ValueError on integers too long to convert: hostile or garbled output must not escape as
    those.
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(tool, exc.lineno, f"not JSON: {exc.msg}") from None
    except (RecursionError, ValueError) as exc:
        raise ParseError(tool, None, f"not usable JSON: {type(exc).__name__}") from None
    if not _nesting_within(document, MAX_JSON_DEPTH):
        raise ParseError(tool, None, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return document


def _nesting_within(document: Any, limit: int) -> bool:
    """Whether no container in ``document`` lies deeper than ``limit``: walked with a stack,
    not recursion, so the check itself cannot overflow."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def expect_list_of_objects(tool: str, value: Any) -> list[dict[str, Any]]:
    """The JSON shape of iproute2's ``-j`` output: a list of objects."""
    if not isinstance(value, list):
        raise ParseError(tool, None, f"expected a JSON list, got {type(value).__name__}")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise ParseError(tool, None, f"element {index} is {type(item).__name__}, not object")
    return value


def field(tool: str, obj: dict[str, Any], key: str, kind: type, index: int) -> Any:
    """``obj[key]``, which must exist and be of ``kind`` (bool is never accepted as int)."""
    if obj.get(key) is None:
        raise ParseError(tool, None, f"element {index}: missing {key!r}")
    return optional_field(tool, obj, key, kind, index)


def optional_field(tool: str, obj: dict[str, Any], key: str, kind: type, index: int) -> Any:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ParseError(
            tool, None, f"element {index}: {key!r} is {type(value).__name__}, not {kind.__name__}"
        )
    return value
