"""Parser for ``iptables-save`` / ``ip6tables-save`` (legacy and nft backends alike).

The format, as iptables-save writes it: ``# …`` comment lines; per table a ``*NAME`` line, one
``:CHAIN POLICY [packets:bytes]`` line per chain (policy ``-`` for a user-defined chain), the
rules as ``-A CHAIN args…`` lines, and ``COMMIT``. Arguments are separated by spaces; one
holding spaces or quotes is written in double quotes with ``"`` and ``\\`` escaped by a
backslash (``--comment "a \\"b\\""``).

The nft backend prints ``# Table `NAME' is incompatible, use 'nft' tool.`` for a table holding
rules it cannot show (and lists nothing of it), and ``# Table `NAME' contains incompatible
base-chains, use 'nft' tool to list them.`` before a table it lists only in part. Both are kept
in :attr:`SaveListing.incompatible`: such a table must be read from ``nft -j``, never from
this listing.

The text comes from an audited host: it is bounded (lines, line length, arguments a line) and
anything else than the format above is a ParseError naming its line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from auditor.domain.facts import IptablesSave, SavedChain, SavedRule, SavedTable
from probes.parsers.errors import ParseError

_TOOL = "iptables-save"

#: Far more than any real rule set (a large Docker or Kubernetes host has some 10⁴ rules).
MAX_LINES = 200_000
#: iptables-save lines are short; a comment is at most 256 bytes, a set name 32.
MAX_LINE_LENGTH = 4096
MAX_ARGUMENTS = 256
#: Table and chain names: printable, at most 31 bytes (the kernel's XT_TABLE_MAXNAMELEN - 1
#: and XT_EXTENSION_MAXNAMELEN - 1); a chain name cannot start with "-" or "!".
_NAME = re.compile(r"[!-~]{1,31}")
_CHAIN_NAME = re.compile(r"[^\-!\s][!-~]{0,30}")
_CHAIN_LINE = re.compile(r":(?P<name>\S+) (?P<policy>\S+)(?: \[\d+:\d+\])?")
_INCOMPATIBLE = re.compile(
    r"# Table `(?P<table>[^']{1,31})' (?:is incompatible|contains incompatible base-chains)"
)
_COUNTED_RULE = re.compile(r"\[\d{1,20}:\d{1,20}\] (?=-A )")
_POLICIES = frozenset({"ACCEPT", "DROP", "QUEUE", "RETURN"})


@dataclass(frozen=True)
class SaveRule:
    chain: str
    args: tuple[str, ...]  #: the arguments after ``-A CHAIN``, unquoted
    line: int  #: 1-based line of the listing
    text: str  #: the line as written: ``-A INPUT -p tcp …``


@dataclass(frozen=True)
class SaveChain:
    name: str
    policy: str | None  #: None for a user-defined chain (``-``)


@dataclass(frozen=True)
class SaveTable:
    name: str
    chains: tuple[SaveChain, ...]
    rules: tuple[SaveRule, ...]
    line: int = 0  #: the line of its ``*NAME``


@dataclass(frozen=True)
class SaveListing:
    """The tables listed, and the tables the nft backend said it could not (fully) list."""

    tables: tuple[SaveTable, ...] = ()
    incompatible: tuple[str, ...] = ()


def parse_iptables_save(text: str) -> tuple[SaveTable, ...]:
    """The tables of the listing. Use :func:`read_iptables_save` to learn which tables the
    listing could not show (the nft backend's "incompatible" warnings)."""
    return read_iptables_save(text).tables


def read_iptables_save(text: str) -> SaveListing:
    lines = _bounded_lines(text)
    reader = _Reader()
    for number, line in enumerate(lines, start=1):
        reader.feed(number, line)
    return reader.finish(len(lines))


def _bounded_lines(text: str) -> list[str]:
    if "\x00" in text:
        raise ParseError(_TOOL, _line_of(text, text.index("\x00")), "binary data (NUL byte)")
    if text.count("\n") > MAX_LINES:
        raise ParseError(_TOOL, None, f"more than {MAX_LINES} lines")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if len(line) > MAX_LINE_LENGTH:
            raise ParseError(_TOOL, number, f"line longer than {MAX_LINE_LENGTH} characters")
    return lines


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


@dataclass
class _OpenTable:
    name: str
    line: int
    chains: list[SaveChain] = field(default_factory=list)
    rules: list[SaveRule] = field(default_factory=list)

    def has_chain(self, name: str) -> bool:
        return any(c.name == name for c in self.chains)


@dataclass
class _Reader:
    tables: list[SaveTable] = field(default_factory=list)
    incompatible: list[str] = field(default_factory=list)
    current: _OpenTable | None = None

    def feed(self, number: int, raw: str) -> None:
        line = raw.rstrip("\r")
        if not line.strip():
            return
        if line.startswith("#"):
            self._comment(line)
        elif line.startswith("*"):
            self._open(number, line[1:])
        elif line.startswith(":"):
            self._chain(number, line)
        elif line.startswith("-A "):
            self._rule(number, line)
        elif _COUNTED_RULE.match(line):
            # ``iptables-save -c`` writes each rule's counters before it.
            self._rule(number, _COUNTED_RULE.sub("", line, count=1))
        elif line == "COMMIT":
            self._commit(number)
        else:
            raise ParseError(_TOOL, number, f"unexpected line {_shown(line)}")

    def finish(self, last: int) -> SaveListing:
        if self.current is not None:
            raise ParseError(_TOOL, last, f"table {self.current.name!r} has no COMMIT")
        return SaveListing(tuple(self.tables), tuple(self.incompatible))

    def _comment(self, line: str) -> None:
        found = _INCOMPATIBLE.match(line)
        if found is not None and found["table"] not in self.incompatible:
            self.incompatible.append(found["table"])

    def _open(self, number: int, name: str) -> None:
        if self.current is not None:
            raise ParseError(_TOOL, number, f"table {self.current.name!r} has no COMMIT")
        if not _NAME.fullmatch(name):
            raise ParseError(_TOOL, number, f"bad table name {_shown(name)}")
        if any(t.name == name for t in self.tables):
            raise ParseError(_TOOL, number, f"table {name!r} listed twice")
        self.current = _OpenTable(name, number)

    def _table(self, number: int, what: str) -> _OpenTable:
        if self.current is None:
            raise ParseError(_TOOL, number, f"{what} before any table (*NAME)")
        return self.current

    def _chain(self, number: int, line: str) -> None:
        table = self._table(number, "chain")
        found = _CHAIN_LINE.fullmatch(line)
        if found is None or not _CHAIN_NAME.fullmatch(found["name"]):
            raise ParseError(_TOOL, number, f"bad chain line {_shown(line)}")
        policy = found["policy"]
        if policy != "-" and policy not in _POLICIES:
            raise ParseError(_TOOL, number, f"chain {found['name']}: bad policy {_shown(policy)}")
        if table.has_chain(found["name"]):
            raise ParseError(_TOOL, number, f"chain {found['name']!r} declared twice")
        table.chains.append(SaveChain(found["name"], None if policy == "-" else policy))

    def _rule(self, number: int, line: str) -> None:
        table = self._table(number, "rule")
        words = split_arguments(line, number)
        chain = words[1] if len(words) > 1 else ""
        if not table.has_chain(chain):
            raise ParseError(_TOOL, number, f"rule in undeclared chain {_shown(chain)}")
        table.rules.append(SaveRule(chain, tuple(words[2:]), number, line))

    def _commit(self, number: int) -> None:
        table = self._table(number, "COMMIT")
        self.tables.append(
            SaveTable(table.name, tuple(table.chains), tuple(table.rules), table.line)
        )
        self.current = None


def split_arguments(line: str, number: int) -> list[str]:
    """Split a rule line as iptables-restore does: on spaces, with double-quoted arguments in
    which a backslash escapes the next character. An unbalanced quote is an error."""
    words: list[str] = []
    current: list[str] = []
    in_word = quoted = escaped = False
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
            in_word = True
        elif char in " \t" and not quoted:
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
        else:
            current.append(char)
            in_word = True
        if len(words) > MAX_ARGUMENTS:
            raise ParseError(_TOOL, number, f"more than {MAX_ARGUMENTS} arguments")
    if quoted or escaped:
        raise ParseError(_TOOL, number, "unbalanced quote")
    if in_word:
        words.append("".join(current))
    if len(words) > MAX_ARGUMENTS:
        raise ParseError(_TOOL, number, f"more than {MAX_ARGUMENTS} arguments")
    return words


def _shown(text: str) -> str:
    """A bounded, printable excerpt of hostile text for an error message."""
    excerpt = text[:60] + ("…" if len(text) > 60 else "")
    return repr(excerpt)


def iptables_save_fact(text: str) -> IptablesSave:
    """The listing as the fact the collector keeps (``ParseError`` on garbage)."""
    listing = read_iptables_save(text)
    return IptablesSave(
        tables=tuple(
            SavedTable(
                name=table.name,
                chains=tuple(SavedChain(name=c.name, policy=c.policy) for c in table.chains),
                rules=tuple(
                    SavedRule(chain=r.chain, args=r.args, line=r.line, text=r.text)
                    for r in table.rules
                ),
                line=table.line,
            )
            for table in listing.tables
        ),
        incompatible=listing.incompatible,
    )
