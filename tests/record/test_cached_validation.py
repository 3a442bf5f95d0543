"""The record validates through the mapping's cached validator: resources it has already seen
(or shapes it knows) cost little, yet anything invalid from outside is still refused — even
right after a valid resource of the very same shape, or the same invalid resource again."""

from __future__ import annotations

import copy
import uuid

import httpx
import pytest
from sqlalchemy import text

from adapter.errors import InvalidResource
from adapter.record.validation import validate_resource
from tests.record.bundles import letter_bundle, post_bundle

PATIENT = {
    "resourceType": "Patient",
    "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "279035121518989"}],
    "name": [{"family": "Durand", "given": ["Anne"]}],
    "birthDate": "1979-03-05",
    "gender": "female",
}


@pytest.mark.parametrize(
    ("element", "spoiled"),
    [
        ("birthDate", "1979-13-45"),  # not a date, in a leaf the cache replaces by a placeholder
        ("gender", "fe  male"),  # not a FHIR code (inner double space)
        ("name", [{"family": {"not": "a string"}}]),
        ("unknownElement", True),  # FHIR forbids elements it does not define
    ],
)
def test_an_invalid_resource_is_refused_after_a_valid_one_of_the_same_shape(
    element: str, spoiled: object
) -> None:
    assert validate_resource(copy.deepcopy(PATIENT)) == PATIENT  # the shape is now cached
    invalid = {**copy.deepcopy(PATIENT), element: spoiled}
    for _again in range(2):  # the refusal is cached too, never turned into a pass
        with pytest.raises(InvalidResource) as refused:
            validate_resource(invalid)
        assert refused.value.http_status == 422
        assert "1979-13-45" not in refused.value.message  # values are never quoted


def test_a_bundle_refused_once_is_refused_again_and_stores_nothing(
    writer: httpx.Client, system: httpx.Client
) -> None:
    post_bundle(writer, letter_bundle())  # every shape of the letter is known now
    bundle = letter_bundle(version=2)
    patient = next(e["resource"] for e in bundle["entry"]
                   if e["resource"]["resourceType"] == "Patient")
    patient["birthDate"] = "05/03/1979"
    for _again in range(2):
        response = writer.post("", json=bundle)
        assert response.status_code == 422
        assert "birthDate" in response.json()["issue"][0]["diagnostics"]
    documents = system.get("DocumentReference", params={"_summary": "count"}).json()
    assert documents["total"] == 1  # only the first letter's


def test_a_provenance_of_a_resource_created_in_the_same_transaction_joins_its_patient(
    writer: httpx.Client, record_app  # type: ignore[no-untyped-def]
) -> None:
    # new rows are inserted in one batch at the end of the transaction: the Provenance must
    # still find its target's patient among the rows the transaction itself is writing
    patient_urn, plan_urn = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": patient_urn, "resource": copy.deepcopy(PATIENT),
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": plan_urn,
         "resource": {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                      "subject": {"reference": patient_urn}},
         "request": {"method": "POST", "url": "CarePlan"}},
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}",
         "resource": {"resourceType": "Provenance", "recorded": "2024-03-05T11:00:00Z",
                      "target": [{"reference": plan_urn}],
                      "agent": [{"who": {"display": "liaison"}}]},
         "request": {"method": "POST", "url": "Provenance"}},
    ]}
    answer = post_bundle(writer, bundle)
    patient_id, _plan, provenance_id = (
        e["response"]["location"].split("/")[1] for e in answer["entry"])
    engine = record_app.state.record_repository.engine
    with engine.connect() as connection:
        stored = connection.execute(
            text("SELECT patient_id FROM record_resource WHERE resource_type = 'Provenance' "
                 "AND resource_id = :id"), {"id": provenance_id}).scalar_one()
    assert stored == patient_id
