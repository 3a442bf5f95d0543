"""validate_bundle: fhir.resources R4B checks, transaction checks, and its cache."""

from __future__ import annotations

import copy

from adapter import fhir_validation as validation
from adapter.fhir_validation import validate_bundle, validate_resource
from tests.mapping.helpers import convert_fixture, one
from tests.support.paths import LDL_SES_EXAMPLE


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
    validation.clear_caches()
    validate_bundle(convert_fixture("ldl-ses-v1.xml").bundle)
    shapes = validation.SHAPES.misses
    resources = validation.RESOURCES.misses
    validate_bundle(convert_fixture("ldl-ses-v1.xml").bundle)
    assert validation.SHAPES.misses == shapes
    assert validation.RESOURCES.misses == resources
    assert validation.RESOURCES.hits >= resources


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

    validation.clear_caches()
    assert validate_resource(patient("ROCHE", "254076926612310")) == []
    assert validate_resource(patient("MARTIN", "154076926699999")) == []
    assert validation.SHAPES.misses == 1


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


def _distinct_official_letter(number: int) -> bytes:
    letter = LDL_SES_EXAMPLE.read_bytes()
    letter = letter.replace(b'root="1.2.250.1.213.1.1.1.29.2022.1',
                            f'root="1.2.250.1.213.1.1.1.29.2022.1.9{number}'.encode())
    nir = f"2790351215{number:03d}"  # 13 digits and their control key
    return letter.replace(b"279035121518989", f"{nir}{97 - int(nir) % 97:02d}".encode())


def test_a_new_letter_of_a_known_shape_runs_no_model_and_reuses_the_shared_resources() -> None:
    from adapter.mapping import convert_letter

    validation.clear_caches()
    first = convert_letter(_distinct_official_letter(1), validate=True)
    assert not any(i["code"] == "invalid" for i in first.report["issue"])
    models = validation.SHAPES.misses
    exact_hits = validation.RESOURCES.hits
    second = convert_letter(_distinct_official_letter(2), validate=True)
    assert second.letter.document_key != first.letter.document_key
    assert second.letter.ins != first.letter.ins
    assert validation.SHAPES.misses == models  # its Provenance, Patient… share known shapes
    # the same doctors and hospital, byte for byte: not even walked again
    assert validation.RESOURCES.hits - exact_hits >= 5


def test_the_cache_of_validated_resources_keeps_digests_not_letters() -> None:
    validation.clear_caches()
    bundle = convert_fixture("ldl-ses-v1.xml").bundle
    assert validate_bundle(bundle) == []
    assert {len(key) for key in validation.RESOURCES._values} == {32}


def test_a_large_letter_copy_that_is_broken_base64_is_caught() -> None:
    import base64

    good = base64.b64encode(b"<ClinicalDocument/>" * 1000).decode("ascii")
    document = {"resourceType": "DocumentReference", "status": "current",
                "content": [{"attachment": {"contentType": "text/xml", "data": good}}]}
    assert validate_resource(document) == []
    document["content"][0]["attachment"]["data"] = good[:-3]  # truncated: broken padding
    assert validate_resource(document)
    assert validate_bundle({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:6f1d7c3e-2b0a-5c4e-9f7d-4c1a2e3b5d60", "resource": document,
         "request": {"method": "POST", "url": "DocumentReference"}}]})


def test_the_urn_uuid_shortcut_only_takes_what_pydantic_accepts() -> None:
    import uuid

    from fhir_core.types import StringType, UriType
    from pydantic import TypeAdapter

    string, uri = TypeAdapter(StringType), TypeAdapter(UriType)
    for value in [f"urn:uuid:{uuid.uuid4()}" for _ in range(200)]:
        assert validation._OWN_URN_UUID.fullmatch(value)
        assert string.validate_python(value) == value and uri.validate_python(value) == value
    for value in ["urn:uuid:", "urn:uuid:ABCDEF00-0000-0000-0000-000000000000",
                  f"urn:uuid:{uuid.uuid4()} ", f" urn:uuid:{uuid.uuid4()}"]:
        assert not validation._OWN_URN_UUID.fullmatch(value)
