"""Attacks on who may write what and who then reads it, through the whole app (ingestion, the
pusher, the embedded record), on SQLite and PostgreSQL.

Hospital A (the official example's custodian) and hospital B send letters; B then tries to take
A's patient over. Every attack must be refused and leave the record as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapter.api.app import create_app
from adapter.auth import issue_token
from adapter.config import Settings
from tests.support.letter_variants import INS_SYSTEM, ins_of, letter_variant

HOSPITAL_A = "1750803447"  # custodian and author organisation of the official example
HOSPITAL_B = "1120456789"
PCP = "801984758437"  # the example's médecin traitant
CDA = {"Content-Type": "application/hl7-cda+xml"}
FHIR = {"Content-Type": "application/fhir+json"}
SETTINGS = {"push_backoff_base_seconds": 0.05, "push_backoff_max_seconds": 0.5,
            "validation_mode": "off"}


def bearer(kind: str, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(kind, **claims)}"}


def A() -> dict[str, str]:  # the two hospitals of every test
    return bearer("hospital", organization=HOSPITAL_A)


def B() -> dict[str, str]:
    return bearer("hospital", organization=HOSPITAL_B)


def from_hospital(xml: bytes, organization: str) -> bytes:
    """The letter as `organization` would send it: its custodian and author organisation."""
    return xml.replace(f'extension="{HOSPITAL_A}"'.encode(), f'extension="{organization}"'.encode())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def app(request: pytest.FixtureRequest) -> Callable[[], Any]:
    """`with app() as client:` liaison with its pusher, on SQLite or PostgreSQL."""
    overrides = dict(SETTINGS)
    if request.param == "postgres":
        overrides["database_url"] = request.getfixturevalue("postgres_url")

    @contextmanager
    def start() -> Iterator[TestClient]:
        settings = Settings(**overrides)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        with TestClient(create_app(settings)) as client:
            yield client

    return start


def send(client: TestClient, xml: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """Post a letter and wait until it is in the record; its receipt."""
    import time

    answer = client.post("/discharge-letters", content=xml, headers={**headers, **CDA})
    assert answer.status_code == 202, answer.text
    for _ in range(600):
        receipt = client.get(answer.headers["Location"], headers=headers).json()
        if receipt["status"] == "pushed":
            return receipt
        time.sleep(0.05)
    raise AssertionError(f"letter still {receipt['status']}")


def located(receipt: dict[str, Any], kind: str) -> str:
    return next(item["reference"].split("/_history")[0] for item in receipt["resources"]
                if item["resourceType"] == kind)


def count(client: TestClient, headers: dict[str, str], kind: str, **params: str) -> int:
    answer = client.get(f"/fhir/{kind}", params={**params, "_summary": "count"}, headers=headers)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["total"])


def snapshot(client: TestClient) -> list[tuple[str, str, str]]:
    """Every resource of the record with its version, as the system reads it."""
    system = bearer("system")
    found = []
    for kind in ("Patient", "CarePlan", "CareTeam", "DocumentReference", "Communication",
                 "MedicationRequest", "Consent"):
        page = client.get(f"/fhir/{kind}", params={"_count": "500"}, headers=system).json()
        found += [(kind, e["resource"]["id"], e["resource"]["meta"]["versionId"])
                  for e in page.get("entry", [])]
    return sorted(found)


def test_a_hospital_cannot_grant_itself_another_hospitals_patient(app) -> None:  # type: ignore[no-untyped-def]
    """B writes a DocumentReference naming itself custodian, a CareTeam naming a stranger, and
    overwrites A's CarePlan and Patient: all refused, nothing changed, nobody reads more."""
    with app() as client:
        receipt = send(client, letter_variant(101), A())
        patient, plan = located(receipt, "Patient"), located(receipt, "CarePlan")
        before = snapshot(client)
        system = bearer("system")
        stored_plan = client.get(f"/fhir/{plan}", headers=system).json()
        stored_patient = client.get(f"/fhir/{patient}", headers=system).json()
        b_org = {"resourceType": "Organization",
                 "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.2", "value": HOSPITAL_B}]}
        attacks = [
            client.post("/fhir/DocumentReference", headers={**B(), **FHIR}, json={
                "resourceType": "DocumentReference", "status": "current",
                "subject": {"reference": patient}, "custodian": {"identifier": b_org[
                    "identifier"][0]},
                "content": [{"attachment": {"contentType": "text/plain", "data": "eA=="}}]}),
            client.post("/fhir/CareTeam", headers={**B(), **FHIR}, json={
                "resourceType": "CareTeam", "status": "active", "subject": {"reference": patient},
                "participant": [{"member": {"identifier": {
                    "system": "urn:oid:1.2.250.1.71.4.2.1", "value": "809999999999"}}}]}),
            client.put(f"/fhir/{plan}", headers={**B(), **FHIR},
                       json={**stored_plan, "title": "rewritten by B"}),
            client.put(f"/fhir/{patient}", headers={**B(), **FHIR},
                       json={**stored_patient, "gender": "other"}),
            client.delete(f"/fhir/{plan}", headers=B()),
            client.post("/fhir", headers={**B(), **FHIR}, json={
                "resourceType": "Bundle", "type": "transaction", "entry": [{
                    "resource": b_org, "request": {"method": "POST", "url": "Organization"}}]}),
        ]
        assert [attack.status_code for attack in attacks] == [403] * len(attacks)
        assert all(a.json()["resourceType"] == "OperationOutcome" for a in attacks)
        assert snapshot(client) == before
        stranger = bearer("professional", idnat="809999999999")
        for headers in (B(), stranger):
            for kind in ("Patient", "CarePlan", "DocumentReference", "CareTeam"):
                assert count(client, headers, kind) == 0, kind
            assert client.get(f"/fhir/{plan}", headers=headers).status_code == 404


