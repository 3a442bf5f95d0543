"""FHIR search over HTTP as community software uses it."""

from __future__ import annotations

import threading
from urllib.parse import parse_qsl, urlsplit

import httpx

from adapter.record.repository import Repository
from tests.record.bundles import IDNAT_PS, INS, PCP, letter_bundle, post_bundle


def _total(client: httpx.Client, kind: str, **params: str) -> int:
    response = client.get(kind, params=params)
    assert response.status_code == 200, response.text
    return response.json()["total"]


def _seed(writer: httpx.Client) -> None:
    post_bundle(writer, letter_bundle(ins="1", set_id="a", family="Durand"))
    post_bundle(writer, letter_bundle(ins="2", set_id="b", family="Dupont",
                                        plan_status="completed", team=(PCP, "801111111111")))


def test_identifier_in_its_three_forms(writer: httpx.Client, system: httpx.Client):
    _seed(writer)
    assert _total(system, "Patient", identifier=f"{INS}|1") == 1
    assert _total(system, "Patient", identifier="1") == 1
    assert _total(system, "Patient", identifier="|1") == 0  # the identifier has a system
    assert _total(system, "Patient", identifier=f"{INS}|") == 2
    assert _total(system, "Patient", identifier=f"{INS}|1,{INS}|2") == 2


def test_patient_subject_status_category_and_dates(writer: httpx.Client, system: httpx.Client):
    _seed(writer)
    patient = system.get("Patient", params={"identifier": f"{INS}|1"}).json()["entry"][0]
    patient_id = patient["resource"]["id"]
    assert _total(system, "CarePlan", patient=patient_id) == 1
    assert _total(system, "CarePlan", subject=f"Patient/{patient_id}") == 1
    assert _total(system, "CarePlan", status="active") == 1
    assert _total(system, "CarePlan", status="active,completed") == 2
    assert _total(system, "CarePlan", **{"status:not": "active"}) == 1
    assert _total(system, "CarePlan", category="http://loinc.org|18776-5") == 2
    assert _total(system, "CarePlan", date="ge2024-03-01") == 2
    assert _total(system, "CarePlan", date="lt2024-03-01") == 0
    assert _total(system, "Communication", sent="2024-03-05") == 2
    assert _total(system, "Communication", sent="gt2024-03-05T12:00:00Z") == 0
    assert _total(system, "Communication", sent="le2024-03-05T11:00:00Z") == 2
    assert _total(system, "DocumentReference", date="eq2024-03-05") == 2
    assert _total(system, "Patient", birthdate="1979") == 2


def test_last_updated_and_sort(writer: httpx.Client, system: httpx.Client):
    _seed(writer)
    plans = system.get("CarePlan", params={"_sort": "-_lastUpdated"}).json()["entry"]
    stamps = [e["resource"]["meta"]["lastUpdated"] for e in plans]
    assert stamps == sorted(stamps, reverse=True)
    assert _total(system, "CarePlan", _lastUpdated=f"ge{stamps[0]}") == 1
    assert _total(system, "CarePlan", _lastUpdated=f"lt{stamps[0]}") == 1
    assert _total(system, "CarePlan", _lastUpdated="gt2100-01-01") == 0


def test_participant_recipient_sender_and_chains(writer: httpx.Client, system: httpx.Client):
    _seed(writer)
    practitioner = system.get("Practitioner", params={"identifier": f"{IDNAT_PS}|801111111111"})
    practitioner_id = practitioner.json()["entry"][0]["resource"]["id"]
    assert _total(system, "CareTeam", participant=f"Practitioner/{practitioner_id}") == 1
    assert _total(system, "CareTeam", **{"participant.identifier": f"{IDNAT_PS}|{PCP}"}) == 2
    assert _total(system, "Communication", **{"recipient.identifier": f"{IDNAT_PS}|{PCP}"}) == 2
    assert _total(system, "Communication",
                  **{"sender:Organization.identifier": "1750000001"}) == 2
    assert _total(system, "CarePlan", **{"patient.identifier": f"{INS}|2"}) == 1
    assert _total(system, "CarePlan", **{"subject:Patient.name": "dupo"}) == 1
    assert _total(system, "CarePlan", **{"care-team.participant.identifier": "801111111111"}) == 1


