"""validate_bundle: fhir.resources R4B checks, transaction checks, and its cache."""

from __future__ import annotations

import copy

from adapter.mapping import validation
from adapter.mapping.validation import validate_bundle, validate_resource
from tests.mapping.helpers import convert_fixture, one


def test_a_resource_missing_a_required_element_is_reported() -> None:
    bundle = copy.deepcopy(convert_fixture("ldl-ses-v1.xml").bundle)
    del one(bundle, "CarePlan")["intent"]
    problems = validate_bundle(bundle)
    assert any("CarePlan" in p and "intent" in p for p in problems)


def test_a_wrongly_typed_value_is_reported() -> None:
    assert validate_resource({"resourceType": "Patient", "birthDate": "28/03/1979"})


def test_a_reference_outside_the_bundle_is_reported() -> None:
    bundle = copy.deepcopy(convert_fixture("ldl-ses-v1.xml").bundle)
    one(bundle, "CarePlan")["subject"] = {"reference": "urn:uuid:00000000-0000-0000-0000-0000"
                                                       "00000000"}
    assert any("is not in the bundle" in p for p in validate_bundle(bundle))


def test_an_entry_without_request_is_reported() -> None:
    bundle = copy.deepcopy(convert_fixture("ldl-ses-v1.xml").bundle)
    del bundle["entry"][0]["request"]
    assert any("POST/PUT" in p for p in validate_bundle(bundle))


def test_identical_resources_are_validated_once() -> None:
    validation._problems_of.cache_clear()
    validation._problems_of_exact.cache_clear()
    validate_bundle(convert_fixture("ldl-ses-v1.xml").bundle)
    shapes = validation._problems_of.cache_info().misses
    resources = validation._problems_of_exact.cache_info().misses
    validate_bundle(convert_fixture("ldl-ses-v1.xml").bundle)
    assert validation._problems_of.cache_info().misses == shapes
    assert validation._problems_of_exact.cache_info().misses == resources
    assert validation._problems_of_exact.cache_info().hits >= resources


def test_convert_with_validation_puts_problems_in_the_report(monkeypatch) -> None:
    from adapter.mapping import engine

    monkeypatch.setattr(engine.care, "map_care_team", _broken_care_team(engine.care))
    conversion = convert_fixture("ldl-ses-v1.xml", validate=True)
    assert any(i["code"] == "invalid" for i in conversion.report["issue"])


def _broken_care_team(care):
    original = care.map_care_team

    def broken(ctx):
        url = original(ctx)
        ctx.builder.resource(url)["status"] = 42
        return url

    return broken


def test_resources_differing_only_in_names_and_identifiers_share_one_model_check() -> None:
    def patient(family: str, ins: str) -> dict:
        return {"resourceType": "Patient", "name": [{"family": family, "given": ["Anne"]}],
                "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": ins}],
                "birthDate": "1954-07-12"}

    validation._problems_of.cache_clear()
    validation._problems_of_exact.cache_clear()
    assert validate_resource(patient("ROCHE", "254076926612345")) == []
    assert validate_resource(patient("MARTIN", "154076926699999")) == []
    assert validation._problems_of.cache_info().misses == 1


def test_a_bad_leaf_is_still_caught_when_its_shape_was_seen_valid() -> None:
    good = {"resourceType": "Patient", "name": [{"family": "ROCHE"}], "birthDate": "1954-07-12",
            "telecom": [{"system": "phone", "value": "0611"}]}
    assert validate_resource(good) == []
    assert validate_resource({**good, "birthDate": "1954-13-45"})
    assert validate_resource({**good, "name": [{"family": ""}]})
    coded = {"resourceType": "Observation", "status": "final",
             "code": {"coding": [{"system": "http://loinc.org", "code": "1234-5"}]}}
    assert validate_resource(coded) == []
    bad_code = {**coded, "code": {"coding": [{"system": "http://loinc.org", "code": " 12"}]}}
    assert validate_resource(bad_code)


def test_an_instant_with_a_date_only_value_is_caught() -> None:
    document = {"resourceType": "DocumentReference", "status": "current",
                "content": [{"attachment": {"contentType": "text/xml"}}],
                "date": "2019-12-03T13:30:00+01:00"}
    assert validate_resource(document) == []
    assert validate_resource({**document, "date": "2019-12-03"})


def test_attachment_data_that_is_not_base64_is_caught() -> None:
    document = {"resourceType": "DocumentReference", "status": "current",
                "content": [{"attachment": {"contentType": "application/pdf", "data": "JVBERi0="}}]}
    assert validate_resource(document) == []
    document["content"][0]["attachment"]["data"] = "not base64 at all!"
    assert validate_resource(document)
