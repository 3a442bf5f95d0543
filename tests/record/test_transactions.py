"""Transaction and batch Bundles over HTTP: urn:uuid resolution, conditional create/update,
idempotent re-sends, new letter versions, all-or-nothing, no duplicates under concurrency."""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.record.bundles import INS, PCP, letter_bundle, post_bundle


def _ids(response: dict) -> list[str]:
    return [e["response"]["location"].split("/_history")[0] for e in response["entry"]]


def test_transaction_resolves_urn_uuid_references_to_the_ids_it_assigns(writer: httpx.Client):
    answer = post_bundle(writer, letter_bundle())
    assert answer["type"] == "transaction-response"
    assert all(e["response"]["status"] == "201 Created" for e in answer["entry"])
    locations = _ids(answer)
    patient = next(loc for loc in locations if loc.startswith("Patient/"))
    care_team = next(loc for loc in locations if loc.startswith("CareTeam/"))
    care_plan = writer.get(next(loc for loc in locations if loc.startswith("CarePlan/"))).json()
    assert care_plan["subject"]["reference"] == patient
    assert care_plan["careTeam"][0]["reference"] == care_team
    assert care_plan["meta"]["versionId"] == "1"
    assert "urn:uuid" not in writer.get(care_team).text


def test_sending_the_same_letter_twice_changes_nothing(writer: httpx.Client,
                                                      system: httpx.Client):
    first = post_bundle(writer, letter_bundle())
    second = post_bundle(writer, letter_bundle())
    assert _ids(first) == _ids(second)
    assert all(e["response"]["status"] == "200 OK" for e in second["entry"])
    assert [e["response"]["etag"] for e in second["entry"]] == ['W/"1"'] * len(second["entry"])
    patients = system.get("Patient", params={"identifier": f"{INS}|279035121518989"}).json()
    assert patients["total"] == 1


def test_a_new_version_of_a_letter_updates_the_same_care_plan(writer: httpx.Client,
                                                              system: httpx.Client):
    first = post_bundle(writer, letter_bundle(version=1))
    second = post_bundle(writer, letter_bundle(version=2, team=(PCP, "801111111111")))
    plan_1 = next(loc for loc in _ids(first) if loc.startswith("CarePlan/"))
    plan_2 = next(loc for loc in _ids(second) if loc.startswith("CarePlan/"))
    assert plan_1 == plan_2
    care_plan = writer.get(plan_2)
    assert care_plan.headers["etag"] == 'W/"2"'
    assert care_plan.json()["title"] == "Sortie v2"
    history = writer.get(f"{plan_2}/_history").json()
    assert [e["resource"]["title"] for e in history["entry"]] == ["Sortie v2", "Sortie v1"]
    documents = system.get("DocumentReference", params={"_summary": "count"}).json()
    assert documents["total"] == 2  # one per version: conditional create on its own identifier


def test_provenance_is_found_again_by_its_tag(writer: httpx.Client):
    post_bundle(writer, letter_bundle())
    again = post_bundle(writer, letter_bundle())
    provenance = [e for e in again["entry"] if "Provenance/" in e["response"]["location"]]
    assert provenance[0]["response"]["status"] == "200 OK"
    found = writer.get("Provenance", params={"_tag": "urn:liaison:provenance|set-1.1"}).json()
    assert found["total"] == 1


def test_a_transaction_with_one_invalid_entry_stores_nothing(writer: httpx.Client,
                                                             system: httpx.Client):
    bundle = letter_bundle()
    bundle["entry"][-2]["resource"]["status"] = {"not": "a code"}  # the Communication
    response = writer.post("", json=bundle)
    assert response.status_code == 422
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "entry" in outcome["issue"][0]["diagnostics"]
    assert system.get("Patient", params={"_summary": "count"}).json()["total"] == 0
    assert system.get("Practitioner", params={"_summary": "count"}).json()["total"] == 0


def test_a_reference_to_an_unknown_urn_uuid_is_refused(writer: httpx.Client,
                                                       system: httpx.Client):
    bundle = letter_bundle()
    bundle["entry"][-1]["resource"]["target"].append({"reference": "urn:uuid:nowhere"})
    response = writer.post("", json=bundle)
    assert response.status_code == 400
    assert system.get("Patient", params={"_summary": "count"}).json()["total"] == 0


