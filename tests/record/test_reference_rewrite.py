"""References between the entries of a transaction are rewritten to the ids the record gives;
a `urn:uuid:` reference to no entry is refused; the bundle handed in is left as it was."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from adapter.errors import BadRequest
from adapter.record.repository import Repository
from adapter.store.db import engine_for, init_db

PATIENT_URL = "urn:uuid:3f1c8a52-1111-4c7e-9d1a-000000000001"
PRACTITIONER_URL = "https://hospital.example/fhir/Practitioner/dr-1"  # an absolute fullUrl


def _bundle(plan_subject: str) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": PATIENT_URL,
         "resource": {"resourceType": "Patient", "name": [{"family": "Martin"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": PRACTITIONER_URL,
         "resource": {"resourceType": "Practitioner", "name": [{"family": "House"}]},
         "request": {"method": "POST", "url": "Practitioner"}},
        {"fullUrl": "urn:uuid:3f1c8a52-1111-4c7e-9d1a-000000000003",
         "resource": {
             "resourceType": "CarePlan", "status": "active", "intent": "plan",
             "subject": {"reference": plan_subject},
             "contributor": [{"reference": PRACTITIONER_URL}],
             "extension": [{"url": "https://example.org/fhir/StructureDefinition/author",
                            "valueReference": {"reference": PRACTITIONER_URL}}],
             "description": f"not a link: {PATIENT_URL}"},
         "request": {"method": "POST", "url": "CarePlan"}},
    ]}


@pytest.fixture
def repository(tmp_path: Path) -> Repository:
    engine = engine_for(f"sqlite:///{tmp_path / 'liaison.db'}")
    init_db(engine)
    return Repository(engine)


def test_links_to_entries_are_rewritten_wherever_they_are(repository: Repository) -> None:
    bundle = _bundle(PATIENT_URL)
    sent = copy.deepcopy(bundle)
    answer = repository.transaction(bundle)
    assert bundle == sent  # the caller's bundle is untouched
    patient, practitioner, plan = (e["response"]["location"].split("/_history")[0]
                                   for e in answer["entry"])
    stored = repository.read(*plan.split("/"))
    assert stored["subject"] == {"reference": patient}
    assert stored["contributor"] == [{"reference": practitioner}]
    assert stored["extension"][0]["valueReference"] == {"reference": practitioner}
    # an extension's url and plain text are not links to entries
    assert stored["extension"][0]["url"].startswith("https://example.org/")
    assert stored["description"] == f"not a link: {PATIENT_URL}"


def test_a_reference_to_no_entry_is_refused_and_nothing_is_written(
    repository: Repository,
) -> None:
    with pytest.raises(BadRequest, match="matches no fullUrl"):
        repository.transaction(_bundle("urn:uuid:3f1c8a52-1111-4c7e-9d1a-00000000dead"))
    assert repository.search("Patient", []).get("total", 0) == 0


def _plan_about(subject: str) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                      "subject": {"reference": subject}},
         "request": {"method": "POST", "url": "CarePlan"}}]}


def _patient(value: str) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient",
                      "identifier": [{"system": "urn:oid:1.2.3", "value": value}]},
         "request": {"method": "POST", "url": "Patient"}}]}


def test_a_conditional_reference_names_the_one_resource_it_matches(
        repository: Repository) -> None:
    created = repository.transaction(_patient("A-1"))["entry"][0]["response"]["location"]
    answer = repository.transaction(_plan_about("Patient?identifier=urn:oid:1.2.3|A-1"))
    plan = answer["entry"][0]["response"]["location"].split("/_history")[0]
    assert repository.read(*plan.split("/"))["subject"] == {
        "reference": created.split("/_history")[0]}


@pytest.mark.parametrize("patients", [[], ["A-2", "A-2"]], ids=["none", "several"])
def test_a_conditional_reference_matching_none_or_several_fails_the_transaction(
        repository: Repository, patients: list[str]) -> None:
    from adapter.errors import PreconditionFailed

    for value in patients:
        repository.transaction(_patient(value))
    with pytest.raises(PreconditionFailed, match="conditional reference"):
        repository.transaction(_plan_about("Patient?identifier=urn:oid:1.2.3|A-2"))
    assert repository.search("CarePlan", []).get("total", 0) == 0
