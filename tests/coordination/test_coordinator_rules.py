"""Which pathway coordinator covers a patient: territories, overlaps, nobody."""

from __future__ import annotations

import copy

import pytest
import yaml

from adapter.coordination.coordinators import CsvCoordinators, StaticCoordinators
from adapter.coordination.rules import Coordinator, PostcodeSpan, load_rules, parse_rules
from tests.support.paths import FIXTURES, REPO

DIRECTORY_CSV = FIXTURES / "coordination" / "local_directory.csv"


def _raw() -> dict:
    return yaml.safe_load((REPO / "mappings" / "coordination.yaml").read_text(encoding="utf-8"))


def _ids(coordinators: list[Coordinator]) -> list[str]:
    return [c.territory_id for c in coordinators]


def test_postcode_spans_cover_ranges_prefixes_and_single_codes() -> None:
    assert PostcodeSpan.parse("75005-75015").covers("75007")
    assert not PostcodeSpan.parse("75005-75015").covers("75016")
    assert PostcodeSpan.parse("75").covers("75020")
    assert not PostcodeSpan.parse("75").covers("92100")
    assert PostcodeSpan.parse("69002").covers("69002")
    with pytest.raises(ValueError):
        PostcodeSpan.parse("Paris")


def test_most_specific_territory_wins_when_a_cpts_and_a_dac_overlap() -> None:
    rules = load_rules()
    source = CsvCoordinators(DIRECTORY_CSV, rules)
    # 75007 is in CPTS-PARIS-CENTRE (75005–75015) and in DAC-PARIS (all of 75)
    assert _ids(rules.coordinators_for("75007", None, source)) == ["CPTS-PARIS-CENTRE"]
    # 75019 is only in the DAC
    assert _ids(rules.coordinators_for("75019", None, source)) == ["DAC-PARIS"]


def test_overlap_all_keeps_every_covering_coordinator() -> None:
    raw = _raw()
    raw["coordinator"]["overlap"] = "all"
    rules = parse_rules(raw)
    found = rules.coordinators_for("75007", None, CsvCoordinators(DIRECTORY_CSV, rules))
    assert _ids(found) == ["CPTS-PARIS-CENTRE", "DAC-PARIS"]


def test_first_kind_prefers_the_kind_listed_first() -> None:
    raw = _raw()
    raw["coordinator"]["overlap"] = "first_kind"
    raw["coordinator"]["kinds"] = ["DAC", "CPTS"]
    rules = parse_rules(raw)
    found = rules.coordinators_for("75007", None, CsvCoordinators(DIRECTORY_CSV, rules))
    assert _ids(found) == ["DAC-PARIS"]


def test_no_coordinator_where_no_territory_covers_the_address() -> None:
    rules = load_rules()
    assert rules.coordinators_for("13001", None, CsvCoordinators(DIRECTORY_CSV, rules)) == []
    assert rules.coordinators_for(None, None, CsvCoordinators(DIRECTORY_CSV, rules)) == []


def test_members_who_are_not_coordinators_are_ignored() -> None:
    rules = load_rules()
    found = CsvCoordinators(DIRECTORY_CSV, rules).coordinators()
    assert "810000000041" not in {c.identifier[1] for c in found}  # the nurse, role "member"
    assert len(found) == 3


def test_disabled_rule_adds_nobody() -> None:
    raw = copy.deepcopy(_raw())
    raw["coordinator"]["enabled"] = False
    rules = parse_rules(raw)
    assert rules.coordinators_for("75007", None, CsvCoordinators(DIRECTORY_CSV, rules)) == []


def test_yaml_territory_completes_a_directory_row_without_postcodes() -> None:
    raw = _raw()
    raw["coordinator"]["territories"] = [
        {"id": "CPTS-NICE", "kind": "CPTS", "postcodes": ["06000-06300"], "communes": ["Èze"]}
    ]
    rules = parse_rules(raw)
    nice = Coordinator(identifier=("urn:oid:1.2.250.1.71.4.2.1", "81"), territory_id="CPTS-NICE")
    source = StaticCoordinators([nice])
    assert rules.coordinators_for("06100", None, source) == [nice]
    assert rules.coordinators_for("06360", "EZE", source) == [nice]  # by commune, accents folded
    assert rules.coordinators_for("06400", "Cannes", source) == []


def test_unknown_overlap_policy_is_refused_with_its_name() -> None:
    raw = _raw()
    raw["coordinator"]["overlap"] = "random"
    with pytest.raises(ValueError, match="random"):
        parse_rules(raw)
