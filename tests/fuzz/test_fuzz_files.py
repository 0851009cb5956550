"""nmap XML and scenario files: any input parses or raises the loader's own typed error with
a location, never another exception, never a hang.

(Inventory files are fuzzed in tests/unit/test_inventory.py, Windows outputs in
tests/unit/probes/test_windows.py, the SSH collector's parsers in
tests/unit/probes/test_parsers_fuzz.py.)
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditor.domain.yamlsource import SourceError
from lab.scenario import load_scenario
from probes.scanner import NmapParseError, parse_nmap_xml

ROOT = Path(__file__).parents[2]
NMAP = sorted((ROOT / "tests" / "data" / "nmap").glob("*.xml"))
SCENARIOS = sorted(p for p in (ROOT / "lab" / "scenarios").iterdir() if p.is_dir())
SETTINGS = settings(max_examples=200, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
XMLISH = st.text(
    alphabet=st.sampled_from(list('<>/="? \nabcdehnoprstu0123456789.:-')), max_size=300
)


def parses_or_nmap_error(data: bytes) -> None:
    try:
        parse_nmap_xml(data)
    except NmapParseError as exc:
        assert str(exc)


@SETTINGS
@given(data=st.binary(max_size=2000))
def test_nmap_any_bytes(data: bytes) -> None:
    parses_or_nmap_error(data)


@SETTINGS
@given(text=XMLISH)
def test_nmap_xml_shaped_text(text: str) -> None:
    parses_or_nmap_error(text.encode())


@pytest.mark.parametrize("recorded", NMAP, ids=lambda p: p.name)
@SETTINGS
@given(data=st.data())
def test_nmap_real_output_cut_or_garbled(recorded: Path, data: st.DataObject) -> None:
    # A killed nmap leaves its XML cut off; a garbled transfer changes a slice of it.
    xml = recorded.read_bytes()
    start = data.draw(st.integers(0, len(xml)))
    end = data.draw(st.integers(start, min(len(xml), start + 60)))
    insert = data.draw(XMLISH).encode()[:20]
    if data.draw(st.booleans()):
        parses_or_nmap_error(xml[:start])
    else:
        parses_or_nmap_error(xml[:start] + insert + xml[end:])


def test_nmap_cut_off_is_an_error_with_where() -> None:
    xml = NMAP[0].read_bytes()
    with pytest.raises(NmapParseError, match=r"line \d+|runstats|not a complete"):
        parse_nmap_xml(xml[: len(xml) // 2])


@pytest.fixture(scope="module")
def scenario_copies() -> Iterator[Path]:
    """Each real scenario folder copied once; the test rewrites only scenario.yaml."""
    with tempfile.TemporaryDirectory(prefix="fuzz-scenarios-") as folder:
        for scenario in SCENARIOS:
            shutil.copytree(scenario, Path(folder) / scenario.name)
        yield Path(folder)


def loads_or_located_source_error(path: Path) -> None:
    try:
        load_scenario(path)
    except SourceError as exc:
        assert exc.problems
        for problem in exc.problems:
            # Every problem names the file it is in (and, for YAML nodes, line and column).
            assert str(path.name) in problem or str(path) in problem, problem


@SETTINGS
@given(data=st.data())
def test_scenario_files_garbled(scenario_copies: Path, data: st.DataObject) -> None:
    scenario = data.draw(st.sampled_from(SCENARIOS))
    original = (scenario / "scenario.yaml").read_text(encoding="utf-8")
    start = data.draw(st.integers(0, len(original)))
    end = data.draw(st.integers(start, min(len(original), start + 40)))
    insert = data.draw(
        st.text(alphabet=st.sampled_from(list("{}[]:-,'\"&*!| \n\tabc01.")), max_size=15)
    )
    target = scenario_copies / scenario.name / "scenario.yaml"
    target.write_text(original[:start] + insert + original[end:], encoding="utf-8")
    loads_or_located_source_error(target)


@SETTINGS
@given(raw=st.binary(max_size=400))
def test_scenario_any_bytes(scenario_copies: Path, raw: bytes) -> None:
    target = scenario_copies / "baseline" / "scenario.yaml"
    target.write_bytes(raw)
    loads_or_located_source_error(target)
