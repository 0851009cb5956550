"""Load YAML while remembering where each value came from, so errors can name the line.

Hand-written files (inventories, scenarios, control definitions) are validated with pydantic;
a pydantic error only gives a path of keys. This module keeps a map from such paths to the
line and column in the source file, and turns validation errors into messages an auditor can
act on: ``inventory.yaml:14:5: hosts.recv-srv.roles.0: Input should be 'receiving', ...``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from auditor.domain.errors import AuditorError

Loc = tuple[str | int, ...]
ModelT = TypeVar("ModelT", bound=BaseModel)


class SourceError(AuditorError, ValueError):
    """A hand-written file is malformed. ``str()`` names the file, line and key of each problem."""

    def __init__(self, path: Path, problems: Sequence[str]) -> None:
        self.path = path
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass
class LocatedDocument:
    """A parsed YAML document and the source position of every mapping key and list item."""

    path: Path
    data: Any
    positions: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def where(self, loc: Loc) -> str:
        """``file:line:col`` of the deepest known prefix of ``loc`` (1-based)."""
        for end in range(len(loc), -1, -1):
            pos = self.positions.get(tuple(loc[:end]))
            if pos is not None:
                return f"{self.path}:{pos[0]}:{pos[1]}"
        return str(self.path)


# Aliases are expanded in place; a file that expands to more values than any hand-written
# file could hold ("billion laughs") is refused instead of exhausting memory.
_MAX_VALUES = 100_000


def _construct(
    node: yaml.Node,
    loc: Loc,
    positions: dict[Loc, tuple[int, int]],
    enclosing: frozenset[int] = frozenset(),
) -> Any:
    if id(node) in enclosing:
        raise _DuplicateKeyError(node, "an alias refers to a value that contains it")
    if len(positions) > _MAX_VALUES:
        raise _DuplicateKeyError(node, f"aliases expand to more than {_MAX_VALUES} values")
    positions[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
    inner = enclosing | {id(node)}
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if key in result:
                raise _DuplicateKeyError(key_node, f"duplicate key {key!r}")
            result[key] = _construct(value_node, (*loc, key), positions, inner)
            # A key's own position is more useful than its value's for "unknown key" errors.
            positions[(*loc, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*loc, i), positions, inner) for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise _DuplicateKeyError(node, "a mapping key must be a plain value")
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


class _DuplicateKeyError(AuditorError):
    """A structural problem PyYAML accepts but an inventory must not have, at a node."""

    def __init__(self, node: yaml.Node, message: str) -> None:
        self.line = node.start_mark.line + 1
        self.column = node.start_mark.column + 1
        super().__init__(message)


def load_located(path: Path) -> LocatedDocument:
    """Parse one YAML file, keeping positions. Raises SourceError naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceError(path, [f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise SourceError(path, [f"{path}: not UTF-8 text: {exc}"]) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise SourceError(path, [f"{where}: invalid YAML: {exc.problem}"]) from exc
    except yaml.YAMLError as exc:
        raise SourceError(path, [f"{path}: invalid YAML: {exc}"]) from exc
    except RecursionError as exc:  # PyYAML's parser recurses once per nesting level
        raise SourceError(path, [f"{path}: invalid YAML: nested too deeply"]) from exc
    if node is None:
        raise SourceError(path, [f"{path}: the file is empty"])
    positions: dict[Loc, tuple[int, int]] = {}
    try:
        data = _construct(node, (), positions)
    except _DuplicateKeyError as exc:
        # Same file:line:col form as every other error, so editors can jump to it.
        raise SourceError(path, [f"{path}:{exc.line}:{exc.column}: {exc}"]) from exc
    except yaml.YAMLError as exc:
        raise SourceError(path, [f"{path}: invalid YAML value: {exc}"]) from exc
    except RecursionError as exc:
        raise SourceError(path, [f"{path}: invalid YAML: nested too deeply"]) from exc
    return LocatedDocument(path=path, data=data, positions=positions)


def format_validation_error(doc: LocatedDocument, exc: ValidationError) -> list[str]:
    """One line per pydantic error: position, dotted key path, message."""
    lines = []
    for err in exc.errors(include_url=False):
        loc: Loc = tuple(part for part in err["loc"] if not _is_pydantic_tag(part))
        dotted = ".".join(str(part) for part in loc) or "(top level)"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{doc.where(loc)}: {dotted}: {message}")
    return lines


def _is_pydantic_tag(part: str | int) -> bool:
    # pydantic puts the union member or validator into loc, e.g. 'function-after[...]'
    return isinstance(part, str) and ("[" in part and part.endswith("]"))


def validate_document(doc: LocatedDocument, model: type[ModelT], **context: Any) -> ModelT:
    """Validate a located document against a pydantic model; errors name file and line."""
    try:
        return model.model_validate(doc.data, context={"doc": doc, **context})
    except ValidationError as exc:
        raise SourceError(doc.path, format_validation_error(doc, exc)) from exc


def load_model(path: Path, model: type[ModelT], **context: Any) -> ModelT:
    """Read, parse and validate a YAML file in one step."""
    return validate_document(load_located(path), model, **context)
