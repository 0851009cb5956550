"""One sweeping test over every control file: complete, bilingual, cited, and implemented."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.domain.yamlsource import SourceError
from policies.model import Control, load_control_file, load_controls, load_framework
from policies.registry import CHECKS

ARCHITECTURE_IDS = {
    "recv-no-outbound": "第4号ニ(2)",
    "send-no-inbound": "第4号ニ(3)",
    "send-separate-host": "第4号ニ(3)",
    "proc-egress-only-via-gateways": "第4号ホ",
    "external-links-leased-or-vpn": "第4号ニ(1)",
    "links-encrypted": "第4号ニ(4)",
    "inventory-complete": "第4号ホ",
    "terminal-removable-media-blocked": "第3号ハ",
    "unauthorized-access-prevention": "第4号イ",
    "operation-logging": "第4号ロ",
    "no-remote-control-software": "第4号ハ",
}


def test_every_control_has_a_check_and_every_check_a_control() -> None:
    assert set(load_controls()) == set(CHECKS)


@pytest.mark.parametrize("control_id", sorted(ARCHITECTURE_IDS))
def test_contract_control_ids_cite_their_clause(control_id: str) -> None:
    control = load_controls()[control_id]
    assert ARCHITECTURE_IDS[control_id] in control.clauses


@pytest.mark.parametrize("control", list(load_controls().values()), ids=lambda c: c.id)
def test_control_texts_are_bilingual_and_substantial(control: Control) -> None:
    for text in (control.title, control.rationale, control.criteria, control.remediation):
        assert _has_japanese(text.ja)
        assert not _has_japanese(text.en)
    assert len(control.criteria.en) > 80 and len(control.criteria.ja) > 40
    refs = control.clause_refs(load_framework())
    assert all(load_framework().version in ref and "第6条" in ref for ref in refs)


def test_a_control_file_with_an_unknown_key_is_refused(tmp_path: Path) -> None:
    source = Path(__file__).parents[3] / "policies" / "controls" / "recv-no-outbound.yaml"
    bad = tmp_path / "recv-no-outbound.yaml"
    bad.write_text(source.read_text(encoding="utf-8") + "colour: red\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"recv-no-outbound.yaml:\d+:\d+: colour: unknown key"):
        load_control_file(bad)


def test_a_control_whose_id_differs_from_its_file_name_is_refused(tmp_path: Path) -> None:
    source = Path(__file__).parents[3] / "policies" / "controls" / "recv-no-outbound.yaml"
    bad = tmp_path / "other-name.yaml"
    bad.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(ValueError, match="does not match the file name"):
        load_control_file(bad)


def _has_japanese(text: str) -> bool:
    return any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in text)
