"""Conditional references resolved on the target before a bundle goes out: each names the one
resource its search finds there; none or several refuse the bundle."""

from __future__ import annotations

import pytest

from adapter.errors import TargetRejected
from adapter.push.references import resolve_references

BUNDLE = {"resourceType": "Bundle", "type": "transaction", "entry": [{
    "resource": {"resourceType": "Communication",
                 "subject": {"reference": "Patient?identifier=s|1"},
                 "about": [{"reference": "CarePlan?identifier=s|2"},
                           {"reference": "urn:uuid:1234"}],
                 "recipient": [{"reference": "PractitionerRole/9"}]},
    "request": {"method": "PUT", "url": "Communication?identifier=s|3"}}]}


def test_each_names_what_the_target_finds_and_nothing_else_changes() -> None:
    asked: list[tuple[str, str]] = []

    def find(resource_type: str, query: str) -> list[str]:
        asked.append((resource_type, query))
        return [f"{resource_type.lower()}-1"]

    resolved = resolve_references(BUNDLE, find)["entry"][0]["resource"]
    assert resolved["subject"] == {"reference": "Patient/patient-1"}
    assert resolved["about"] == [{"reference": "CarePlan/careplan-1"},
                                 {"reference": "urn:uuid:1234"}]
    assert resolved["recipient"] == [{"reference": "PractitionerRole/9"}]
    assert asked == [("Patient", "identifier=s|1"), ("CarePlan", "identifier=s|2")]
    assert BUNDLE["entry"][0]["resource"]["subject"] == {"reference": "Patient?identifier=s|1"}


@pytest.mark.parametrize("found", [[], ["a", "b"]], ids=["none", "several"])
def test_none_or_several_matches_refuse_the_bundle(found: list[str]) -> None:
    with pytest.raises(TargetRejected, match="conditional reference"):
        resolve_references(BUNDLE, lambda resource_type, query: found)