def test_conditional_create_matching_several_resources_is_412(writer: httpx.Client):
    twin = {"resourceType": "Patient", "identifier": [{"system": INS, "value": "1"}]}
    for _ in range(2):
        assert writer.post("Patient", json=twin).status_code == 201
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "fullUrl": "urn:uuid:0b7e7e0c-5d4b-4f0b-9b59-9f43c0a0d001", "resource": twin,
        "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={INS}|1"}}]}
    assert writer.post("", json=bundle).status_code == 412


def test_a_conditional_create_after_a_delete_of_its_match_creates_the_resource(
        system: httpx.Client):
    patient = {"resourceType": "Patient", "identifier": [{"system": INS, "value": "2"}]}
    assert system.post("Patient", json=patient).status_code == 201
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": f"Patient?identifier={INS}|2"}},
        {"fullUrl": "urn:uuid:0b7e7e0c-5d4b-4f0b-9b59-9f43c0a0d002", "resource": patient,
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={INS}|2"}}]}
    answer = post_bundle(system, bundle)
    # DELETE runs first: the conditional create finds nothing and creates, it does not answer
    # 200 with the resource this very transaction deleted
    assert answer["entry"][1]["response"]["status"] == "201 Created"
    assert _ids(answer)[0] != _ids(answer)[1]
    found = system.get("Patient", params={"identifier": f"{INS}|2"}).json()
    assert found["total"] == 1


def test_concurrent_transactions_create_no_duplicates(writer: httpx.Client,
                                                      system: httpx.Client, base_url: str):
    bundle = letter_bundle()

    def send(_: int) -> int:
        with httpx.Client(base_url=base_url, headers=writer.headers, timeout=60) as client:
            return client.post("", json=copy.deepcopy(bundle)).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(send, range(6)))
    assert statuses == [200] * 6
    for kind in ("Patient", "Practitioner", "CareTeam", "CarePlan", "Communication",
                 "DocumentReference", "Provenance", "Organization"):
        total = system.get(kind, params={"_summary": "count"}).json()["total"]
        expected = 2 if kind == "Practitioner" else 1
        assert total == expected, kind


def test_batch_answers_each_entry_on_its_own(system: httpx.Client):
    patient = {"resourceType": "Patient", "identifier": [{"system": INS, "value": "42"}]}
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": patient, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "gender": 12},
         "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/unknown"}},
        {"request": {"method": "GET", "url": f"Patient?identifier={INS}|42"}},
    ]}
    answer = system.post("", json=batch).json()
    assert answer["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses[0] == "201 Created"
    assert statuses[1].startswith("422")
    assert statuses[2].startswith("404")
    assert answer["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert answer["entry"][3]["resource"]["total"] == 1


def test_entries_may_use_absolute_urls_of_the_server(system: httpx.Client, base_url: str):
    patient = {"resourceType": "Patient", "id": "abs-1", "gender": "other"}
    batch = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient, "request": {"method": "PUT", "url": f"{base_url}/Patient/abs-1"}}]}
    answer = system.post("", json=batch).json()
    assert answer["entry"][0]["response"]["location"] == "Patient/abs-1/_history/1"


def test_a_bundle_of_another_type_is_refused(writer: httpx.Client):
    response = writer.post("", json={"resourceType": "Bundle", "type": "collection"})
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_bundle_interceptors_are_asked_first(record_app, writer: httpx.Client):  # type: ignore[no-untyped-def]
    from fastapi.responses import JSONResponse

    seen = []

    def mhd(bundle: dict, principal) -> JSONResponse | None:  # type: ignore[no-untyped-def]
        seen.append((bundle.get("type"), principal.kind))
        if bundle.get("meta", {}).get("profile") == ["mhd"]:
            return JSONResponse({"taken": True}, status_code=200)
        return None

    record_app.state.bundle_interceptors.append(mhd)
    taken = writer.post("", json={"resourceType": "Bundle", "type": "transaction",
                                    "meta": {"profile": ["mhd"]}, "entry": []})
    assert taken.json() == {"taken": True}
    passed = post_bundle(writer, letter_bundle())
    assert passed["type"] == "transaction-response"
    assert seen == [("transaction", "system"), ("transaction", "system")]
