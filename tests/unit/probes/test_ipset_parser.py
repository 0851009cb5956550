"""``ipset save`` parsed, on output recorded from the real tool (tests/data/oracle/ipset-legacy
holds the sets as parsed; tests/data/iptables/ipset.save the raw output)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.parsers.errors import ParseError
from probes.parsers.ipset import MAX_LINE, parse_ipset_save

RECORDED = Path(__file__).parents[2] / "data" / "iptables" / "ipset.save"


def test_the_recorded_sets_come_back_with_type_family_and_members() -> None:
    sets = {s.name: s for s in parse_ipset_save(RECORDED.read_text())}
    assert set(sets) == {"blocked", "admins", "blocked6"}
    assert (sets["blocked"].type, sets["blocked"].family) == ("hash:net", "inet")
    assert set(sets["blocked"].members) == {"10.98.249.128/25", "10.98.251.0/28"}
    assert sets["admins"].members == ("10.98.249.1",)
    assert sets["blocked6"].family == "inet6"
    assert not any(s.nomatch for s in sets.values())


def test_a_nomatch_member_is_flagged() -> None:
    text = "create n hash:net family inet\nadd n 10.0.0.0/8\nadd n 10.1.0.0/16 nomatch\n"
    (found,) = parse_ipset_save(text)
    assert found.nomatch and found.members == ("10.0.0.0/8", "10.1.0.0/16")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("add x 10.0.0.1\n", 1),  # a member before its set
        ("create x hash:ip\ncreate x hash:ip\n", 2),
        ("create x hash:ip\nflush x\n", 2),
        ("create x hash:ip\n" + "a" * (MAX_LINE + 1) + "\n", 2),
        ("create x\x00 hash:ip\n", 1),
    ],
)
def test_garbage_is_an_error_naming_its_line(text: str, line: int) -> None:
    with pytest.raises(ParseError) as caught:
        parse_ipset_save(text)
    assert caught.value.line == line


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gives_sets_or_a_parse_error(text: str) -> None:
    with contextlib.suppress(ParseError):
        for ipset in parse_ipset_save(text):
            assert ipset.name and ipset.type
