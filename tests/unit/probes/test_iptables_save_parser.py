"""``iptables-save`` / ``ip6tables-save`` listings (both backends) read into tables.

The samples in tests/data/iptables were written by the real tools (record.py there); the
garbage cases are what a hostile or broken host could send instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.parsers.errors import ParseError
from probes.parsers.iptables import (
    MAX_ARGUMENTS,
    MAX_LINE_LENGTH,
    MAX_LINES,
    SaveChain,
    parse_iptables_save,
    read_iptables_save,
    split_arguments,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "iptables"
SAMPLES = sorted(DATA.glob("*-save"))


def test_the_samples_were_recorded() -> None:
    names = {p.name for p in SAMPLES}
    for kind in ("v4.nft-save", "v6.nft-save", "v4.legacy-save", "v6.legacy-save"):
        assert f"constructs.{kind}" in names and f"docker.{kind}" in names
    assert {"ufw-server.v4.nft-save", "ufw-routed.v6.nft-save"} <= names


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_sample_parses_with_each_rule_kept_as_written(path: Path) -> None:
    text = path.read_text()
    listing = read_iptables_save(text)
    lines = text.splitlines()
    rule_lines = [n for n, line in enumerate(lines, start=1) if line.startswith("-A ")]
    rules = [r for t in listing.tables for r in t.rules]
    assert sorted(r.line for r in rules) == rule_lines
    for table in listing.tables:
        declared = {c.name for c in table.chains}
        assert lines[table.line - 1] == f"*{table.name}"
        for rule in table.rules:
            assert rule.text == lines[rule.line - 1]
            assert rule.chain in declared
            assert rule.text.startswith(f"-A {rule.chain} ")
    assert listing.tables == parse_iptables_save(text)


def test_chains_policies_and_quoted_arguments() -> None:
    (filter_table,) = [
        t for t in parse_iptables_save((DATA / "constructs.v4.nft-save").read_text())
        if t.name == "filter"
    ]  # fmt: skip
    assert filter_table.chains[:3] == (
        SaveChain("INPUT", "DROP"),
        SaveChain("FORWARD", "DROP"),
        SaveChain("OUTPUT", "ACCEPT"),
    )
    assert SaveChain("SUB", None) in filter_table.chains
    comment = next(r for r in filter_table.rules if "--comment" in r.args)
    assert comment.args[comment.args.index("--comment") + 1] == 'a b "c"'
    logged = next(r for r in filter_table.rules if "--log-prefix" in r.args and r.chain == "INPUT")
    assert logged.args[-1] == "[UFW BLOCK] "
    assert logged.text == '-A INPUT -j LOG --log-prefix "[UFW BLOCK] "'


def test_ufw_user_chains_have_no_policy() -> None:
    (table,) = parse_iptables_save((DATA / "ufw-server.v4.nft-save").read_text())
    policies = {c.name: c.policy for c in table.chains}
    assert policies["INPUT"] == "DROP" and policies["OUTPUT"] == "ACCEPT"
    assert policies["ufw-user-input"] is None
    assert any(r.chain == "ufw-user-input" and "recent" in r.args for r in table.rules)


def test_an_empty_listing_has_no_tables() -> None:
    assert parse_iptables_save("") == ()
    assert read_iptables_save("# Warning: iptables-legacy tables present\n").tables == ()


def test_incompatible_tables_are_reported_not_listed() -> None:
    listing = read_iptables_save((DATA / "incompatible.v4.nft-save").read_text())
    # filter and raw hold nft-native rules iptables cannot show: not listed at all; mangle
    # is listed without its foreign base chain.
    assert set(listing.incompatible) == {"filter", "raw", "mangle"}
    assert [t.name for t in listing.tables] == ["mangle"]


def test_counters_written_by_save_c_are_read() -> None:
    text = "*filter\n:INPUT ACCEPT [5:300]\n[5:300] -A INPUT -p tcp -j ACCEPT\nCOMMIT\n"
    (table,) = parse_iptables_save(text)
    assert table.rules[0].args == ("-p", "tcp", "-j", "ACCEPT")
    assert table.rules[0].text == "-A INPUT -p tcp -j ACCEPT"


def test_arguments_split_as_iptables_restore_does() -> None:
    assert split_arguments('-A X -m comment --comment "a \\"b\\" \\\\c" -j A', 1) == [
        "-A", "X", "-m", "comment", "--comment", 'a "b" \\c', "-j", "A",
    ]  # fmt: skip
    assert split_arguments('-A X --comment ""', 1)[-1] == ""


def _error(text: str) -> ParseError:
    with pytest.raises(ParseError) as caught:
        read_iptables_save(text)
    return caught.value


GOOD = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("-A INPUT -j ACCEPT\n", 1, "before any table"),
        (":INPUT ACCEPT [0:0]\n", 1, "before any table"),
        ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n", 3, "no COMMIT"),
        ("*filter\n*nat\nCOMMIT\n", 2, "no COMMIT"),
        ('*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m comment --comment "a\nCOMMIT\n', 3, "quote"),
        ("*filter\n:INPUT ACCEPT [0:0]\n-A OUTPUT -j ACCEPT\nCOMMIT\n", 3, "undeclared"),
        ("*filter\n:INPUT MAYBE [0:0]\nCOMMIT\n", 2, "policy"),
        ("*filter\n:INPUT ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\nCOMMIT\n", 3, "twice"),
        (GOOD + GOOD, 5, "twice"),
        ("*filter\nhello world\nCOMMIT\n", 2, "unexpected line"),
        ("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n\x00\x01\x02", 4, "binary"),
        ("*fil ter\nCOMMIT\n", 1, "table name"),
        ("COMMIT\n", 1, "before any table"),
    ],
)
def test_garbage_names_its_line(text: str, line: int, words: str) -> None:
    error = _error(text)
    assert error.line == line
    assert words in error.message
    assert error.tool == "iptables-save"


def test_bounds() -> None:
    long_rule = "-A INPUT -m comment --comment " + "x" * MAX_LINE_LENGTH
    assert _error(f"*filter\n:INPUT ACCEPT [0:0]\n{long_rule}\nCOMMIT\n").line == 3
    many = "-A INPUT" + " -s 10.98.0.1" * MAX_ARGUMENTS
    error = _error(f"*filter\n:INPUT ACCEPT [0:0]\n{many}\nCOMMIT\n")
    assert error.line == 3 and "arguments" in error.message
    assert "lines" in _error("#\n" * (MAX_LINES + 1)).message


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('*:-A !"\\\n[]0ACEPTINUMOfilterx#')), max_size=300))
def test_any_text_gives_tables_or_a_parse_error(text: str) -> None:
    try:
        read_iptables_save(text)
    except ParseError as error:
        assert error.line is None or 1 <= error.line <= text.count("\n") + 1