def test_a_hidden_resource_reads_exactly_like_an_unknown_one(app) -> None:  # type: ignore[no-untyped-def]
    with app() as client:
        receipt = send(client, letter_variant(102), A())
        plan = located(receipt, "CarePlan")
        absent = "CarePlan/01234567-89ab-7def-8123-456789abcdef"
        for suffix in ("", "/_history", "/_history/1"):
            hidden = client.get(f"/fhir/{plan}{suffix}", headers=B())
            unknown = client.get(f"/fhir/{absent}{suffix}", headers=B())
            assert hidden.status_code == unknown.status_code == 404
            assert hidden.text.replace(plan, absent) == unknown.text
        # a conditional write names nothing it found
        ins = f"{INS_SYSTEM}|{ins_of(102)}"
        refused = client.put(f"/fhir/Patient?identifier={ins}", headers={**B(), **FHIR},
                             json={"resourceType": "Patient"})
        nobody = client.put(f"/fhir/Patient?identifier={INS_SYSTEM}|{ins_of(999)}",
                            headers={**B(), **FHIR}, json={"resourceType": "Patient"})
        assert refused.status_code == nobody.status_code == 403
        assert refused.text == nobody.text
        assert located(receipt, "Patient").split("/")[1] not in refused.text


def test_a_hospital_sends_only_the_letters_of_its_own_organisations(app) -> None:  # type: ignore[no-untyped-def]
    with app() as client:
        refused = client.post("/discharge-letters", content=letter_variant(103),
                              headers={**B(), **CDA})
        assert refused.status_code == 403
        outcome = refused.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert HOSPITAL_A in outcome["issue"][0]["diagnostics"]  # names the mismatch
        assert HOSPITAL_B in outcome["issue"][0]["diagnostics"]
        assert snapshot(client) == []
        assert client.get("/fhir/Patient", headers=bearer("system")).json()["total"] == 0
        # a hospital group's token acts for each of its establishments
        group = bearer("hospital", organization=HOSPITAL_B, organizations=[HOSPITAL_A])
        send(client, letter_variant(103), group)
        assert count(client, group, "CarePlan") == 1


