"""Versions of a letter supersede: the record shows the latest version's state alone, whatever
order the versions arrive in (through the app and its embedded record)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapter.auth import issue_token
from tests.api.conftest import bearer, wait_for_status
from tests.support.discharge_drugs import (
    DOLIPRANE,
    KARDEGIC,
    LEPONEX,
    Drug,
    with_discharge_drugs,
)
from tests.support.letter_variants import INS_SYSTEM, ins_of, letter_variant, without_recipient

CDA = {"Content-Type": "application/hl7-cda+xml"}
PCP = "801984758437"
NURSE = "801234567896"  # a recipient of the example letter


def letter(n: int, version: int, *drugs: Drug) -> bytes:
    return with_discharge_drugs(letter_variant(n, version=version), *drugs)


def send(client: TestClient, xml: bytes, hospital: dict[str, str]) -> dict[str, Any]:
    answer = client.post("/discharge-letters", content=xml, headers={**hospital, **CDA})
    assert answer.status_code == 202, answer.text
    return wait_for_status(client, answer.headers["Location"], hospital, "pushed")


def search(client: TestClient, kind: str, n: int, **params: str) -> list[dict[str, Any]]:
    reader = bearer(issue_token("system"))
    answer = client.get(f"/fhir/{kind}", headers=reader, params={
        "patient.identifier": f"{INS_SYSTEM}|{ins_of(n)}", "_count": "100", **params})
    assert answer.status_code == 200, answer.text
    return [e["resource"] for e in answer.json().get("entry", [])
            if e["resource"]["resourceType"] == kind]


def drug_names(requests: list[dict[str, Any]]) -> list[str]:
    return sorted(r["medicationCodeableConcept"]["text"] for r in requests)


def test_a_corrected_letter_stops_the_withdrawn_drug_and_updates_the_others(
        liaison: Callable[..., Any], hospital: dict[str, str]) -> None:
    changed = Drug(DOLIPRANE.entry_id, DOLIPRANE.cis, DOLIPRANE.name, tablets=3)
    with liaison() as client:
        first = send(client, letter(401, 1, LEPONEX, DOLIPRANE, KARDEGIC), hospital)
        second = send(client, letter(401, 2, changed, KARDEGIC), hospital)
        active = search(client, "MedicationRequest", 401, status="active")
        everything = search(client, "MedicationRequest", 401)
        documents = search(client, "DocumentReference", 401)
        messages = search(client, "Communication", 401)
        events = client.get("/fhir/CommunicationRequest", headers=bearer(issue_token(
            "system"))).json()["entry"]  # (its patient is contained: not searchable by it)
    assert len(events) == 1  # one "patient discharged" event for the stay, not per version
    # exactly one active prescription per drug of version 2, none for the withdrawn one
    assert drug_names(active) == ["DOLIPRANE 1000 mg", "KARDEGIC 75 mg"]
    stopped = [r for r in everything if r["status"] != "active"]
    assert {r["status"] for r in stopped} == {"stopped"}
    assert "LEPONEX 100 mg" in drug_names(stopped)
    [doliprane] = [r for r in active if r["medicationCodeableConcept"]["text"].startswith("DOLI")]
    assert doliprane["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 3
    # the first version's document is superseded, the second replaces it
    by_status = {d["status"]: d for d in documents}
    assert sorted(by_status) == ["current", "superseded"]
    assert by_status["current"]["relatesTo"][0]["code"] == "replaces"
    # carers are told it is a correction, and what changed
    corrected = [m for m in messages if "Lettre corrigée" in m["payload"][0].get(
        "contentString", "")]
    assert corrected and "LEPONEX" in corrected[0]["payload"][0]["contentString"]
    assert "version 2 remplace la version 1" in corrected[0]["payload"][0]["contentString"]
    assert first["document"]["version"] == 1 and second["document"]["version"] == 2
    assert any("remplace la version 1" in issue["diagnostics"]
               for issue in second["unmapped"]["issue"])


def test_a_version_arriving_after_a_newer_one_changes_nothing_current(
        liaison: Callable[..., Any], hospital: dict[str, str]) -> None:
    with liaison() as client:
        send(client, letter(402, 2, KARDEGIC), hospital)
        late = send(client, letter(402, 1, LEPONEX, KARDEGIC), hospital)
        active = search(client, "MedicationRequest", 402, status="active")
        documents = search(client, "DocumentReference", 402)
        plans = search(client, "CarePlan", 402)
        messages = search(client, "Communication", 402)
    assert drug_names(active) == ["KARDEGIC 75 mg"]  # LEPONEX of the late version 1: never
    assert sorted(d["status"] for d in documents) == ["current", "superseded"]
    current = next(d for d in documents if d["status"] == "current")
    assert current["identifier"][2]["value"].endswith("/v2")
    assert len(plans) == 1 and plans[0]["meta"]["versionId"] == "1"
    assert all("Lettre corrigée" not in str(m["payload"]) for m in messages)
    assert any("arrived after version 2" in issue["diagnostics"]
               for issue in late["unmapped"]["issue"])


@pytest.mark.medplum
def test_versions_supersede_in_medplum_too(
        liaison: Callable[..., Any], hospital: dict[str, str], medplum_base_url: str) -> None:
    """The same through a FHIR server liaison does not run: only conditional writes."""
    from tests.push.medplum_queries import search as medplum_search

    changed = Drug(DOLIPRANE.entry_id, DOLIPRANE.cis, DOLIPRANE.name, tablets=3)
    with liaison(target_url=medplum_base_url, target_max_entries=8) as client:
        send(client, letter(403, 1, LEPONEX, DOLIPRANE, KARDEGIC), hospital)
        send(client, letter(403, 2, changed, KARDEGIC), hospital)
    (patient,) = medplum_search(medplum_base_url, "Patient",
                                identifier=f"{INS_SYSTEM}|{ins_of(403)}")
    about = f"Patient/{patient['id']}"
    prescriptions = medplum_search(medplum_base_url, "MedicationRequest", patient=about)
    active = [r for r in prescriptions if r["status"] == "active"]
    assert drug_names(active) == ["DOLIPRANE 1000 mg", "KARDEGIC 75 mg"]
    assert [r["status"] for r in prescriptions if r not in active] == ["stopped"]
    documents = medplum_search(medplum_base_url, "DocumentReference", patient=about)
    assert sorted(d["status"] for d in documents) == ["current", "superseded"]


def test_items_are_followed_by_what_they_are_when_entry_ids_change(
        liaison: Callable[..., Any], hospital: dict[str, str]) -> None:
    """A hospital that gives its entries new ids in each version: the same drug (code and
    route) is still the same prescription, updated — not stopped and prescribed again."""
    renamed = [Drug(f"{n:08X}-0000-4000-8000-000000000000", drug.cis, drug.name, drug.tablets)
               for n, drug in enumerate((DOLIPRANE, KARDEGIC), start=7)]
    with liaison() as client:
        send(client, letter(404, 1, DOLIPRANE, KARDEGIC), hospital)
        second = send(client, letter(404, 2, *renamed), hospital)
        everything = search(client, "MedicationRequest", 404)
    assert drug_names(everything) == ["DOLIPRANE 1000 mg", "KARDEGIC 75 mg"]
    assert {r["status"] for r in everything} == {"active"}
    assert {r["meta"]["versionId"] for r in everything} == {"2"}  # updated in place
    assert any("Traitements et suivi inchangés" in issue["diagnostics"]
               for issue in second["unmapped"]["issue"])


@pytest.mark.medplum
def test_a_late_version_changes_nothing_current_in_medplum_either(
        liaison: Callable[..., Any], hospital: dict[str, str], medplum_base_url: str) -> None:
    from tests.push.medplum_queries import search as medplum_search

    with liaison(target_url=medplum_base_url, target_max_entries=8) as client:
        send(client, letter(405, 2, KARDEGIC), hospital)
        send(client, letter(405, 1, LEPONEX, KARDEGIC), hospital)
    (patient,) = medplum_search(medplum_base_url, "Patient",
                                identifier=f"{INS_SYSTEM}|{ins_of(405)}")
    about = f"Patient/{patient['id']}"
    prescriptions = medplum_search(medplum_base_url, "MedicationRequest", patient=about)
    assert drug_names([r for r in prescriptions if r["status"] == "active"]) == [
        "KARDEGIC 75 mg"]
    documents = medplum_search(medplum_base_url, "DocumentReference", patient=about)
    assert sorted(d["status"] for d in documents) == ["current", "superseded"]


def test_a_carer_the_corrected_letter_no_longer_names_stops_reading_the_patient(
        liaison: Callable[..., Any], hospital: dict[str, str]) -> None:
    """Version 2 drops the home nurse: the stay's care team is version 2's alone, so she no
    longer reads the patient's care plan through the record's API."""
    nurse = bearer(issue_token("professional", idnat=NURSE))
    about = {"patient.identifier": f"{INS_SYSTEM}|{ins_of(405)}"}

    def plans_she_reads(client: TestClient) -> list[dict[str, Any]]:
        answer = client.get("/fhir/CarePlan", headers=nurse, params=about)
        assert answer.status_code == 200, answer.text
        return answer.json().get("entry", [])

    with liaison() as client:
        send(client, letter_variant(405), hospital)
        assert len(plans_she_reads(client)) == 1
        send(client, without_recipient(letter_variant(405, version=2), NURSE), hospital)
        assert plans_she_reads(client) == []
