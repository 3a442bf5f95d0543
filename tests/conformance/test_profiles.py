"""liaison's profiles (conformance/profiles) and the checker of produced resources."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapter.config import get_settings
from adapter.conformance.profile_build import build_all
from adapter.conformance.profiles import check_bundle, check_resource, load_profiles
from adapter.conformance.valuesets import load_value_sets
from adapter.errors import RefusedLetter
from adapter.mapping import convert_letter
from tests.support.paths import FIXTURES, LDL_SES_EXAMPLE

PROFILED = ("CarePlan", "CareTeam", "Communication")


@pytest.fixture(scope="module")
def letter_bundle() -> dict[str, Any]:
    return convert_letter(LDL_SES_EXAMPLE.read_bytes()).bundle


def _first(bundle: dict[str, Any], resource_type: str) -> dict[str, Any]:
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == resource_type:
            return copy.deepcopy(entry["resource"])
    raise AssertionError(f"no {resource_type} in the bundle")


def test_generated_structure_definitions_match_their_sources() -> None:
    generated = build_all(get_settings().conformance_dir / "profiles")

    assert {path.name for path in generated} == {
        f"StructureDefinition-liaison-{name.lower()}.json" for name in PROFILED
    } | {f"liaison-{name.lower()}.fsh" for name in PROFILED}
    for path, text in generated.items():
        assert path.read_text(encoding="utf-8") == text, "run `liaison conformance profiles`"


def test_profiles_are_constraints_on_the_resource_types_liaison_produces() -> None:
    profiles = load_profiles(get_settings().conformance_dir / "profiles")

    assert sorted(profiles) == sorted(PROFILED)
    assert profiles["CareTeam"]["baseDefinition"].endswith("/cds-ihe-careteam")
    assert profiles["CarePlan"]["baseDefinition"].endswith("/carePlan-eu-hdr")
    for definition in profiles.values():
        assert definition["derivation"] == "constraint"
        assert definition["fhirVersion"] == "4.0.1"


def _convertible_letters() -> list[Path]:
    """The official examples liaison converts, plus the project's own sample letters."""
    letters = [LDL_SES_EXAMPLE, *sorted((FIXTURES / "letters").glob("*.xml"))]
    convertible = []
    for letter in letters:
        try:
            convert_letter(letter.read_bytes())
        except RefusedLetter:
            continue
        convertible.append(letter)
    return convertible


def test_every_resource_produced_from_the_official_examples_passes() -> None:
    problems = {
        letter.name: check_bundle(convert_letter(letter.read_bytes()).bundle)
        for letter in _convertible_letters()
    }
    assert problems == {name: [] for name in problems}


def test_produced_resources_pass_every_check_but_communication_meta_profile() -> None:
    letters = _convertible_letters()
    assert LDL_SES_EXAMPLE in letters
    assert len(letters) >= 5
    for letter in letters:
        bundle = convert_letter(letter.read_bytes()).bundle
        problems = check_bundle(bundle)
        other = [p for p in problems
                 if not (p.startswith("Communication ") and "meta.profile" in p)]
        assert other == [], letter.name
        produced = {e["resource"]["resourceType"] for e in bundle["entry"]}
        assert {"CarePlan", "CareTeam"} <= produced, letter.name


def test_missing_required_element_is_reported(letter_bundle: dict[str, Any]) -> None:
    care_team = _first(letter_bundle, "CareTeam")
    del care_team["subject"]
    care_team["participant"][0].pop("period")

    problems = check_resource(care_team)

    assert "CareTeam.subject: 0 found, at least 1 required" in problems
    assert "CareTeam.participant.period.start: 0 found, at least 1 required" not in problems
    assert any(p.startswith("lia-ct-1:") for p in problems)


def test_too_many_repetitions_are_reported(letter_bundle: dict[str, Any]) -> None:
    care_plan = _first(letter_bundle, "CarePlan")
    care_plan["identifier"].append({"system": "urn:liaison:careplan", "value": "other"})

    assert "CarePlan.identifier: 2 found, at most 1 allowed" in check_resource(care_plan)


def test_fixed_value_and_pattern_are_enforced(letter_bundle: dict[str, Any]) -> None:
    care_plan = _first(letter_bundle, "CarePlan")
    care_plan["intent"] = "order"
    care_plan["category"] = [{"coding": [{"system": "http://loinc.org", "code": "00000-0"}]}]

    problems = check_resource(care_plan)

    assert "CarePlan.intent: is 'order', must be 'plan'" in problems
    assert any(p.startswith("CarePlan.category: does not carry") for p in problems)


def test_binding_to_the_care_team_role_value_set_is_enforced(
    letter_bundle: dict[str, Any],
) -> None:
    care_team = _first(letter_bundle, "CareTeam")
    care_team["participant"][0]["role"] = [
        {"coding": [{"system": "http://example.org/roles", "code": "friend"}]}
    ]

    problems = check_resource(care_team)

    assert any("CareTeam.participant.role" in p and "careteam-roles" in p for p in problems)


def test_code_binding_is_enforced(letter_bundle: dict[str, Any]) -> None:
    communication = _first(letter_bundle, "Communication")
    communication["status"] = "sent"

    problems = check_resource(communication)

    assert any(p.startswith("Communication.status:") and "event-status" in p for p in problems)


def test_invariant_is_evaluated_with_fhirpath(letter_bundle: dict[str, Any]) -> None:
    communication = _first(letter_bundle, "Communication")
    del communication["sent"]

    problems = check_resource(communication)

    assert any(p.startswith("lia-com-1:") for p in problems)


def test_reference_to_the_wrong_type_is_reported_when_resolvable(
    letter_bundle: dict[str, Any],
) -> None:
    care_plan = _first(letter_bundle, "CarePlan")
    care_plan["subject"] = {"reference": "Practitioner/abc"}

    problems = check_resource(care_plan)

    assert "CarePlan.subject: refers to a Practitioner, expected Patient" in problems


def test_meta_profile_is_required(letter_bundle: dict[str, Any]) -> None:
    care_team = _first(letter_bundle, "CareTeam")
    care_team.pop("meta")

    problems = check_resource(care_team)

    assert any(p.startswith("meta.profile: declares none of") for p in problems)


def test_unprofiled_resource_types_have_no_problems() -> None:
    assert check_resource({"resourceType": "Patient"}) == []


def test_care_team_role_value_set_covers_every_role_the_mapping_gives() -> None:
    settings = get_settings()
    roles = yaml.safe_load((settings.mappings_dir / "roles.yaml").read_text(encoding="utf-8"))
    systems = roles["systems"]
    value_set = load_value_sets(settings.mappings_dir)["urn:liaison:valueset:careteam-roles"]

    for name, role in roles["careteam_roles"].items():
        system = systems.get(role["system"], role["system"])
        assert value_set.has_coding(system, role["code"]), name


def test_profile_sources_are_readable_yaml_beside_their_json() -> None:
    profiles_dir = get_settings().conformance_dir / "profiles"
    for source in sorted((profiles_dir / "src").glob("liaison-*.yaml")):
        assert (profiles_dir / f"StructureDefinition-{source.stem}.json").is_file()
    assert Path(profiles_dir / "src" / "ig.yaml").is_file()


def test_generated_structure_definitions_are_valid_fhir_r4() -> None:
    from fhir.resources.R4B.structuredefinition import StructureDefinition

    for definition in load_profiles(get_settings().conformance_dir / "profiles").values():
        StructureDefinition.model_validate(definition)
