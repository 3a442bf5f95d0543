"""The FHIR REST interactions on single resources, over HTTP: create, read, vread, update,
conditional create/update, delete, history, and the errors a client can meet."""

from __future__ import annotations

import httpx
from fhir.resources.R4B import get_fhir_model_class

from adapter.record.params import explicit_types
from tests.record.bundles import INS

PATIENT = {"resourceType": "Patient", "identifier": [{"system": INS, "value": "111"}],
           "name": [{"family": "Martin", "given": ["Léa"]}]}


def test_create_sets_id_version_and_location(system: httpx.Client, base_url: str):
    response = system.post("Patient", json={**PATIENT, "id": "client-chosen"})
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("application/fhir+json")
    created = response.json()
    assert created["id"] != "client-chosen"
    assert created["meta"]["versionId"] == "1" and created["meta"]["lastUpdated"].endswith("Z")
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["location"] == f"{base_url}/Patient/{created['id']}/_history/1"
    assert "last-modified" in response.headers
    read = system.get(f"Patient/{created['id']}")
    assert read.status_code == 200 and read.json() == created


def test_update_with_if_match_versions_and_refuses_stale_writes(system: httpx.Client):
    created = system.post("Patient", json=PATIENT).json()
    path = f"Patient/{created['id']}"
    changed = {**created, "gender": "female"}
    updated = system.put(path, json=changed, headers={"If-Match": 'W/"1"'})
    assert updated.status_code == 200 and updated.headers["etag"] == 'W/"2"'
    stale = system.put(path, json={**changed, "gender": "male"}, headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert system.get(path).json()["gender"] == "female"
    assert system.get(f"{path}/_history/1").json().get("gender") is None
    assert system.get(f"{path}/_history/2").json()["gender"] == "female"
    assert system.get(f"{path}/_history/9").status_code == 404
    history = system.get(f"{path}/_history").json()
    assert history["type"] == "history" and history["total"] == 2


def test_an_identical_update_creates_no_new_version(system: httpx.Client):
    created = system.post("Patient", json=PATIENT).json()
    again = system.put(f"Patient/{created['id']}", json=created)
    assert again.status_code == 200 and again.headers["etag"] == 'W/"1"'


def test_update_of_an_unknown_id_creates_it(system: httpx.Client):
    response = system.put("Patient/chosen-id", json={**PATIENT, "id": "chosen-id"})
    assert response.status_code == 201
    mismatch = system.put("Patient/other", json={**PATIENT, "id": "chosen-id"})
    assert mismatch.status_code == 400


def test_conditional_create_with_if_none_exist(system: httpx.Client):
    header = {"If-None-Exist": f"identifier={INS}|111"}
    first = system.post("Patient", json=PATIENT, headers=header)
    second = system.post("Patient", json=PATIENT, headers=header)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    system.post("Patient", json=PATIENT)
    assert system.post("Patient", json=PATIENT, headers=header).status_code == 412


def test_conditional_update_by_identifier(system: httpx.Client):
    url = f"Patient?identifier={INS}|111"
    first = system.put(url, json=PATIENT)
    second = system.put(url, json={**PATIENT, "gender": "female"})
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["etag"] == 'W/"2"'


def test_delete_then_read_is_410_and_history_keeps_the_deletion(system: httpx.Client):
    created = system.post("Patient", json=PATIENT).json()
    path = f"Patient/{created['id']}"
    assert system.delete(path).status_code == 204
    gone = system.get(path)
    assert gone.status_code == 410 and gone.json()["issue"][0]["code"] == "deleted"
    history = system.get(f"{path}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    assert system.get("Patient", params={"_id": created["id"]}).json()["total"] == 0


def test_conditional_update_never_overwrites_another_resource_by_id(system: httpx.Client):
    other = system.post("Patient", json={"resourceType": "Patient", "gender": "male"}).json()
    response = system.put(f"Patient?identifier={INS}|111", json={**PATIENT, "id": other["id"]})
    assert response.status_code == 409
    assert system.get(f"Patient/{other['id']}").json()["meta"]["versionId"] == "1"


def test_conditional_delete_removes_the_one_match(system: httpx.Client):
    created = system.post("Patient", json=PATIENT).json()
    assert system.delete("Patient", params={"identifier": f"{INS}|111"}).status_code == 204
    assert system.get(f"Patient/{created['id']}").status_code == 410
    assert system.delete("Patient", params={"identifier": f"{INS}|111"}).status_code == 204
    system.post("Patient", json=PATIENT)
    system.post("Patient", json=PATIENT)
    assert system.delete("Patient", params={"identifier": f"{INS}|111"}).status_code == 412
    assert system.delete("Patient").status_code == 400


def test_errors_are_operation_outcomes_with_the_right_status(system: httpx.Client):
    cases = [
        (system.get("Patient/unknown"), 404),
        (system.get("NotAType/1"), 404),
        (system.get("Patient/bad_id!"), 400),
        (system.post("Patient", json={"resourceType": "Patient", "gender": 3}), 422),
        (system.post("Patient", json={"resourceType": "Observation"}), 400),
        (system.post("Patient", content=b"{not json", headers={"Content-Type":
                                                               "application/fhir+json"}), 400),
        (system.post("Patient", content=b"<Patient/>", headers={"Content-Type":
                                                                "application/fhir+xml"}), 415),
        (system.get("Patient", headers={"Accept": "application/fhir+xml"}), 406),
        (system.get("Patient", params={"unknown-param": "x"}), 400),
        (system.get("Patient", params={"birthdate": "not-a-date"}), 400),
        (system.get("Patient", params={"_sort": "gender"}), 400),
    ]
    for response, status in cases:
        assert response.status_code == status, (response.request.url, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"


def test_lenient_handling_ignores_unknown_parameters(system: httpx.Client):
    system.post("Patient", json=PATIENT)
    response = system.get("Patient", params={"unknown-param": "x"},
                          headers={"Prefer": "handling=lenient"})
    assert response.status_code == 200 and response.json()["total"] == 1


def test_prefer_return_minimal_sends_no_body(system: httpx.Client):
    response = system.post("Patient", json=PATIENT, headers={"Prefer": "return=minimal"})
    assert response.status_code == 201 and response.content == b""
    assert response.headers["location"]


def test_capability_statement_lists_what_is_implemented(anonymous: httpx.Client):
    statement = anonymous.get("metadata").json()
    get_fhir_model_class("CapabilityStatement").model_validate(statement)
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["format"] == ["application/fhir+json", "json"]
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    for kind in ("Patient", "CarePlan", "CareTeam", "Communication", "DocumentReference",
                 "Practitioner", "PractitionerRole", "Organization", "Encounter",
                 "MedicationRequest", "ServiceRequest", "Provenance", "Consent", "Subscription",
                 "Appointment", "Observation", "Binary"):
        assert kind in resources
    care_plan = resources["CarePlan"]
    names = {p["name"] for p in care_plan["searchParam"]}
    assert {"_id", "_lastUpdated", "_tag", "identifier", "patient", "subject", "status",
            "category", "date", "care-team"} <= names
    assert "CarePlan:care-team" in care_plan["searchInclude"]
    assert "Provenance:target" in care_plan["searchRevInclude"]
    assert "participant" in {p["name"] for p in resources["CareTeam"]["searchParam"]}
    assert {"code": "transaction"} in statement["rest"][0]["interaction"]


def test_every_advertised_parameter_is_accepted(system: httpx.Client):
    statement = system.get("metadata").json()
    explicit = set(explicit_types())
    for resource in statement["rest"][0]["resource"]:
        if resource["type"] not in explicit:
            continue
        for param in resource["searchParam"]:
            value = {"date": "ge2024-01-01", "reference": "x", "token": "s|c"}.get(
                param["type"], "x")
            response = system.get(resource["type"], params={param["name"]: value,
                                                            "_summary": "count"})
            assert response.status_code == 200, (resource["type"], param["name"], response.text)


def test_links_name_the_address_each_caller_used(system: httpx.Client, base_url: str):
    """Behind a proxy or by another name, each answer's links use the Host it was asked by."""
    system.post("Patient", json={"resourceType": "Patient"})
    for host in ("record.example.org", "liaison.chu.test:8443"):
        bundle = system.get("Patient", headers={"Host": host}).json()
        assert bundle["link"][0]["url"].startswith(f"http://{host}/fhir/Patient")
        assert bundle["entry"][0]["fullUrl"].startswith(f"http://{host}/fhir/Patient/")