def test_another_organisation_cannot_send_a_version_of_a_letter_it_did_not_start(app) -> None:  # type: ignore[no-untyped-def]
    with app() as client:
        receipt = send(client, letter_variant(104), A())
        plan = located(receipt, "CarePlan")
        before = snapshot(client)
        takeover = from_hospital(letter_variant(104, version=2), HOSPITAL_B)
        answer = client.post("/discharge-letters", content=takeover, headers={**B(), **CDA})
        assert answer.status_code == 409
        assert answer.json()["resourceType"] == "OperationOutcome"
        assert snapshot(client) == before
        assert client.get(f"/fhir/{plan}", headers=A()).json()["meta"]["versionId"] == "1"
        # its own organisation's next version goes through
        send(client, letter_variant(104, version=2), A())


def test_one_letter_for_an_ins_does_not_open_the_patients_whole_record(app) -> None:  # type: ignore[no-untyped-def]
    """B knows A's patient's INS and sends a letter of its own for them: B reads the patient's
    identity, care team and its own letter's resources, never A's letter."""
    with app() as client:
        a_receipt = send(client, letter_variant(105), A())
        b_receipt = send(client, from_hospital(letter_variant(106, patient=105), HOSPITAL_B), B())
        assert located(a_receipt, "Patient") == located(b_receipt, "Patient")
        for kind in ("CarePlan", "DocumentReference", "Communication", "MedicationRequest",
                     "Encounter", "Provenance"):
            produced = [item for item in b_receipt["resources"] if item["resourceType"] == kind]
            assert produced and count(client, B(), kind) == len(produced), kind
            assert count(client, A(), kind) == len(produced), kind  # each its own letter's
        for kind in ("CarePlan", "DocumentReference"):
            hidden = located(a_receipt, kind)
            assert client.get(f"/fhir/{hidden}", headers=B()).status_code == 404
            assert client.get(f"/fhir/{hidden}", headers=A()).status_code == 200
        assert count(client, B(), "Patient") == 1
        assert count(client, B(), "CareTeam") == 2  # the patient's care team, from both letters


def test_consent_is_filed_only_by_those_caring_for_the_patient(app) -> None:  # type: ignore[no-untyped-def]
    with app() as client:
        send(client, letter_variant(107), A())
        body = {"ins": ins_of(107), "system": INS_SYSTEM, "decision": "oppose",
                "reason": "asked by the patient on the phone"}
        outsiders = [bearer("professional", idnat="809999999999"), B(),
                     bearer("coordinator", cpts="CPTS-ELSEWHERE")]
        for headers in outsiders:
            answer = client.post("/coordination/consent", json=body, headers=headers)
            assert answer.status_code == 403, answer.text
        state = client.get("/coordination/consent", headers=bearer("system"),
                           params={"patient": f"{INS_SYSTEM}|{ins_of(107)}"}).json()
        assert state["opposed"] is False
        without_reason = {k: v for k, v in body.items() if k != "reason"}
        pcp = bearer("professional", idnat=PCP)
        assert client.post("/coordination/consent", json=without_reason,
                           headers=pcp).status_code == 400
        assert client.post("/coordination/consent", json=body, headers=pcp).status_code == 201
        assert client.post("/coordination/consent", json=dict(body, decision="withdraw"),
                           headers=A()).status_code == 201
        audit = client.get("/coordination/audit", headers=bearer("system")).json()
        filed = [(row["target"], row["reason"]) for row in audit if row["action"] == "consent"]
        assert any(target == f"professional:{PCP}" and "asked by the patient" in reason
                   for target, reason in filed), filed
        assert any(target == f"hospital:{HOSPITAL_A}" for target, _ in filed), filed