def test_names_match_by_prefix_without_accents_or_contains(system: httpx.Client):
    system.post("Patient", json={"resourceType": "Patient", "name": [{"family": "Lefèvre"}]})
    assert _total(system, "Patient", name="lefe") == 1
    assert _total(system, "Patient", family="LEFÈ") == 1
    assert _total(system, "Patient", name="fèvre") == 0
    assert _total(system, "Patient", **{"name:contains": "fevr"}) == 1
    assert _total(system, "Patient", **{"name:exact": "Lefèvre"}) == 1
    assert _total(system, "Patient", **{"name:exact": "lefèvre"}) == 0


def test_include_and_revinclude(writer: httpx.Client, system: httpx.Client):
    _seed(writer)
    found = system.get("CarePlan", params={"patient.identifier": f"{INS}|1",
                                           "_include": ["CarePlan:care-team", "CarePlan:subject"],
                                           "_revinclude": "Provenance:target"}).json()
    kinds = sorted((e["search"]["mode"], e["resource"]["resourceType"]) for e in found["entry"])
    assert kinds == [("include", "CareTeam"), ("include", "Patient"), ("match", "CarePlan")]
    teams = system.get("CareTeam", params={"patient.identifier": f"{INS}|1",
                                           "_include": "CareTeam:participant",
                                           "_revinclude": "Provenance:target"}).json()
    kinds = sorted((e["search"]["mode"], e["resource"]["resourceType"]) for e in teams["entry"])
    assert kinds == [("include", "Practitioner"), ("include", "Provenance"),
                     ("match", "CareTeam")]
    iterate = system.get("CarePlan", params={"_id": found["entry"][0]["resource"]["id"],
                                             "_include": "CarePlan:care-team",
                                             "_include:iterate": "CareTeam:participant"}).json()
    assert {e["resource"]["resourceType"] for e in iterate["entry"]} == {
        "CarePlan", "CareTeam", "Practitioner"}


def test_summary_count_and_elements(writer: httpx.Client, system: httpx.Client):
    _seed(writer)
    counted = system.get("CarePlan", params={"_summary": "count"}).json()
    assert counted["total"] == 2 and "entry" not in counted
    subset = system.get("CarePlan", params={"_elements": "status"}).json()["entry"][0]["resource"]
    assert set(subset) == {"resourceType", "id", "meta", "status"}


def test_tag_search(system: httpx.Client):
    tagged = {"resourceType": "Provenance", "recorded": "2024-01-01T00:00:00Z",
              "target": [{"reference": "Patient/x"}], "agent": [{"who": {"display": "x"}}],
              "meta": {"tag": [{"system": "urn:liaison:provenance", "code": "doc-1"}]}}
    system.post("Provenance", json=tagged)
    assert _total(system, "Provenance", _tag="urn:liaison:provenance|doc-1") == 1
    assert _total(system, "Provenance", _tag="urn:liaison:provenance|doc-2") == 0


def _page_through(client: httpx.Client, first_params: dict) -> list[str]:
    ids: list[str] = []
    url, params = "CarePlan", first_params
    while url:
        page = client.get(url, params=params).json()
        ids += [e["resource"]["id"] for e in page.get("entry", [])]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
        if url:
            parts = urlsplit(url)
            url, params = parts.path.rsplit("/", 1)[-1], parse_qsl(parts.query)
    return ids


def test_paging_over_1000_care_plans_is_complete_and_stable_while_writing(
        record_app, system: httpx.Client):  # type: ignore[no-untyped-def]
    repository: Repository = record_app.state.record_repository
    plans = [{"resourceType": "CarePlan", "status": "active", "intent": "plan",
              "subject": {"reference": "Patient/p"},
              "identifier": [{"system": "urn:test", "value": str(n)}]} for n in range(1000)]
    repository.import_resources(plans)
    stop = threading.Event()

    def keep_writing() -> None:  # other CarePlans written in the same table while paging
        draft = {"resourceType": "CarePlan", "status": "draft", "intent": "plan",
                 "subject": {"reference": "Patient/p"}}
        for _ in range(200):
            if stop.is_set():
                return
            created = repository.create(draft)
            repository.update("CarePlan", created.resource_id or "",
                              {**draft, "id": created.resource_id, "title": "changed"})

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        ids = _page_through(system, {"status": "active", "_count": "97"})
        by_date = _page_through(system, {"status": "active", "_count": "101",
                                         "_sort": "-_lastUpdated"})
    finally:
        stop.set()
        writer.join()
    everything = system.get("CarePlan", params={"_count": "1000", "status": "active"}).json()
    expected = {e["resource"]["id"] for e in everything["entry"]}
    assert len(ids) == 1000 and set(ids) == expected
    assert len(by_date) == 1000 and set(by_date) == expected
